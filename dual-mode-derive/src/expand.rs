//! Code generation: the spec type, the parts type, and the trait impls.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, GenericParam, Generics, Ident, Type, WherePredicate};

use crate::ast::{Field, Input, Kind, Shared, Source};
use crate::attr::Errors;
use crate::valid;

pub(crate) fn derive(node: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut input = Input::from_syn(node, &mut errors)?;
    valid::check(&mut input, &mut errors);
    errors.finish()?;
    Ok(Expander::new(&input).expand())
}

/// A type as the user wrote it, for messages: `redis::aio::ConnectionManager`.
pub(crate) fn type_name(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = chars.get(i.wrapping_sub(1)).copied().unwrap_or(' ');
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            let word = |c: char| c.is_alphanumeric() || c == '_';
            if !(word(prev) && word(next)) && prev != ',' {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Whether `tokens` mention any of `names` as an identifier.
fn mentions(tokens: TokenStream, names: &[&Ident]) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => names.iter().any(|n| **n == i),
        TokenTree::Group(g) => mentions(g.stream(), names),
        _ => false,
    })
}

struct Expander<'a> {
    input: &'a Input<'a>,
    krate: TokenStream,
    service: &'a Ident,
    spec: Ident,
    parts: Ident,
    /// The spec's generics: only the parameters its fields use.
    spec_generics: Generics,
    /// Type parameters the spec drops (used by shared fields only), without defaults.
    dropped: Vec<GenericParam>,
}

impl<'a> Expander<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let service = input.ident;
        let spec = input.container.spec.clone().unwrap_or_else(|| format_ident!("{}Spec", service));
        let parts = input.container.parts.clone().unwrap_or_else(|| format_ident!("{}Parts", service));
        let spec_tokens: TokenStream = input
            .fields
            .iter()
            .filter(|f| matches!(f.kind, Kind::Spec | Kind::Nested))
            .map(|f| f.ty.to_token_stream())
            .collect();
        let mut spec_generics = input.generics.clone();
        let mut dropped: Vec<GenericParam> = Vec::new();
        spec_generics.params = input
            .generics
            .params
            .iter()
            .filter(|p| {
                let name = match p {
                    GenericParam::Type(t) => &t.ident,
                    GenericParam::Const(c) => &c.ident,
                    GenericParam::Lifetime(_) => return true,
                };
                let used = mentions(spec_tokens.clone(), &[name]);
                if !used {
                    dropped.push(without_default(p));
                }
                used
            })
            .cloned()
            .collect();
        let dropped_names: Vec<&Ident> = dropped
            .iter()
            .filter_map(|p| match p {
                GenericParam::Type(t) => Some(&t.ident),
                GenericParam::Const(c) => Some(&c.ident),
                GenericParam::Lifetime(_) => None,
            })
            .collect();
        if let Some(w) = &mut spec_generics.where_clause {
            w.predicates =
                w.predicates.iter().filter(|p| !mentions(p.to_token_stream(), &dropped_names)).cloned().collect();
        }
        Self { input, krate: quote!(::dual_mode), service, spec, parts, spec_generics, dropped }
    }

    fn expand(&self) -> TokenStream {
        let spec_struct = self.spec_struct();
        let parts_struct = self.parts_struct();
        let impls = self.impls();
        quote! {
            #spec_struct
            #parts_struct
            #[doc(hidden)]
            #[allow(non_local_definitions)]
            const _: () = {
                #impls
            };
        }
    }

    fn type_params(&self) -> Vec<&'a Ident> {
        type_params(self.input.generics)
    }

    fn spec_type_params(&self) -> Vec<&Ident> {
        type_params(&self.spec_generics)
    }

    fn spec_struct(&self) -> TokenStream {
        let k = &self.krate;
        let Input { vis, serde_attrs, .. } = self.input;
        let spec = &self.spec;
        let service = self.service;
        let (_, _, where_clause) = self.spec_generics.split_for_impl();
        let params = &self.spec_generics.params;
        let fields = self.input.fields.iter().filter_map(|f| {
            let Field { ident, vis, ty, cfgs, docs, serde_attrs, .. } = f;
            match f.kind {
                Kind::Spec => Some(quote! { #(#cfgs)* #(#docs)* #(#serde_attrs)* #vis #ident: #ty, }),
                Kind::Nested => Some(quote! { #(#cfgs)* #(#docs)* #vis #ident: <#ty as #k::DualMode>::Spec, }),
                _ => None,
            }
        });
        let doc = format!(
            "The job spec of [`{service}`]: its serializable config, without clients or secrets.\n\n\
             Generated by `#[derive(DualMode)]`. Enqueue it, then run it with `{spec}::run` or `{spec}::enter`."
        );
        let serde_path = format!("{k}::__private::serde").replace(' ', "");
        quote! {
            #[doc = #doc]
            #[derive(
                ::core::clone::Clone,
                ::core::fmt::Debug,
                #k::__private::serde::Serialize,
                #k::__private::serde::Deserialize,
            )]
            #[serde(crate = #serde_path)]
            #(#serde_attrs)*
            #vis struct #spec<#params> #where_clause {
                #(#fields)*
            }
        }
    }

    fn parts_struct(&self) -> TokenStream {
        let k = &self.krate;
        let Input { vis, generics, .. } = self.input;
        let parts = &self.parts;
        let service = self.service;
        let params = &generics.params;
        let where_clause = &generics.where_clause;
        let fields = self.input.fields.iter().map(|f| {
            let Field { ident, vis, ty, cfgs, docs, .. } = f;
            match f.kind {
                Kind::Spec => quote! { #(#cfgs)* #(#docs)* #vis #ident: #ty, },
                Kind::Shared(_) | Kind::Secret { .. } => {
                    quote! { #(#cfgs)* #(#docs)* #vis #ident: ::core::option::Option<#ty>, }
                }
                Kind::Nested => quote! { #(#cfgs)* #(#docs)* #vis #ident: <#ty as #k::DualMode>::Parts, },
            }
        });
        let doc = format!(
            "[`{service}`] with its clients optional: a `Some` client is used as is, a `None` one is \
             opened by `enter` and closed by the guard's `exit`.\n\n\
             Generated by `#[derive(DualMode)]`. Build it with a struct literal over a spec: \
             `{parts} {{ field: Some(client), ..spec.into() }}`."
        );
        quote! {
            #[doc = #doc]
            #vis struct #parts<#params> #where_clause {
                #(#fields)*
            }
        }
    }

    /// The where clause every impl gets: the struct's own, plus what the traits need of each
    /// type parameter.
    /// What a type parameter of the spec must be: what the `Spec` trait needs of its fields.
    fn spec_param_bound(&self, param: &TokenStream) -> TokenStream {
        let k = &self.krate;
        quote! {
            #param: ::core::marker::Send + ::core::marker::Sync + 'static + ::core::clone::Clone + ::core::fmt::Debug
                + #k::__private::serde::Serialize + #k::__private::serde::de::DeserializeOwned,
        }
    }

    fn where_clause(&self, extra: &[TokenStream]) -> TokenStream {
        let k = &self.krate;
        let own = self
            .input
            .generics
            .where_clause
            .as_ref()
            .map(|w| w.predicates.iter().collect::<Vec<&WherePredicate>>())
            .unwrap_or_default();
        let spec_params = self.spec_type_params();
        let bounds = self.type_params().into_iter().map(|p| {
            let bounded = respan(p.to_token_stream(), Span::call_site());
            if spec_params.contains(&p) {
                self.spec_param_bound(&bounded)
            } else {
                quote! { #bounded: ::core::marker::Send + ::core::marker::Sync + 'static, }
            }
        });
        let generic_fields = self.input.fields.iter().filter(|f| mentions(f.ty.to_token_stream(), &self.type_params()));
        let field_bounds = generic_fields.filter_map(|f| {
            // At the call site: these bounds are ours, not something the user wrote twice.
            let ty = respan(f.ty.to_token_stream(), Span::call_site());
            match &f.kind {
                Kind::Shared(Shared { source: Source::Open { .. }, .. }) => Some(quote! { #ty: ::core::clone::Clone, }),
                Kind::Shared(_) => Some(quote! { #ty: #k::Resource + ::core::clone::Clone, }),
                Kind::Nested => Some(quote! { #ty: #k::DualMode, }),
                _ => None,
            }
        });
        quote! { where #(#own,)* #(#bounds)* #(#field_bounds)* #(#extra)* }
    }

    #[allow(clippy::too_many_lines, reason = "one quote of the impls, read top to bottom")]
    fn impls(&self) -> TokenStream {
        let k = &self.krate;
        let service = self.service;
        let service_name = service.unraw().to_string();
        let spec = &self.spec;
        let spec_name = spec.unraw().to_string();
        let parts = &self.parts;
        let version = self.input.container.version.unwrap_or(1);
        let (impl_generics, ty_generics, _) = self.input.generics.split_for_impl();
        let (spec_impl_generics, spec_ty_generics, _) = self.spec_generics.split_for_impl();
        let where_all = self.where_clause(&[]);
        let spec_where = {
            let own = self
                .spec_generics
                .where_clause
                .as_ref()
                .map(|w| w.predicates.iter().collect::<Vec<_>>())
                .unwrap_or_default();
            let bounds = self.spec_type_params().into_iter().map(|p| self.spec_param_bound(&p.to_token_stream()));
            quote! { where #(#own,)* #(#bounds)* }
        };
        let spec_ty = quote!(#spec #spec_ty_generics);
        let parts_ty = quote!(#parts #ty_generics);
        let service_ty = quote!(#service #ty_generics);

        // A secret that only serves as another field's `config` is read here, so that it does
        // not look unused to the user's dead-code lint.
        let config_secrets = self.each(|f, ident| {
            let used = self.input.fields.iter().any(|g| matches!(&g.kind, Kind::Shared(Shared { source: Source::Config(_, p), .. }) if p.segments[0] == *ident));
            (matches!(f.kind, Kind::Secret { .. }) && used).then(|| quote! { let _ = &self.#ident; })
        });
        let spec_of_self = self.each(|f, ident| match f.kind {
            Kind::Spec => Some(quote! { #ident: ::core::clone::Clone::clone(&self.#ident), }),
            Kind::Nested => Some(quote! { #ident: #k::DualMode::spec(&self.#ident), }),
            _ => None,
        });
        let spec_of_parts = self.each(|f, ident| match f.kind {
            Kind::Spec => Some(quote! { #ident: ::core::clone::Clone::clone(&self.#ident), }),
            Kind::Nested => Some(quote! { #ident: #k::Parts::spec(&self.#ident), }),
            _ => None,
        });
        let from_spec = self.each(|f, ident| {
            let ty = f.ty;
            Some(match f.kind {
                Kind::Spec => quote! { #ident: __spec.#ident, },
                Kind::Shared(_) | Kind::Secret { .. } => quote! { #ident: ::core::option::Option::None, },
                Kind::Nested => {
                    quote! { #ident: <<#ty as #k::DualMode>::Parts as ::core::convert::From<_>>::from(__spec.#ident), }
                }
            })
        });
        let from_context = self.each(|f, ident| {
            let ty = f.ty;
            Some(match &f.kind {
                Kind::Spec => quote! { #ident: __spec.#ident, },
                Kind::Secret { env } => quote_spanned! {ty.span()=> #ident: __ctx.get_keyed::<#ty>(#env), },
                Kind::Shared(shared) => {
                    let key = key_tokens(shared);
                    quote_spanned! {ty.span()=> #ident: __ctx.get_slot::<#ty>(#key), }
                }
                Kind::Nested => {
                    quote! { #ident: <<#ty as #k::DualMode>::Parts as #k::Parts>::from_context(__spec.#ident, __ctx), }
                }
            })
        });
        let enter_body = self.enter_body(&service_name);
        let scope = Ident::new("__scope", Span::mixed_site());
        let inherent = self.inherent(&spec_ty, &parts_ty, &service_ty);
        let from_state = self.state_impls();
        quote! {
            #[automatically_derived]
            impl #impl_generics #k::DualMode for #service_ty #where_all {
                type Spec = #spec_ty;
                type Parts = #parts_ty;
                const NAME: &'static str = #service_name;

                fn spec(&self) -> #spec_ty {
                    #(#config_secrets)*
                    #spec { #(#spec_of_self)* }
                }
            }

            #[automatically_derived]
            impl #spec_impl_generics #k::Spec for #spec_ty #spec_where {
                const NAME: &'static str = #spec_name;
                const VERSION: u32 = #version;
            }

            #[automatically_derived]
            impl #impl_generics ::core::convert::From<#spec_ty> for #parts_ty #where_all {
                fn from(__spec: #spec_ty) -> Self {
                    Self { #(#from_spec)* }
                }
            }

            #[automatically_derived]
            impl #impl_generics #k::Parts for #parts_ty #where_all {
                type Service = #service_ty;

                fn from_context(__spec: #spec_ty, __ctx: &#k::Context) -> Self {
                    Self { #(#from_context)* }
                }

                fn spec(&self) -> #spec_ty {
                    #spec { #(#spec_of_parts)* }
                }

                fn enter_in(
                    self,
                    #scope: &mut #k::Scope,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#service_ty, #k::EnterError>> + ::core::marker::Send {
                    #enter_body
                }
            }

            #inherent
            #from_state
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
}

fn type_params(generics: &Generics) -> Vec<&Ident> {
    generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            _ => None,
        })
        .collect()
}

/// A parameter as a method or impl may declare it: without its default.
fn without_default(param: &GenericParam) -> GenericParam {
    let mut param = param.clone();
    match &mut param {
        GenericParam::Type(t) => t.default = None,
        GenericParam::Const(c) => c.default = None,
        GenericParam::Lifetime(_) => {}
    }
    param
}

fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn key_tokens(shared: &Shared) -> TokenStream {
    match &shared.key {
        Some(key) => quote! { ::core::option::Option::Some(#key) },
        None => quote! { ::core::option::Option::None },
    }
}

impl Expander<'_> {
    /// `enter_in`: secrets first, then shared clients and nested services in field order.
    #[allow(clippy::too_many_lines, reason = "one generated body, field kind by field kind")]
    fn enter_body(&self, service_name: &str) -> TokenStream {
        let k = &self.krate;
        let service = self.service;
        let parts = Ident::new("__parts", Span::mixed_site());
        let scope = Ident::new("__scope", Span::mixed_site());
        let spec_view = Ident::new("__spec_view", Span::mixed_site());
        let spec_ty = {
            let spec = &self.spec;
            let (_, spec_ty_generics, _) = self.spec_generics.split_for_impl();
            quote!(#spec #spec_ty_generics)
        };
        let local = |ident: &Ident| Ident::new(&format!("__f_{}", ident.unraw()), Span::mixed_site());
        let site = |f: &Field<'_>| {
            let field = f.ident.unraw().to_string();
            let resource = type_name(f.ty);
            quote! { #k::Site { service: #service_name, field: #field, resource: #resource } }
        };

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
            let Kind::Secret { env } = &f.kind else { return None };
            let (ident, ty, cfgs, var) = (f.ident, f.ty, &f.cfgs, local(f.ident));
            let site = site(f);
            let k_ty = quote_spanned! {ty.span()=> ::dual_mode};
            Some(quote_spanned! {ty.span()=>
                #(#cfgs)*
                let #var: #ty = match #parts.#ident {
                    ::core::option::Option::Some(__v) => __v,
                    ::core::option::Option::None => #k_ty::__private::read_secret::<#ty>(
                        #site,
                        #k::SecretSource::Env(#env),
                    )?,
                };
            })
        });

        let opens = self.input.fields.iter().filter_map(|f| {
            let (ident, ty, cfgs, var) = (f.ident, f.ty, &f.cfgs, local(f.ident));
            let site = site(f);
            match &f.kind {
                Kind::Spec | Kind::Secret { .. } => None,
                Kind::Nested => Some(quote_spanned! {ty.span()=>
                    #(#cfgs)*
                    let #var: #ty = <<#ty as #k::DualMode>::Parts as #k::Parts>::enter_in(#parts.#ident, #scope).await?;
                }),
                Kind::Shared(shared) => {
                    let key = key_tokens(shared);
                    let k_ty = quote_spanned! {ty.span()=> ::dual_mode};
                    let open = match &shared.source {
                        Source::Default => quote_spanned! {ty.span()=>
                            #k_ty::Scope::open::<#ty>(
                                #scope,
                                #site,
                                #key,
                                &<<#ty as #k::Resource>::Config as #k::__private::DefaultConfig>::default_config(),
                            ).await?
                        },
                        Source::Config(span, path) => {
                            let root = &path.segments[0];
                            let rest = &path.segments[1..];
                            let is_secret = self.input.fields.iter().any(|g| g.ident == root && matches!(g.kind, Kind::Secret { .. }));
                            let expr = if is_secret {
                                let secret = local(root);
                                quote_spanned! {*span=> #secret.expose() #(.#rest)* }
                            } else {
                                quote_spanned! {*span=> #parts.#root #(.#rest)* }
                            };
                            // The value, named by an identifier at the path's last segment: a
                            // type mismatch is then reported on the user's `config = a.b`.
                            let last = path.segments.last().map_or(*span, Ident::span);
                            let value = Ident::new("__config_value", last.resolved_at(Span::mixed_site()));
                            quote_spanned! {ty.span()=>
                                {
                                    let #value = &#expr;
                                    let __config: &<#ty as #k::Resource>::Config = #value;
                                    #k_ty::Scope::open::<#ty>(#scope, #site, #key, __config).await?
                                }
                            }
                        }
                        Source::Open { open, close } => {
                            let close = match close {
                                Some(close) => {
                                    let k_close = quote_spanned! {close.span()=> ::dual_mode};
                                    quote_spanned! {close.span()=>
                                    {
                                        |__v: #ty| -> ::core::pin::Pin<::std::boxed::Box<dyn ::core::future::Future<Output = ::core::result::Result<(), #k::BoxError>> + ::core::marker::Send>> {
                                            ::std::boxed::Box::pin(async move { #k_close::__private::call_close::<#ty, _, _>(#close, __v).await.map_err(::core::convert::Into::into) })
                                        }
                                    }
                                }},
                                None => quote! { #k::__private::drop_close::<#ty> },
                            };
                            let k_open = quote_spanned! {open.span()=> ::dual_mode};
                            quote_spanned! {open.span()=>
                                #k_open::Scope::open_with::<#ty, _, _>(
                                    #scope,
                                    #site,
                                    #key,
                                    #k_open::__private::call_open::<#spec_ty, #ty, _, _>(#open, #k::__private::spec_view(#spec_view.as_ref())),
                                    #close,
                                ).await?
                            }
                        }
                    };
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
                Kind::Spec => quote! { #ident: #parts.#ident, },
                _ => {
                    let var = local(ident);
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

    /// Inherent methods, so that users call `spec.run(...)` without importing traits.
    fn inherent(&self, spec_ty: &TokenStream, parts_ty: &TokenStream, service_ty: &TokenStream) -> TokenStream {
        let k = &self.krate;
        let (impl_generics, _, _) = self.input.generics.split_for_impl();
        let (spec_impl_generics, _, _) = self.spec_generics.split_for_impl();
        let where_all = self.where_clause(&[]);
        // Parameters the spec drops become parameters of its methods.
        let dropped = &self.dropped;
        let method_generics = if dropped.is_empty() { quote!() } else { quote!(#(#dropped,)*) };
        let run_doc = format!(
            "Enters the spec's service with temporary clients, runs `body`, and exits on every path \
             (`Ok`, `Err`, panic, cancellation). See [`{k}::run`].",
            k = "dual_mode"
        );
        let enter_doc = "Opens every client (and resolves every secret) and returns a guard that derefs to the service.\n\n\
             # Errors\n\nAn `EnterError` naming the service, field, resource type and cause.";
        quote! {
            #[automatically_derived]
            impl #spec_impl_generics #spec_ty {
                #[doc = #enter_doc]
                #[allow(clippy::missing_errors_doc)]
                pub fn enter<#method_generics>(
                    self,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#k::Guard<#service_ty>, #k::EnterError>> + ::core::marker::Send
                #where_all
                {
                    #k::Parts::enter(<#parts_ty as ::core::convert::From<Self>>::from(self))
                }

                #[doc = #run_doc]
                #[allow(clippy::missing_errors_doc)]
                pub async fn run<#method_generics __Body, __T, __E>(self, body: __Body) -> ::core::result::Result<__T, __E>
                #where_all
                    __Body: ::core::ops::AsyncFnOnce(&#service_ty) -> ::core::result::Result<__T, __E>,
                    __E: ::core::convert::From<#k::Error>,
                {
                    #k::run(<#parts_ty as ::core::convert::From<Self>>::from(self), body).await
                }
            }

            #[automatically_derived]
            impl #impl_generics #parts_ty #where_all {
                /// Parts that borrow every client the context has and leave the others `None`.
                pub fn from_context(spec: #spec_ty, ctx: &#k::Context) -> Self {
                    <Self as #k::Parts>::from_context(spec, ctx)
                }

                #[doc = #enter_doc]
                #[allow(clippy::missing_errors_doc)]
                pub fn enter(
                    self,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#k::Guard<#service_ty>, #k::EnterError>> + ::core::marker::Send {
                    <Self as #k::Parts>::enter(self)
                }

                #[doc = #run_doc]
                #[allow(clippy::missing_errors_doc)]
                pub async fn run<__Body, __T, __E>(self, body: __Body) -> ::core::result::Result<__T, __E>
                where
                    __Body: ::core::ops::AsyncFnOnce(&#service_ty) -> ::core::result::Result<__T, __E>,
                    __E: ::core::convert::From<#k::Error>,
                {
                    #k::run(self, body).await
                }
            }

            #[automatically_derived]
            impl #impl_generics #service_ty #where_all {
                /// The job spec of this live service (clones its spec fields).
                pub fn spec(&self) -> #spec_ty {
                    <Self as #k::DualMode>::spec(self)
                }
            }
        }
    }

    /// `from_state` through axum's `FromRef`. App state gives one value per type, so a type
    /// that two fields share makes `from_state` unusable, with an error that says why.
    fn state_impls(&self) -> TokenStream {
        let k = &self.krate;
        let state = Ident::new("__State", Span::call_site());
        let mut seen: Vec<String> = Vec::new();
        let mut shared_types: Vec<TokenStream> = Vec::new();
        for f in &self.input.fields {
            if matches!(f.kind, Kind::Shared(_) | Kind::Secret { .. }) {
                let name = f.ty.to_token_stream().to_string();
                if seen.contains(&name) {
                    let ty = respan(f.ty.to_token_stream(), Span::call_site());
                    shared_types.push(quote! { #state: #k::__private::OneFieldPerType<#ty>, });
                } else {
                    seen.push(name);
                }
            }
        }
        let service = self.service;
        let (_, ty_generics, _) = self.input.generics.split_for_impl();
        let params = self.input.generics.params.iter().map(without_default);
        let spec = &self.spec;
        let (_, spec_ty_generics, _) = self.spec_generics.split_for_impl();
        let bounds: Vec<TokenStream> = self
            .input
            .fields
            .iter()
            .filter_map(|f| {
                let ty = f.ty;
                match f.kind {
                    Kind::Shared(_) | Kind::Secret { .. } => {
                        Some(quote_spanned! {ty.span()=> #state: #k::__private::StateHas<#ty>, })
                    }
                    Kind::Nested => Some(quote_spanned! {ty.span()=> #ty: #k::FromState<#state>, }),
                    Kind::Spec => None,
                }
            })
            .chain(shared_types)
            .collect();
        let where_all = self.where_clause(&bounds);
        let where_plain = self.where_clause(&[]);
        let fields = self.each(|f, ident| {
            let ty = f.ty;
            Some(match f.kind {
                Kind::Spec => quote! { #ident: __spec.#ident, },
                Kind::Shared(_) | Kind::Secret { .. } => {
                    quote! { #ident: <#state as #k::__private::StateHas<#ty>>::get(__state), }
                }
                Kind::Nested => quote! { #ident: <#ty as #k::FromState<#state>>::from_state(__spec.#ident, __state), },
            })
        });
        let (impl_generics, _, _) = self.input.generics.split_for_impl();
        quote! {
            #k::__private::with_axum! {
                #[automatically_derived]
                impl<#(#params,)* #state> #k::FromState<#state> for #service #ty_generics #where_all {
                    fn from_state(__spec: #spec #spec_ty_generics, __state: &#state) -> Self {
                        Self { #(#fields)* }
                    }
                }

                #[automatically_derived]
                impl #impl_generics #service #ty_generics #where_plain {
                    /// The service with every shared client (and secret) taken from axum app
                    /// state through `FromRef`: synchronous, infallible, no guard.
                    pub fn from_state<#state>(spec: #spec #spec_ty_generics, state: &#state) -> Self
                    where
                        Self: #k::FromState<#state> + #k::DualMode<Spec = #spec #spec_ty_generics>,
                    {
                        <Self as #k::FromState<#state>>::from_state(spec, state)
                    }
                }
            }
        }
    }
}
