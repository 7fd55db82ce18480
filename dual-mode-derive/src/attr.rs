//! `#[dual_mode(...)]` attributes: the keys, parsed with their spans, and each field's keys
//! resolved once into its final [`Kind`]. Checks that involve several fields are in `check.rs`.

use proc_macro2::Span;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token, Type, WherePredicate};

use crate::ctxt::Errors;

/// The attribute's name.
const DUAL_MODE: &str = "dual_mode";

// Container keys.
const SPEC: &str = "spec";
const PARTS: &str = "parts";
const VERSION: &str = "version";
const CRATE: &str = "crate";
const BOUND: &str = "bound";
const CONTAINER_KEYS: &[&str] = &[SPEC, PARTS, VERSION, CRATE, BOUND];

// Field keys.
const SHARED: &str = "shared";
const SECRET: &str = "secret";
const NESTED: &str = "nested";
const CONFIG: &str = "config";
const OPEN: &str = "open";
const CLOSE: &str = "close";
const KEY: &str = "key";
const ENV: &str = "env";
const FILE: &str = "file";
const NOT_SECRET: &str = "not_secret";
const FIELD_KEYS: &[&str] = &[SHARED, SECRET, NESTED, CONFIG, OPEN, CLOSE, KEY, ENV, FILE, NOT_SECRET];

/// `#[dual_mode(spec = Name, parts = Name, version = N, crate = path, bound = "...")]`.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) spec: Option<Ident>,
    pub(crate) parts: Option<Ident>,
    pub(crate) version: Option<u32>,
    pub(crate) krate: Option<Path>,
    /// Replaces the bounds inferred from field types, as serde's `bound`.
    pub(crate) bound: Option<Vec<WherePredicate>>,
}

/// What a field is.
pub(crate) enum Kind {
    /// Goes into the spec. `not_secret` says a credential-like name is not a credential.
    Spec {
        not_secret: bool,
    },
    Shared(Shared),
    Secret(SecretFrom),
    Nested,
}

pub(crate) struct Shared {
    /// The `shared` key, where errors about the field's opening point.
    pub(crate) span: Span,
    pub(crate) source: Source,
    pub(crate) key: Option<LitStr>,
}

pub(crate) enum Source {
    /// `Resource::open` with the resource's default config.
    Default,
    /// `Resource::open` with `config = a.b`.
    Config(ConfigPath),
    /// `open = path`, `close = path`.
    Open { open: Path, close: Option<Path> },
}

/// A dotted path into the spec (or a secret): `settings.redis_url`.
pub(crate) struct ConfigPath {
    /// The `config` key.
    pub(crate) span: Span,
    pub(crate) segments: Vec<Ident>,
}

/// Where a secret comes from.
pub(crate) enum SecretFrom {
    Env(LitStr),
    File(LitStr),
}

impl SecretFrom {
    /// The name a context lends the secret under: the variable or the file path.
    pub(crate) fn name(&self) -> &LitStr {
        match self {
            Self::Env(name) | Self::File(name) => name,
        }
    }
}

/// The raw keys of one field's `#[dual_mode(...)]` attributes, each with its key's span.
#[derive(Default)]
struct FieldKeys {
    shared: Option<Span>,
    secret: Option<Span>,
    nested: Option<Span>,
    not_secret: Option<Span>,
    config: Option<ConfigPath>,
    open: Option<(Span, Path)>,
    close: Option<(Span, Path)>,
    key: Option<(Span, LitStr)>,
    env: Option<(Span, LitStr)>,
    file: Option<(Span, LitStr)>,
}

fn key_name(path: &Path) -> String {
    path.get_ident()
        .map_or_else(|| quote::ToTokens::to_token_stream(path).to_string().replace(' ', ""), Ident::to_string)
}

fn set<T>(slot: &mut Option<T>, value: T, span: Span, key: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(span, format_args!("duplicate dual_mode attribute `{key}`"));
    } else {
        *slot = Some(value);
    }
}

/// Runs `each` on every key of every `#[dual_mode(...)]` in `attrs`, reporting syntax errors.
fn for_each_key(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut each: impl FnMut(&str, Span, &syn::meta::ParseNestedMeta<'_>, &mut Errors) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(DUAL_MODE)) {
        let parsed = attr.parse_nested_meta(|meta| each(&key_name(&meta.path), meta.path.span(), &meta, &mut *errors));
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
}

pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut out = Container::default();
    for_each_key(attrs, errors, |key, span, meta, errors| {
        match key {
            SPEC => set(&mut out.spec, meta.value()?.parse()?, span, SPEC, errors),
            PARTS => set(&mut out.parts, meta.value()?.parse()?, span, PARTS, errors),
            VERSION => {
                let lit: LitInt = meta.value()?.parse()?;
                let v = lit.base10_parse::<u32>()?;
                if v == 0 {
                    errors.at(lit.span(), "`version` starts at 1");
                }
                set(&mut out.version, v, span, VERSION, errors);
            }
            CRATE => {
                let value = meta.value()?;
                if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    errors.at(lit.span(), "`crate` takes a path, not a string: `crate = my_reexport::dual_mode`");
                } else {
                    set(&mut out.krate, value.call(Path::parse_mod_style)?, span, CRATE, errors);
                }
            }
            BOUND => {
                let lit: LitStr = meta.value()?.parse()?;
                match lit.parse_with(Punctuated::<WherePredicate, Token![,]>::parse_terminated) {
                    Ok(predicates) => set(&mut out.bound, predicates.into_iter().collect(), span, BOUND, errors),
                    Err(e) => errors.at(
                        lit.span(),
                        format_args!("`bound` takes where-clause predicates: `bound = \"B: Backend + 'static\"` ({e})"),
                    ),
                }
            }
            k if FIELD_KEYS.contains(&k) => {
                skip_value(meta)?;
                errors.at(
                    span,
                    format_args!("`{k}` is a field attribute: put `#[dual_mode({k})]` on a field, not on the struct"),
                );
            }
            k => {
                skip_value(meta)?;
                errors.at(
                    span,
                    format_args!("unknown dual_mode container attribute `{k}`; expected `spec = Name`, `parts = Name`, `version = N`, `crate = path` or `bound = \"...\"`"),
                );
            }
        }
        Ok(())
    });
    out
}

fn field_keys(attrs: &[Attribute], errors: &mut Errors) -> FieldKeys {
    let mut out = FieldKeys::default();
    for_each_key(attrs, errors, |key, span, meta, errors| {
        match key {
            SHARED => set(&mut out.shared, span, span, SHARED, errors),
            SECRET => set(&mut out.secret, span, span, SECRET, errors),
            NESTED => set(&mut out.nested, span, span, NESTED, errors),
            NOT_SECRET => set(&mut out.not_secret, span, span, NOT_SECRET, errors),
            CONFIG => {
                let v = config_path(span, meta.value()?)?;
                set(&mut out.config, v, span, CONFIG, errors);
            }
            OPEN => set(&mut out.open, (span, meta.value()?.parse()?), span, OPEN, errors),
            CLOSE => set(&mut out.close, (span, meta.value()?.parse()?), span, CLOSE, errors),
            KEY => set(&mut out.key, (span, meta.value()?.parse()?), span, KEY, errors),
            ENV => set(&mut out.env, (span, meta.value()?.parse()?), span, ENV, errors),
            FILE => set(&mut out.file, (span, meta.value()?.parse()?), span, FILE, errors),
            k if CONTAINER_KEYS.contains(&k) => {
                skip_value(meta)?;
                errors.at(
                    span,
                    format_args!(
                        "`{k}` is a container attribute: put `#[dual_mode({k} = ...)]` on the struct, not on a field"
                    ),
                );
            }
            k => {
                skip_value(meta)?;
                errors.at(
                    span,
                    format_args!(
                        "unknown dual_mode field attribute `{k}`; expected `shared`, `secret`, `nested`, `config = spec.path`, `open = path`, `close = path`, `key = \"name\"`, `env = \"NAME\"`, `file = \"/path\"` or `not_secret`"
                    ),
                );
            }
        }
        Ok(())
    });
    out
}

/// Parses a field's `#[dual_mode(...)]` keys and resolves them into the field's kind. Keys
/// that do not go together are reported; the kind returned is then the closest one, so that
/// the fallback output still has the field where the user expects it.
pub(crate) fn field(attrs: &[Attribute], ty: &Type, serde_attrs: &[&Attribute], errors: &mut Errors) -> Kind {
    let a = field_keys(attrs, errors);
    let roles: Vec<(&str, Span)> = [(SHARED, a.shared), (SECRET, a.secret), (NESTED, a.nested)]
        .into_iter()
        .filter_map(|(name, span)| span.map(|s| (name, s)))
        .collect();
    if let [(first, _), (second, span), ..] = roles.as_slice() {
        errors.at(
            *span,
            format_args!("conflicting dual_mode attributes `{first}` and `{second}`: a field is one of spec, shared, secret or nested"),
        );
        // The role is unclear: the keys that need one are not checked against it.
        return Kind::Spec { not_secret: true };
    }
    let role = roles.first().map(|(name, _)| *name);
    let mut needs = |present: Option<Span>, key: &str, owner: &str, example: &str| {
        if let Some(span) = present
            && role != Some(owner)
        {
            errors.at(span, format_args!("`{key}` needs `{owner}`: write `#[dual_mode({owner}, {example})]`"));
        }
    };
    needs(a.config.as_ref().map(|c| c.span), CONFIG, SHARED, "config = spec_field.path");
    needs(a.open.as_ref().map(|c| c.0), OPEN, SHARED, "open = path::to::open_fn");
    needs(a.close.as_ref().map(|c| c.0), CLOSE, SHARED, "open = path, close = path");
    needs(a.key.as_ref().map(|c| c.0), KEY, SHARED, "key = \"name\"");
    needs(a.env.as_ref().map(|c| c.0), ENV, SECRET, "env = \"NAME\"");
    needs(a.file.as_ref().map(|c| c.0), FILE, SECRET, "file = \"/run/secrets/name\"");
    if let (Some(span), Some(role)) = (a.not_secret, role) {
        errors.at(span, format_args!("`not_secret` marks a spec field: remove it from this {role} field"));
    }
    if let (Some(role), Some(attr)) = (role, serde_attrs.first()) {
        errors.spanned(
            attr,
            format_args!("`#[serde]` has no effect on a {role} field: remove it; only spec fields are serialized"),
        );
    }
    let unmarked = !attrs.iter().any(|attr| attr.path().is_ident(DUAL_MODE));
    if unmarked && let Some(client) = live_client(ty) {
        errors.spanned(
            ty,
            format_args!(
                "`{client}` is a live client, and a field without `#[dual_mode]` goes into the job spec: mark it `#[dual_mode(shared)]`"
            ),
        );
    }
    match role {
        None => Kind::Spec { not_secret: a.not_secret.is_some() },
        Some(NESTED) => Kind::Nested,
        Some(SECRET) => Kind::Secret(secret_from(&a, errors)),
        _ => Kind::Shared(shared(&a, ty, errors)),
    }
}

fn secret_from(a: &FieldKeys, errors: &mut Errors) -> SecretFrom {
    let secret = a.secret.unwrap_or_else(Span::call_site);
    let from = match (&a.env, &a.file) {
        (Some(_), Some((file_span, _))) => {
            errors.at(*file_span, "conflicting dual_mode attributes `env` and `file`: a secret has one source");
            None
        }
        (Some((_, env)), None) => Some(SecretFrom::Env(env.clone())),
        (None, Some((_, file))) => Some(SecretFrom::File(file.clone())),
        (None, None) => {
            errors.at(
                secret,
                "a secret needs a source: write `#[dual_mode(secret, env = \"NAME\")]` or `#[dual_mode(secret, file = \"/run/secrets/name\")]`",
            );
            None
        }
    };
    match from {
        Some(from) if from.name().value().is_empty() => {
            let what = if matches!(from, SecretFrom::Env(_)) {
                "`env` names an environment variable"
            } else {
                "`file` names a file"
            };
            errors.at(from.name().span(), format_args!("{what}: it cannot be empty"));
            from
        }
        Some(from) => from,
        None => SecretFrom::Env(LitStr::new("", secret)),
    }
}

fn shared(a: &FieldKeys, ty: &Type, errors: &mut Errors) -> Shared {
    let span = a.shared.unwrap_or_else(Span::call_site);
    if let Some(inner) = option_inner(ty) {
        errors.spanned(
            ty,
            format_args!(
                "a shared field holds the client itself: write `{}` without `Option`; the generated parts type already holds it as an `Option`",
                crate::ctxt::type_name(inner)
            ),
        );
    }
    let source = match (&a.config, &a.open, &a.close) {
        (Some(_), Some((open_span, _)), _) => {
            errors.at(
                *open_span,
                "conflicting dual_mode attributes `config` and `open`: an `open = path` function receives the whole spec, so it takes no `config`",
            );
            Source::Default
        }
        (_, None, Some((close_span, _))) => {
            errors.at(
                *close_span,
                "`close` needs `open`: write `#[dual_mode(shared, open = path, close = path)]`, or remove `close` and let the `Resource` close itself",
            );
            Source::Default
        }
        (Some(path), None, None) => Source::Config(ConfigPath { span: path.span, segments: path.segments.clone() }),
        (None, Some((_, open)), close) => {
            Source::Open { open: open.clone(), close: close.as_ref().map(|c| c.1.clone()) }
        }
        (None, None, None) => Source::Default,
    };
    let key = a.key.as_ref().map(|(_, key)| key.clone());
    if let Some(key) = &key
        && key.value().is_empty()
    {
        errors.at(
            key.span(),
            "`key` cannot be empty: write `key = \"name\"`, or remove it for the only field of its type",
        );
    }
    Shared { span, source, key }
}

/// The name of a well-known live client type (`reqwest::Client`, a Redis connection, a
/// database pool, an ORM's connection), which can never be a spec field.
fn live_client(ty: &Type) -> Option<String> {
    const CLIENTS: &[&str] = &[
        "Client",
        "ClientWithMiddleware",
        "ClusterConnection",
        "ConnectionManager",
        "DatabaseConnection",
        "MultiplexedConnection",
        "Pool",
        "PgPool",
        "MySqlPool",
        "SqlitePool",
        "AnyPool",
    ];
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    // `sqlx::Pool<Postgres>` and `bb8::Pool<M>` are pools whatever their parameter.
    let plain = last.arguments.is_none() || last.ident == "Pool";
    (p.qself.is_none() && plain && CLIENTS.iter().any(|c| last.ident == c)).then(|| crate::ctxt::type_name(ty))
}

/// `T` when `ty` is written `Option<T>` (or `std::option::Option<T>`, `core::option::Option<T>`).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// Consumes `= value` after an unknown key so that parsing can go on to the next key.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let value = meta.value()?;
        while !value.is_empty() && !value.peek(Token![,]) {
            value.parse::<proc_macro2::TokenTree>()?;
        }
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

/// `a.b.c`: identifiers separated by dots.
fn config_path(span: Span, input: ParseStream<'_>) -> syn::Result<ConfigPath> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            "`config` takes a path into the spec, not a string: `config = settings.redis_url`",
        ));
    }
    let mut segments = vec![input.call(syn::ext::IdentExt::parse_any)?];
    while input.peek(Token![.]) {
        input.parse::<Token![.]>()?;
        segments.push(input.call(syn::ext::IdentExt::parse_any)?);
    }
    Ok(ConfigPath { span, segments })
}
