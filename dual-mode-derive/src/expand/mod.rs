//! Code generation, one file per generated artifact. On attribute errors the same items are
//! generated with `unreachable!()` bodies and no field checks (the fallback), so that the
//! rest of the crate compiles quietly and one mistake is one error.

mod enter;
mod generics;
mod parts;
mod service;
mod spec;
mod state;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{DeriveInput, Ident};

use crate::ast::{Field, Input};
use crate::ctxt::Errors;
use generics::Bounds;

pub(crate) fn derive(node: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let input = match Input::from_syn(node, &mut errors) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    if !crate::check::check(&input, &mut errors) {
        return errors.into_compile_errors().unwrap_or_default();
    }
    let fallback = errors.into_compile_errors();
    let expander = Expander::new(&input, fallback.is_some());
    let items = expander.expand();
    quote! { #fallback #items }
}

/// What every generator needs: the input, the names of the generated types, the runtime
/// crate's path and the bounds.
pub(crate) struct Expander<'a> {
    input: &'a Input<'a>,
    /// The runtime crate: `::dual_mode`, or `#[dual_mode(crate = path)]`.
    krate: TokenStream,
    spec: Ident,
    parts: Ident,
    bounds: Bounds,
    /// Attribute errors were reported: bodies are `unreachable!()` and fields go unchecked.
    fallback: bool,
}

impl<'a> Expander<'a> {
    fn new(input: &'a Input<'a>, fallback: bool) -> Self {
        let service = input.ident;
        let krate = input.container.krate.as_ref().map_or_else(|| quote!(::dual_mode), ToTokens::to_token_stream);
        let krate = generics::respan(krate, Span::call_site());
        let spec = input.container.spec.clone().unwrap_or_else(|| format_ident!("{}Spec", service));
        let parts = input.container.parts.clone().unwrap_or_else(|| format_ident!("{}Parts", service));
        let bounds = generics::bounds(input, &krate);
        Self { input, krate, spec, parts, bounds, fallback }
    }

    fn expand(&self) -> TokenStream {
        let spec = self.spec_items();
        let parts_struct = self.parts_struct();
        let parts = self.parts_items();
        let service = self.service_items();
        let state = self.state_items();
        let (markers, warnings) = self.credential_warnings();
        let quiet = self.fallback.then(|| quote! { #[allow(unused_variables)] });
        quote! {
            #spec
            #parts_struct
            #markers
            #[doc(hidden)]
            #[allow(non_local_definitions)]
            #quiet
            const _: () = {
                #parts
                #service
                #state
                #warnings
            };
        }
    }

    /// The service type with its generics: `Service<B>`.
    fn service_ty(&self) -> TokenStream {
        let service = self.input.ident;
        let (_, ty_generics, _) = self.input.generics.split_for_impl();
        quote!(#service #ty_generics)
    }

    fn spec_ty(&self) -> TokenStream {
        let spec = &self.spec;
        let (_, ty_generics, _) = self.bounds.spec_generics.split_for_impl();
        quote!(#spec #ty_generics)
    }

    fn parts_ty(&self) -> TokenStream {
        let parts = &self.parts;
        let (_, ty_generics, _) = self.input.generics.split_for_impl();
        quote!(#parts #ty_generics)
    }

    /// A generated function's body, or `unreachable!()` in the fallback.
    fn body(&self, body: TokenStream) -> TokenStream {
        if self.fallback {
            quote! { ::core::unreachable!() }
        } else {
            body
        }
    }

    /// The body of a function that returns `impl Future`, or a future of `unreachable!()`.
    fn future_body(&self, body: TokenStream) -> TokenStream {
        if self.fallback {
            quote! { async { ::core::unreachable!() } }
        } else {
            body
        }
    }

    /// One item per field, each under the field's `#[cfg]`.
    fn each(&self, f: impl Fn(&Field<'_>, &Ident) -> Option<TokenStream>) -> Vec<TokenStream> {
        self.input
            .fields
            .iter()
            .filter_map(|field| {
                let body = f(field, field.ident)?;
                let cfgs = &field.cfgs;
                Some(quote! { #(#cfgs)* #body })
            })
            .collect()
    }

    /// A warning on each spec field named like a credential (`api_key`, `token`), through a
    /// deprecated associated constant of the spec named as the field: the only warning a derive
    /// can raise on stable Rust, read as "use of deprecated associated constant
    /// `ServiceSpec::api_key`: `api_key` looks like a credential ...".
    ///
    /// Returns the constants, an impl outside the `const _` block (so that the warning names
    /// `ServiceSpec::api_key`), and the uses that raise the warnings, inside it.
    fn credential_warnings(&self) -> (TokenStream, TokenStream) {
        if self.fallback {
            return (TokenStream::new(), TokenStream::new());
        }
        let spec_ty = self.spec_ty();
        let (impl_generics, _, _) = self.bounds.spec_generics.split_for_impl();
        let where_spec = &self.bounds.spec;
        let fields: Vec<&Field<'_>> = crate::check::credential_names(self.input).collect();
        if fields.is_empty() {
            return (TokenStream::new(), TokenStream::new());
        }
        let consts = fields.iter().map(|f| {
            let ident = syn::ext::IdentExt::unraw(f.ident);
            let ident = Ident::new(&ident.to_string(), f.ident.span());
            let note = format!(
                "`{ident}` looks like a credential, and a spec field is written into every queued job: \
                 mark it `#[dual_mode(secret, env = \"NAME\")]`, or `#[dual_mode(not_secret)]` if it holds none"
            );
            quote! {
                #[deprecated(note = #note)]
                #[allow(non_upper_case_globals, dead_code)]
                const #ident: () = ();
            }
        });
        let uses = fields.iter().map(|f| {
            let ident = Ident::new(&syn::ext::IdentExt::unraw(f.ident).to_string(), f.ident.span());
            quote_spanned! {f.ident.span()=> let () = <#spec_ty>::#ident; }
        });
        let markers = quote! {
            #[automatically_derived]
            #[doc(hidden)]
            impl #impl_generics #spec_ty #where_spec {
                #(#consts)*
            }
        };
        let warnings = quote! {
            #[allow(dead_code, clippy::let_unit_value)]
            fn __credential_names #impl_generics () #where_spec {
                #(#uses)*
            }
        };
        (markers, warnings)
    }
}

/// `Some("key")` or `None`, for a shared field's context slot.
fn key_tokens(key: Option<&syn::LitStr>) -> TokenStream {
    match key {
        Some(key) => quote! { ::core::option::Option::Some(#key) },
        None => quote! { ::core::option::Option::None },
    }
}
