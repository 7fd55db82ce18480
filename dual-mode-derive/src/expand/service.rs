//! The `DualMode` impl and the inherent methods users call without importing traits:
//! `spec.run(...)`, `spec.enter()`, `parts.enter()`, `Parts::from_context`, `service.spec()`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use super::Expander;
use crate::attr::{Kind, SecretFrom, Shared, Source};

impl Expander<'_> {
    pub(super) fn service_items(&self) -> TokenStream {
        let k = &self.krate;
        let spec = &self.spec;
        let service_name = self.input.ident.unraw().to_string();
        let (spec_ty, parts_ty, service_ty) = (self.spec_ty(), self.parts_ty(), self.service_ty());
        let (impl_generics, _, _) = self.input.generics.split_for_impl();
        let where_all = &self.bounds.service;

        // A secret that only serves as another field's `config` is read here, so that it does
        // not look unused to the user's dead-code lint.
        let config_secrets = self.each(|f, ident| {
            let used = self.input.fields.iter().any(
                |g| matches!(&g.kind, Kind::Shared(Shared { source: Source::Config(p), .. }) if p.segments[0] == *ident),
            );
            (matches!(f.kind, Kind::Secret(_)) && used).then(|| quote! { let _ = &self.#ident; })
        });
        let spec_of_self = self.each(|f, ident| match f.kind {
            Kind::Spec { .. } => Some(quote! { #ident: ::core::clone::Clone::clone(&self.#ident), }),
            Kind::Nested => Some(quote! { #ident: #k::DualMode::spec(&self.#ident), }),
            _ => None,
        });
        let spec_body = self.body(quote! {
            #(#config_secrets)*
            #spec { #(#spec_of_self)* }
        });
        let secret_sources = self.each(|f, _| {
            let ty = f.ty;
            match &f.kind {
                Kind::Secret(from) => {
                    let (site, name) = (self.site(f), from.name());
                    let source = match from {
                        SecretFrom::Env(name) => quote! { #k::__private::SecretSource::Env(#name) },
                        SecretFrom::File(path) => quote! { #k::__private::SecretSource::File(#path) },
                    };
                    Some(quote! {
                        let __lent = __ctx.and_then(|__c| #k::__private::slot::<#ty>(__c, ::core::option::Option::Some(#name)));
                        if __lent.is_none() {
                            __sources.push((#site, #source));
                        }
                    })
                }
                Kind::Nested => Some(quote! {
                    __sources.extend(<#ty as #k::DualMode>::secret_sources(__ctx));
                }),
                _ => None,
            }
        });
        let secret_sources_fn = (!secret_sources.is_empty()).then(|| {
            let body = self.body(quote! {
                let mut __sources = ::std::vec::Vec::new();
                #(#secret_sources)*
                __sources
            });
            quote! {
                fn secret_sources(
                    __ctx: ::core::option::Option<&#k::Context>,
                ) -> ::std::vec::Vec<(#k::Site, #k::SecretSource)> {
                    #body
                }
            }
        });
        let inherent = self.inherent(&spec_ty, &parts_ty, &service_ty);
        quote! {
            #[automatically_derived]
            impl #impl_generics #k::DualMode for #service_ty #where_all {
                type Spec = #spec_ty;
                type Parts = #parts_ty;
                const NAME: &'static str = #service_name;

                fn spec(&self) -> #spec_ty {
                    #spec_body
                }

                #secret_sources_fn
            }

            #inherent
        }
    }

    fn inherent(&self, spec_ty: &TokenStream, parts_ty: &TokenStream, service_ty: &TokenStream) -> TokenStream {
        let k = &self.krate;
        let (impl_generics, _, _) = self.input.generics.split_for_impl();
        let (spec_impl_generics, _, spec_where) = self.bounds.spec_generics.split_for_impl();
        let where_all = &self.bounds.service;
        // Parameters the spec drops become parameters of its methods.
        let dropped = &self.bounds.dropped;
        let method_generics = if dropped.is_empty() { quote!() } else { quote!(#(#dropped,)*) };
        let run_doc = "Enters the spec's service with temporary clients, runs `body`, and exits on every path \
             (`Ok`, `Err`, panic, cancellation). See `dual_mode::run`.";
        let enter_doc = "Opens every client (and resolves every secret) and returns a guard that derefs to the service.\n\n\
             # Errors\n\nAn `EnterError` naming the service, field, resource type and cause.";
        let spec_enter =
            self.future_body(quote! { #k::Parts::enter(<#parts_ty as ::core::convert::From<Self>>::from(self)) });
        let spec_run =
            self.body(quote! { #k::run(<#parts_ty as ::core::convert::From<Self>>::from(self), body).await });
        let parts_from_context = self.body(quote! { <Self as #k::Parts>::from_context(spec, ctx) });
        let parts_enter = self.future_body(quote! { <Self as #k::Parts>::enter(self) });
        let parts_run = self.body(quote! { #k::run(self, body).await });
        let service_spec = self.body(quote! { <Self as #k::DualMode>::spec(self) });
        quote! {
            #[automatically_derived]
            impl #spec_impl_generics #spec_ty #spec_where {
                #[doc = #enter_doc]
                #[allow(clippy::missing_errors_doc)]
                pub fn enter<#method_generics>(
                    self,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#k::Guard<#service_ty>, #k::EnterError>> + ::core::marker::Send
                #where_all
                {
                    #spec_enter
                }

                #[doc = #run_doc]
                #[allow(clippy::missing_errors_doc)]
                pub async fn run<#method_generics __Body, __T, __E>(self, body: __Body) -> ::core::result::Result<__T, __E>
                #where_all
                    __Body: ::core::ops::AsyncFnOnce(&#service_ty) -> ::core::result::Result<__T, __E>,
                    __E: ::core::convert::From<#k::Error>,
                {
                    #spec_run
                }
            }

            #[automatically_derived]
            impl #impl_generics #parts_ty #where_all {
                /// Parts that borrow every client the context has and leave the others `None`.
                pub fn from_context(spec: #spec_ty, ctx: &#k::Context) -> Self {
                    #parts_from_context
                }

                #[doc = #enter_doc]
                #[allow(clippy::missing_errors_doc)]
                pub fn enter(
                    self,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#k::Guard<#service_ty>, #k::EnterError>> + ::core::marker::Send {
                    #parts_enter
                }

                #[doc = #run_doc]
                #[allow(clippy::missing_errors_doc)]
                pub async fn run<__Body, __T, __E>(self, body: __Body) -> ::core::result::Result<__T, __E>
                where
                    __Body: ::core::ops::AsyncFnOnce(&#service_ty) -> ::core::result::Result<__T, __E>,
                    __E: ::core::convert::From<#k::Error>,
                {
                    #parts_run
                }
            }

            #[automatically_derived]
            impl #impl_generics #service_ty #where_all {
                /// The job spec of this live service (clones its spec fields).
                pub fn spec(&self) -> #spec_ty {
                    #service_spec
                }
            }
        }
    }
}
