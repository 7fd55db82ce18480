//! `Parts::enter_in`: secrets first, then shared clients and nested services in field order.
//! Each call is spanned on what the user wrote (the field's type, `shared`, `config = a.b`,
//! `open = f`), so that a type error lands on the token to change.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::Ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::{Expander, key_tokens};
use crate::ast::Field;
use crate::attr::{ConfigPath, Kind, SecretFrom, Shared, Source};
use crate::ctxt::type_name;

impl Expander<'_> {
    pub(super) fn scope_ident(&self) -> Ident {
        let _ = self;
        Ident::new("__scope", Span::mixed_site())
    }

    /// The local that holds a field's opened (or injected) value.
    fn local(ident: &Ident) -> Ident {
        Ident::new(&format!("__f_{}", ident.unraw()), Span::mixed_site())
    }

    pub(super) fn site(&self, f: &Field<'_>) -> TokenStream {
        let k = &self.krate;
        let service = self.input.ident.unraw().to_string();
        let field = f.ident.unraw().to_string();
        let resource = type_name(f.ty);
        quote! { #k::__private::Site { service: #service, field: #field, resource: #resource } }
    }

    pub(super) fn enter_body(&self) -> TokenStream {
        let k = &self.krate;
        let service = self.input.ident;
        let parts = Ident::new("__parts", Span::mixed_site());
        let spec_view = Ident::new("__spec_view", Span::mixed_site());
        let scope = self.scope_ident();

        // The spec an `open = path` function receives, built only when such a field is `None`.
        let open_fields: Vec<&Field<'_>> = self
            .input
            .fields
            .iter()
            .filter(|f| matches!(f.kind, Kind::Shared(Shared { source: Source::Open { .. }, .. })))
            .collect();
        let build_view = if open_fields.is_empty() {
            quote! {}
        } else {
            let always = open_fields.iter().any(|f| !f.cfgs.is_empty());
            let checks = open_fields.iter().filter(|f| f.cfgs.is_empty()).map(|f| {
                let ident = f.ident;
                quote! { || #parts.#ident.is_none() }
            });
            quote! {
                let #spec_view = if #always #(#checks)* {
                    ::core::option::Option::Some(#k::Parts::spec(&#parts))
                } else {
                    ::core::option::Option::None
                };
            }
        };

        let secrets = self.input.fields.iter().filter_map(|f| {
            let Kind::Secret(from) = &f.kind else { return None };
            let (ident, ty, cfgs, var) = (f.ident, f.ty, &f.cfgs, Self::local(f.ident));
            let site = self.site(f);
            let source = match from {
                SecretFrom::Env(name) => quote! { #k::__private::SecretSource::Env(#name) },
                SecretFrom::File(path) => quote! { #k::__private::SecretSource::File(#path) },
            };
            let read = quote_spanned! {ty.span()=> <#ty as #k::SecretField>::read(#site, #source)? };
            Some(quote! {
                #(#cfgs)*
                let #var: #ty = match #parts.#ident {
                    ::core::option::Option::Some(__v) => __v,
                    ::core::option::Option::None => #read,
                };
            })
        });

        let opens = self.input.fields.iter().filter_map(|f| {
            let (ident, ty, cfgs, var) = (f.ident, f.ty, &f.cfgs, Self::local(f.ident));
            match &f.kind {
                Kind::Spec { .. } | Kind::Secret(_) => None,
                Kind::Nested => Some(quote_spanned! {ty.span()=>
                    #(#cfgs)*
                    let #var: #ty = <<#ty as #k::DualMode>::Parts as #k::Parts>::enter_in(#parts.#ident, #scope).await?;
                }),
                Kind::Shared(shared) => {
                    let open = self.open(f, shared, &parts, &spec_view);
                    Some(quote! {
                        #(#cfgs)*
                        let #var: #ty = match #parts.#ident {
                            ::core::option::Option::Some(__v) => __v,
                            ::core::option::Option::None => #open,
                        };
                    })
                }
            }
        });

        let build = self.each(|f, ident| {
            Some(match f.kind {
                Kind::Spec { .. } => quote! { #ident: #parts.#ident, },
                _ => {
                    let var = Self::local(ident);
                    quote! { #ident: #var, }
                }
            })
        });

        quote! {
            let #parts = self;
            async move {
                #build_view
                #(#secrets)*
                #(#opens)*
                ::core::result::Result::Ok(#service { #(#build)* })
            }
        }
    }

    /// The expression that opens one shared field into the scope.
    fn open(&self, f: &Field<'_>, shared: &Shared, parts: &Ident, spec_view: &Ident) -> TokenStream {
        let k = &self.krate;
        let ty = f.ty;
        let site = self.site(f);
        let key = key_tokens(shared.key.as_ref());
        let scope = self.scope_ident();
        match &shared.source {
            Source::Default => {
                // At the `shared` key, which a missing config is about.
                let at_shared = super::generics::respan(ty.to_token_stream(), shared.span);
                let default = match client_family(ty) {
                    Some((_, default)) => Ident::new(default, Span::call_site()),
                    None => Ident::new("DefaultConfig", Span::call_site()),
                };
                quote_spanned! {shared.span=>
                    <#at_shared as #k::#default>::open_default_in(#scope, #site, #key).await?
                }
            }
            Source::Config(path) => {
                let expr = self.config_expr(path, parts);
                // The value, named by an identifier at the path's last segment: a type
                // mismatch is then reported on the user's `config = a.b`.
                let last = path.segments.last().map_or(path.span, Ident::span);
                let value = Ident::new("__config_value", last.resolved_at(Span::mixed_site()));
                // A type named like a built-in client goes through its family's trait, whose
                // error names the versions built in.
                // A type named like a built-in client is checked by its family's trait first,
                // whose error names the versions built in.
                let family = client_family(ty).map(|(field, _)| {
                    let field = Ident::new(field, Span::call_site());
                    quote_spanned! {ty.span()=> let () = <#ty as #k::#field>::CHECKED; }
                });
                quote_spanned! {ty.span()=>
                    {
                        #family
                        let #value = &#expr;
                        let __config: &<#ty as #k::Resource>::Config = #value;
                        <#ty as #k::SharedField>::open_in(#scope, #site, #key, __config).await?
                    }
                }
            }
            Source::Open { open, close } => {
                // Through a fn pointer of the exact type: a wrong signature is one type mismatch
                // at the path, "expected fn pointer `fn(T) -> _`".
                let close = match close {
                    Some(close) => quote_spanned! {close.span()=>
                        |__v: #ty| -> ::core::pin::Pin<::std::boxed::Box<dyn ::core::future::Future<Output = ::core::result::Result<(), #k::BoxError>> + ::core::marker::Send>> {
                            let __close: fn(#ty) -> _ = #close;
                            ::std::boxed::Box::pin(async move { __close(__v).await.map_err(::core::convert::Into::into) })
                        }
                    },
                    None => quote! { #k::__private::drop_close::<#ty> },
                };
                let spec_ty = self.spec_ty();
                // Awaited inside a block: a function that is not `async` is one error at the path.
                let call = quote_spanned! {open.span()=> async move { #open(__spec).await } };
                quote! {
                    {
                        let __spec: &#spec_ty = #k::__private::spec_view(#spec_view.as_ref());
                        ::std::boxed::Box::pin(#k::__private::Scope::open_with::<#ty, _, _>(#scope, #site, #key, #call, #close)).await?
                    }
                }
            }
        }
    }

    /// `a.b.c` of a `config` path, read from the parts or from the secret resolved above.
    fn config_expr(&self, path: &ConfigPath, parts: &Ident) -> TokenStream {
        let root = &path.segments[0];
        let rest = &path.segments[1..];
        let secret = self.input.field(root).filter(|g| matches!(g.kind, Kind::Secret(_)));
        if let Some(secret) = secret {
            let (k, ty, local) = (&self.krate, secret.ty, Self::local(root));
            quote_spanned! {path.span=> <#ty as #k::SecretField>::exposed(&#local) #(.#rest)* }
        } else {
            quote_spanned! {path.span=> #parts.#root #(.#rest)* }
        }
    }
}

/// The traits a shared field's open goes through when its type is named like a client that
/// dual-mode has built in: their errors name the crate versions that are built in, since a
/// client of another major version is then the likely mistake.
fn client_family(ty: &syn::Type) -> Option<(&'static str, &'static str)> {
    let syn::Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    match last.ident.to_string().as_str() {
        "Client" => Some(("SharedClient", "DefaultClientConfig")),
        "ConnectionManager" | "MultiplexedConnection" => Some(("SharedRedisConnection", "DefaultRedisConfig")),
        "Pool" => Some(("SharedPool", "DefaultPoolConfig")),
        _ => None,
    }
}
