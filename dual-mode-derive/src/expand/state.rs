//! `from_state` through axum's `FromRef` (feature `axum` of the runtime). App state gives one
//! value per type, so a type that two fields share makes `from_state` unusable, with an error
//! that says why.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

use super::Expander;
use super::generics::{mentions, respan, without_default};
use crate::attr::Kind;

impl Expander<'_> {
    /// A name for the state's type parameter that no field type and no parameter of the
    /// service uses, so that messages read `from_state<State>`.
    fn state_param(&self) -> Ident {
        let used: TokenStream = self
            .input
            .fields
            .iter()
            .map(|f| f.ty.to_token_stream())
            .chain(std::iter::once(self.input.generics.to_token_stream()))
            .collect();
        ["State", "AppState", "St", "S"]
            .into_iter()
            .map(|name| Ident::new(name, Span::call_site()))
            .find(|name| !mentions(used.clone(), &[name]))
            .unwrap_or_else(|| Ident::new("__State", Span::call_site()))
    }

    pub(super) fn state_items(&self) -> TokenStream {
        let k = &self.krate;
        let state = self.state_param();
        let mut seen: Vec<String> = Vec::new();
        let mut bounds: Vec<TokenStream> = Vec::new();
        for f in &self.input.fields {
            let ty = f.ty;
            match f.kind {
                Kind::Shared(_) | Kind::Secret(_) => {
                    bounds.push(quote_spanned! {ty.span()=> #state: #k::Provides<#ty>, });
                    let name = ty.to_token_stream().to_string();
                    if seen.contains(&name) {
                        let ty = respan(ty.to_token_stream(), Span::call_site());
                        bounds.push(quote! { #state: #k::OneFieldPerType<#ty>, });
                    } else {
                        seen.push(name);
                    }
                }
                // Under a binder, as `Bounds::nested`: `FromState` implies `DualMode`, and a
                // nested type that is not a service is then no second error here.
                Kind::Nested => {
                    bounds.push(quote_spanned! {ty.span()=> for<'__dual_mode> #ty: #k::FromState<#state>, });
                }
                Kind::Spec { .. } => {}
            }
        }
        let fields = self.each(|f, ident| {
            let ty = f.ty;
            Some(match f.kind {
                Kind::Spec { .. } => quote! { #ident: spec.#ident, },
                Kind::Shared(_) | Kind::Secret(_) => quote! { #ident: <#state as #k::Provides<#ty>>::provide(state), },
                Kind::Nested => quote! { #ident: <#ty as #k::FromState<#state>>::from_state(spec.#ident, state), },
            })
        });
        let body = self.body(quote! { Self { #(#fields)* } });
        let (spec_ty, service_ty) = (self.spec_ty(), self.service_ty());
        let params = self.input.generics.params.iter().map(without_default);
        let (impl_generics, _, _) = self.input.generics.split_for_impl();
        let where_all = &self.bounds.service;
        quote! {
            #k::__private::with_axum! {
                #[automatically_derived]
                impl #impl_generics #service_ty #where_all {
                    /// The service with every shared client (and secret) taken from axum app
                    /// state through `FromRef`: synchronous, infallible, no guard.
                    #[allow(clippy::needless_pass_by_value)]
                    pub fn from_state<#state>(spec: #spec_ty, state: &#state) -> Self
                    where
                        #(#bounds)*
                    {
                        #body
                    }
                }

                #[automatically_derived]
                impl<#(#params,)* #state> #k::FromState<#state> for #service_ty #where_all #(#bounds)* {
                    fn from_state(spec: #spec_ty, state: &#state) -> Self {
                        Self::from_state(spec, state)
                    }
                }
            }
        }
    }
}
