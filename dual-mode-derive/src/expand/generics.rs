//! Generics and bounds: which type parameters the spec keeps, and the where clauses of the
//! generated impls. Bounds go on field types, as serde infers them, never on bare parameters:
//! `backend: B::Config` bounds `B::Config`, so a marker `B` needs nothing.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{GenericParam, Generics, Ident, WherePredicate};

use crate::ast::{Field, Input};
use crate::attr::{Kind, Shared, Source};

pub(crate) struct Bounds {
    /// The spec's generics: only the parameters its fields use, with the struct's own
    /// predicates on them.
    pub(crate) spec_generics: Generics,
    /// Type parameters the spec drops (used by shared fields only), without defaults.
    pub(crate) dropped: Vec<GenericParam>,
    /// The where clause of impls on the service and its parts.
    pub(crate) service: TokenStream,
    /// The where clause of impls on the spec.
    pub(crate) spec: TokenStream,
    /// The spec's predicates as text, for `#[serde(bound = "...")]`; `None` for a spec
    /// without type parameters.
    pub(crate) serde: Option<String>,
    /// `for<'__dual_mode> T: DualMode` for each nested field of a concrete type `T`, on every
    /// generated struct and impl. Under a binder, a bound that does not hold is no error where
    /// it is written (it only makes the item unusable), so a nested type that is not a service
    /// is the one error of its field's check, not one per generated item.
    pub(crate) nested: Vec<WherePredicate>,
}

/// Whether `tokens` mention any of `names` as an identifier.
pub(crate) fn mentions(tokens: TokenStream, names: &[&Ident]) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => names.iter().any(|n| **n == i),
        TokenTree::Group(g) => mentions(g.stream(), names),
        _ => false,
    })
}

/// `tokens` with every span set to `span`: bounds the derive adds are its own, not something
/// the user wrote twice.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &mut tt {
                let mut inner = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                inner.set_span(span);
                *g = inner;
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

pub(crate) fn without_default(p: &GenericParam) -> GenericParam {
    let mut p = p.clone();
    match &mut p {
        GenericParam::Type(t) => {
            t.default = None;
        }
        GenericParam::Const(c) => {
            c.default = None;
        }
        GenericParam::Lifetime(_) => {}
    }
    p
}

fn param_name(p: &GenericParam) -> Option<&Ident> {
    match p {
        GenericParam::Type(t) => Some(&t.ident),
        GenericParam::Const(c) => Some(&c.ident),
        GenericParam::Lifetime(_) => None,
    }
}

fn type_params(generics: &Generics) -> Vec<&Ident> {
    generics.type_params().map(|t| &t.ident).collect()
}

fn own_predicates(generics: &Generics) -> Vec<&WherePredicate> {
    generics.where_clause.as_ref().map(|w| w.predicates.iter().collect()).unwrap_or_default()
}

/// What the generated code needs of one field's type, when that type mentions a parameter.
fn field_bound(field: &Field<'_>, k: &TokenStream) -> TokenStream {
    let ty = respan(field.ty.to_token_stream(), Span::call_site());
    match &field.kind {
        Kind::Spec { .. } => quote! { #ty: #k::SpecField, },
        Kind::Shared(Shared { source: Source::Open { .. }, .. }) => {
            quote! { #ty: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static, }
        }
        Kind::Shared(Shared { source: Source::Default, .. }) => {
            quote! { #ty: #k::DefaultConfig, }
        }
        Kind::Shared(_) => quote! { #ty: #k::SharedField, },
        Kind::Secret(_) => quote! { #ty: #k::SecretField + ::core::clone::Clone, },
        Kind::Nested => quote! { #ty: #k::DualMode, },
    }
}

/// The bounds of nested fields whose type mentions no parameter (see [`Bounds::nested`]).
fn nested_bounds(input: &Input<'_>, k: &TokenStream) -> Vec<WherePredicate> {
    let params = type_params(input.generics);
    input
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Nested) && !mentions(f.ty.to_token_stream(), &params))
        .map(|f| {
            let ty = respan(f.ty.to_token_stream(), Span::call_site());
            syn::parse_quote! { for<'__dual_mode> #ty: #k::DualMode }
        })
        .collect()
}

pub(crate) fn bounds(input: &Input<'_>, k: &TokenStream) -> Bounds {
    let nested = nested_bounds(input, k);
    let in_spec = |f: &&Field<'_>| matches!(f.kind, Kind::Spec { .. } | Kind::Nested);
    let spec_tokens: TokenStream = input.fields.iter().filter(in_spec).map(|f| f.ty.to_token_stream()).collect();
    let mut spec_generics = input.generics.clone();
    let mut dropped = Vec::new();
    spec_generics.params = input
        .generics
        .params
        .iter()
        .filter(|p| {
            let Some(name) = param_name(p) else { return true };
            let used = mentions(spec_tokens.clone(), &[name]);
            if !used {
                dropped.push(without_default(p));
            }
            used
        })
        .cloned()
        .collect();
    let dropped_names: Vec<&Ident> = dropped.iter().filter_map(param_name).collect();
    if let Some(w) = &mut spec_generics.where_clause {
        w.predicates =
            w.predicates.iter().filter(|p| !mentions(p.to_token_stream(), &dropped_names)).cloned().collect();
    }

    if !nested.is_empty() {
        spec_generics.make_where_clause().predicates.extend(nested.iter().cloned());
    }

    let all_params = type_params(input.generics);
    let spec_params = type_params(&spec_generics);
    let statics = |params: &[&Ident]| -> Vec<TokenStream> {
        params.iter().map(|p| respan(quote! { #p: 'static, }, Span::call_site())).collect()
    };
    let generic_fields = |params: &[&Ident]| {
        input.fields.iter().filter(|f| mentions(f.ty.to_token_stream(), params)).collect::<Vec<_>>()
    };
    let (service_inferred, spec_inferred): (Vec<TokenStream>, Vec<TokenStream>) = match &input.container.bound {
        Some(user) => {
            let user: Vec<TokenStream> = user.iter().map(|p| quote! { #p, }).collect();
            (user.clone(), user)
        }
        None => {
            let mut service = statics(&all_params);
            service.extend(generic_fields(&all_params).into_iter().map(|f| field_bound(f, k)));
            let mut spec = statics(&spec_params);
            spec.extend(generic_fields(&spec_params).into_iter().filter(in_spec).map(|f| field_bound(f, k)));
            (service, spec)
        }
    };
    let own = own_predicates(input.generics);
    let spec_own = own_predicates(&spec_generics);
    let serde = (!spec_params.is_empty()).then(|| {
        spec_own
            .iter()
            .map(|p| p.to_token_stream().to_string())
            .chain(spec_inferred.iter().map(|p| {
                let text = p.to_string();
                text.trim_end().trim_end_matches(',').to_owned()
            }))
            .collect::<Vec<_>>()
            .join(", ")
    });
    Bounds {
        service: quote! { where #(#own,)* #(#nested,)* #(#service_inferred)* },
        spec: quote! { where #(#spec_own,)* #(#spec_inferred)* },
        spec_generics,
        dropped,
        serde,
        nested,
    }
}
