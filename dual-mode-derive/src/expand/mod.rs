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
use quote::{ToTokens, format_ident, quote};
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
        let warnings = self.credential_warnings();
        let quiet = self.fallback.then(|| quote! { #[allow(unused_variables)] });
        quote! {
            #spec
            #parts_struct
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
    /// deprecated item: the only warning a derive can raise on stable Rust.
    fn credential_warnings(&self) -> TokenStream {
        if self.fallback {
            return TokenStream::new();
        }
        let warnings = crate::check::credential_names(self.input).map(|f| {
            let ident = f.ident;
            let note = format!(
                "`{ident}` looks like a credential, and as a spec field it is written into every queued job: mark it `#[dual_mode(secret, env = \"NAME\")]`, or `#[dual_mode(not_secret)]` if it holds no credential"
            );
            let marker = Ident::new(&format!("{}_is_a_spec_field", syn::ext::IdentExt::unraw(ident)), ident.span());
            quote! {
                #[deprecated(note = #note)]
                #[allow(non_camel_case_types)]
                struct #marker;
                let _ = #marker;
            }
        });
        warnings.collect()
    }
}

/// `Some("key")` or `None`, for a shared field's context slot.
fn key_tokens(key: Option<&syn::LitStr>) -> TokenStream {
    match key {
        Some(key) => quote! { ::core::option::Option::Some(#key) },
        None => quote! { ::core::option::Option::None },
    }
}
