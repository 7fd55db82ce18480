//! Checks across fields and on the struct as a whole, run once every field has its kind.

use std::collections::HashMap;

use quote::{ToTokens, format_ident};
use syn::GenericParam;
use syn::ext::IdentExt;

use crate::ast::{Field, Input};
use crate::attr::{Kind, Shared, Source};
use crate::ctxt::Errors;

/// Runs every check; `false` when no generated item could compile (a borrowing service,
/// clashing type names), so that only the errors are emitted.
pub(crate) fn check(input: &Input<'_>, errors: &mut Errors) -> bool {
    let lifetimes_ok = lifetimes(input, errors);
    let names_ok = generated_names(input, errors);
    config_paths(input, errors);
    distinct_slots(input, errors);
    lifetimes_ok && names_ok
}

fn lifetimes(input: &Input<'_>, errors: &mut Errors) -> bool {
    let mut ok = true;
    for param in &input.generics.params {
        if let GenericParam::Lifetime(l) = param {
            errors.at(
                l.lifetime.span(),
                format_args!(
                    "a service cannot borrow: remove lifetime `{}`; services are `'static` so that a job can enter them later",
                    l.lifetime
                ),
            );
            ok = false;
        }
    }
    ok
}

/// `spec = X` and `parts = X` name two new types: they differ from each other and from the
/// service.
fn generated_names(input: &Input<'_>, errors: &mut Errors) -> bool {
    let mut ok = true;
    let service = input.ident.unraw();
    let spec = input.container.spec.as_ref();
    let parts = input.container.parts.as_ref();
    for (key, name) in [("spec", spec), ("parts", parts)] {
        if let Some(name) = name
            && name.unraw() == service
        {
            errors.at(
                name.span(),
                format_args!(
                    "`{key} = {name}` names the service itself: pick another name for the generated {key} type"
                ),
            );
            ok = false;
        }
    }
    let spec_name = spec.map_or_else(|| format_ident!("{}Spec", service), IdentExt::unraw);
    let parts_name = parts.map_or_else(|| format_ident!("{}Parts", service), IdentExt::unraw);
    if spec_name == parts_name {
        let at = parts.or(spec).map_or_else(|| input.ident.span(), proc_macro2::Ident::span);
        errors.at(at, format_args!("the spec and the parts types would both be named `{spec_name}`: give `spec = ...` and `parts = ...` different names"));
        ok = false;
    }
    ok
}

/// A `config` path starts at a spec field or a secret field of this struct.
fn config_paths(input: &Input<'_>, errors: &mut Errors) {
    for field in &input.fields {
        let Kind::Shared(Shared { source: Source::Config(path), .. }) = &field.kind else { continue };
        let root = &path.segments[0];
        match input.field(root) {
            Some(Field { kind: Kind::Spec { .. } | Kind::Secret(_), .. }) => {}
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
                    .filter(|f| matches!(f.kind, Kind::Spec { .. } | Kind::Secret(_)))
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
fn distinct_slots(input: &Input<'_>, errors: &mut Errors) {
    let mut seen: HashMap<(String, Option<String>), &Field<'_>> = HashMap::new();
    for field in &input.fields {
        let Kind::Shared(shared) = &field.kind else { continue };
        let ty = field.ty.to_token_stream().to_string();
        let slot = (ty, shared.key.as_ref().map(syn::LitStr::value));
        let Some(first) = seen.get(&slot) else {
            seen.insert(slot, field);
            continue;
        };
        let ty = crate::ctxt::type_name(field.ty);
        match &shared.key {
            None => errors.spanned(
                field.ty,
                format_args!(
                    "two unkeyed shared fields of type `{ty}` (`{}` and `{}`): give each a name with `#[dual_mode(shared, key = \"...\")]`",
                    first.ident, field.ident
                ),
            ),
            Some(key) => errors.at(
                key.span(),
                format_args!(
                    "key \"{}\" is taken: shared fields `{}` and `{}` of type `{ty}` need different keys",
                    key.value(),
                    first.ident,
                    field.ident
                ),
            ),
        }
    }
}

/// Spec fields whose name says they hold a credential, and that no `not_secret` marks.
pub(crate) fn credential_names<'f, 'a>(input: &'f Input<'a>) -> impl Iterator<Item = &'f Field<'a>> {
    input.fields.iter().filter(|f| {
        let Kind::Spec { not_secret: false } = f.kind else { return false };
        looks_like_credential(&f.ident.unraw().to_string())
    })
}

/// Whether a field name says it holds a credential: one of these words as the whole name, as
/// its last `_`-separated word, or (for the unambiguous ones) as its first.
fn looks_like_credential(name: &str) -> bool {
    /// The whole name, the first word or the last word.
    const ANYWHERE: &[&str] =
        &["password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential", "credentials"];
    /// The whole name or the last word (`cache_key` too: `not_secret` says it is none).
    const LAST: &[&str] = &["key", "bearer", "auth", "appid"];
    let name = name.to_ascii_lowercase();
    let last = name.rsplit('_').next().unwrap_or_default();
    ANYWHERE.iter().any(|w| name == *w || name.starts_with(&format!("{w}_")) || name.ends_with(&format!("_{w}")))
        || LAST.iter().chain(ANYWHERE).any(|w| last == *w)
}

#[cfg(test)]
mod tests {
    use super::looks_like_credential;

    #[test]
    fn credential_words_as_the_name_or_its_last_word() {
        for name in ["key", "api_key", "weather_key", "token", "access_token", "secret", "client_secret", "password"] {
            assert!(looks_like_credential(name), "{name}");
        }
        for name in ["bearer", "auth", "basic_auth", "appid", "owm_appid", "token_bucket_size", "apikey", "Password"] {
            assert!(looks_like_credential(name), "{name}");
        }
        for name in ["keys", "key_prefix", "monkey", "author", "authority", "bearer_format", "city", "appid_hint"] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }
}
