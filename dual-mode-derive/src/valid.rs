//! Semantic checks: which attribute combinations mean something, and whether the paths they
//! name exist. Every problem is reported, each at the key, field or type it is about.

use std::collections::HashMap;

use quote::ToTokens;
use syn::GenericParam;

use crate::ast::{Field, Input, Kind, Shared, Source};
use crate::attr::Errors;

pub(crate) fn check(input: &mut Input<'_>, errors: &mut Errors) {
    for param in &input.generics.params {
        if let GenericParam::Lifetime(l) = param {
            errors.at(
                l.lifetime.span(),
                format_args!(
                    "a service cannot borrow: remove lifetime `{}`; services are `'static` so that a job can enter them later",
                    l.lifetime
                ),
            );
        }
    }
    for field in &mut input.fields {
        if let Some(kind) = kind(field, errors) {
            field.kind = kind;
        }
    }
    check_config_paths(input, errors);
    check_distinct_slots(input, errors);
}

/// Turns a field's raw keys into its kind, reporting keys that do not go together.
fn kind(field: &Field<'_>, errors: &mut Errors) -> Option<Kind> {
    let a = &field.attrs;
    let roles: Vec<(&str, proc_macro2::Span)> = [("shared", a.shared), ("secret", a.secret), ("nested", a.nested)]
        .into_iter()
        .filter_map(|(name, span)| span.map(|s| (name, s)))
        .collect();
    if let [(first, _), (second, span), ..] = roles.as_slice() {
        errors.at(*span, format_args!("conflicting dual_mode attributes `{first}` and `{second}`: a field is one of spec, shared, secret or nested"));
        return None;
    }
    let role = roles.first().map(|(name, _)| *name);
    let mut ok = true;
    let mut needs = |present: Option<proc_macro2::Span>, key: &str, owner: &str, example: &str| {
        if let Some(span) = present
            && role != Some(owner)
        {
            ok = false;
            errors.at(span, format_args!("`{key}` needs `{owner}`: write `#[dual_mode({owner}, {example})]`"));
        }
    };
    needs(a.config.as_ref().map(|c| c.0), "config", "shared", "config = spec_field.path");
    needs(a.open.as_ref().map(|c| c.0), "open", "shared", "open = path::to::open_fn");
    needs(a.close.as_ref().map(|c| c.0), "close", "shared", "open = path, close = path");
    needs(a.key.as_ref().map(|c| c.0), "key", "shared", "key = \"name\"");
    needs(a.env.as_ref().map(|c| c.0), "env", "secret", "env = \"NAME\"");
    if let (Some(role), Some(attr)) = (role, field.serde_attrs.first()) {
        ok = false;
        errors.spanned(
            attr,
            format_args!("`#[serde]` has no effect on a {role} field: remove it; only spec fields are serialized"),
        );
    }
    if !ok {
        return None;
    }
    match role {
        None => Some(Kind::Spec),
        Some("nested") => Some(Kind::Nested),
        Some("secret") => match &a.env {
            Some((_, env)) if env.value().is_empty() => {
                errors.at(env.span(), "`env` names an environment variable: it cannot be empty");
                None
            }
            Some((_, env)) => Some(Kind::Secret { env: env.clone() }),
            None => {
                errors.at(
                    a.secret.unwrap_or_else(|| field.ident.span()),
                    "a secret needs a source: write `#[dual_mode(secret, env = \"NAME\")]`",
                );
                None
            }
        },
        _ => {
            let source = match (&a.config, &a.open, &a.close) {
                (Some((_, _)), Some((open_span, _)), _) => {
                    errors.at(*open_span, "conflicting dual_mode attributes `config` and `open`: an `open = path` function receives the whole spec, so it takes no `config`");
                    return None;
                }
                (_, None, Some((close_span, _))) => {
                    errors.at(
                        *close_span,
                        "`close` needs `open`: write `#[dual_mode(shared, open = path, close = path)]`, or remove `close` and let the `Resource` close itself",
                    );
                    return None;
                }
                (Some((span, path)), None, None) => {
                    Source::Config(*span, crate::attr::ConfigPath { segments: path.segments.clone() })
                }
                (None, Some((_, open)), close) => {
                    Source::Open { open: open.clone(), close: close.as_ref().map(|c| c.1.clone()) }
                }
                (None, None, None) => Source::Default,
            };
            let key = match &a.key {
                Some((_, key)) if key.value().is_empty() => {
                    errors.at(key.span(), "`key` cannot be empty");
                    return None;
                }
                other => other.as_ref().map(|k| k.1.clone()),
            };
            Some(Kind::Shared(Shared { source, key }))
        }
    }
}

/// A `config` path starts at a spec field or a secret field of this struct.
fn check_config_paths(input: &Input<'_>, errors: &mut Errors) {
    for field in &input.fields {
        let Kind::Shared(Shared { source: Source::Config(_, path), .. }) = &field.kind else { continue };
        let root = &path.segments[0];
        match input.fields.iter().find(|f| f.ident == root) {
            Some(Field { kind: Kind::Spec | Kind::Secret { .. }, .. }) => {}
            Some(Field { kind: Kind::Shared(_), .. }) => errors.at(
                root.span(),
                format_args!("`config` cannot start at `{root}`: it is a shared client; a config comes from a spec field or a secret"),
            ),
            Some(Field { kind: Kind::Nested, .. }) => errors.at(
                root.span(),
                format_args!("`config` cannot start at `{root}`: it is a nested service; copy the value into a spec field of this struct"),
            ),
            None => {
                let candidates: Vec<String> = input
                    .fields
                    .iter()
                    .filter(|f| matches!(f.kind, Kind::Spec | Kind::Secret { .. }))
                    .map(|f| format!("`{}`", f.ident))
                    .collect();
                let hint = if candidates.is_empty() {
                    "this struct has none".to_owned()
                } else {
                    format!("this struct has {}", candidates.join(", "))
                };
                errors.at(root.span(), format_args!("no field `{root}`: `config` starts at a spec or secret field, and {hint}"));
            }
        }
    }
}

/// Two shared fields of one type need distinct keys, or a context could not tell them apart.
fn check_distinct_slots(input: &Input<'_>, errors: &mut Errors) {
    let mut seen: HashMap<(String, Option<String>), &Field<'_>> = HashMap::new();
    for field in &input.fields {
        let Kind::Shared(shared) = &field.kind else { continue };
        let ty = field.ty.to_token_stream().to_string();
        let slot = (ty, shared.key.as_ref().map(syn::LitStr::value));
        if let Some(first) = seen.get(&slot) {
            let ty = crate::expand::type_name(field.ty);
            match &slot.1 {
                None => errors.spanned(
                    field.ty,
                    format_args!(
                        "two unkeyed shared fields of type `{ty}` (`{}` and `{}`): give each a name with `#[dual_mode(shared, key = \"...\")]`",
                        first.ident, field.ident
                    ),
                ),
                Some(key) => errors.spanned(
                    field.ty,
                    format_args!("shared fields `{}` and `{}` of type `{ty}` both have key \"{key}\": keys must differ", first.ident, field.ident),
                ),
            }
        } else {
            seen.insert(slot, field);
        }
    }
}
