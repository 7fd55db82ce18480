//! Parsing of `#[dual_mode(...)]` attributes into plain data, every key with its span.

use proc_macro2::Span;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token};

/// The attribute's name.
pub(crate) const DUAL_MODE: &str = "dual_mode";

// Container keys.
const SPEC: &str = "spec";
const PARTS: &str = "parts";
const VERSION: &str = "version";
const CONTAINER_KEYS: &[&str] = &[SPEC, PARTS, VERSION];

// Field keys.
const SHARED: &str = "shared";
const SECRET: &str = "secret";
const NESTED: &str = "nested";
const CONFIG: &str = "config";
const OPEN: &str = "open";
const CLOSE: &str = "close";
const KEY: &str = "key";
const ENV: &str = "env";
const FIELD_KEYS: &[&str] = &[SHARED, SECRET, NESTED, CONFIG, OPEN, CLOSE, KEY, ENV];

/// Collects every error so the user sees all of them at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// An error spanning all of `tokens` (first to last token, also on stable).
    pub(crate) fn spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// `#[dual_mode(spec = Name, parts = Name, version = N)]` on the struct.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) spec: Option<Ident>,
    pub(crate) parts: Option<Ident>,
    pub(crate) version: Option<u32>,
}

/// A dotted path into the spec (or a secret): `settings.redis_url`.
pub(crate) struct ConfigPath {
    pub(crate) segments: Vec<Ident>,
}

/// The raw keys of one field's `#[dual_mode(...)]` attributes.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) shared: Option<Span>,
    pub(crate) secret: Option<Span>,
    pub(crate) nested: Option<Span>,
    pub(crate) config: Option<(Span, ConfigPath)>,
    pub(crate) open: Option<(Span, Path)>,
    pub(crate) close: Option<(Span, Path)>,
    pub(crate) key: Option<(Span, LitStr)>,
    pub(crate) env: Option<(Span, LitStr)>,
}

fn is_ours(attr: &Attribute) -> bool {
    attr.path().is_ident(DUAL_MODE)
}

fn key_name(path: &Path) -> String {
    path.get_ident()
        .map_or_else(|| quote::ToTokens::to_token_stream(path).to_string().replace(' ', ""), Ident::to_string)
}

fn duplicate(errors: &mut Errors, span: Span, key: &str) {
    errors.at(span, format_args!("duplicate dual_mode attribute `{key}`"));
}

fn set<T>(slot: &mut Option<T>, value: T, span: Span, key: &str, errors: &mut Errors) {
    if slot.is_some() {
        duplicate(errors, span, key);
    } else {
        *slot = Some(value);
    }
}

pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut out = Container::default();
    for attr in attrs.iter().filter(|a| is_ours(a)) {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = key_name(&meta.path);
            let span = meta.path.span();
            match key.as_str() {
                SPEC => {
                    let v: Ident = meta.value()?.parse()?;
                    set(&mut out.spec, v, span, SPEC, errors);
                }
                PARTS => {
                    let v: Ident = meta.value()?.parse()?;
                    set(&mut out.parts, v, span, PARTS, errors);
                }
                VERSION => {
                    let lit: LitInt = meta.value()?.parse()?;
                    let v = lit.base10_parse::<u32>()?;
                    if v == 0 {
                        errors.at(lit.span(), "`version` starts at 1");
                    }
                    set(&mut out.version, v, span, VERSION, errors);
                }
                k if FIELD_KEYS.contains(&k) => {
                    skip_value(&meta)?;
                    errors.at(span, format_args!("`{k}` is a field attribute: put `#[dual_mode({k})]` on a field, not on the struct"));
                }
                k => {
                    skip_value(&meta)?;
                    errors.at(
                        span,
                        format_args!("unknown dual_mode container attribute `{k}`; expected `spec = Name`, `parts = Name` or `version = N`"),
                    );
                }
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
}

pub(crate) fn field(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| is_ours(a)) {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = key_name(&meta.path);
            let span = meta.path.span();
            match key.as_str() {
                SHARED => set(&mut out.shared, span, span, SHARED, errors),
                SECRET => set(&mut out.secret, span, span, SECRET, errors),
                NESTED => set(&mut out.nested, span, span, NESTED, errors),
                CONFIG => {
                    let v = config_path(meta.value()?)?;
                    set(&mut out.config, (span, v), span, CONFIG, errors);
                }
                OPEN => {
                    let v: Path = meta.value()?.parse()?;
                    set(&mut out.open, (span, v), span, OPEN, errors);
                }
                CLOSE => {
                    let v: Path = meta.value()?.parse()?;
                    set(&mut out.close, (span, v), span, CLOSE, errors);
                }
                KEY => {
                    let v: LitStr = meta.value()?.parse()?;
                    set(&mut out.key, (span, v), span, KEY, errors);
                }
                ENV => {
                    let v: LitStr = meta.value()?.parse()?;
                    set(&mut out.env, (span, v), span, ENV, errors);
                }
                k if CONTAINER_KEYS.contains(&k) => {
                    skip_value(&meta)?;
                    errors.at(span, format_args!("`{k}` is a container attribute: put `#[dual_mode({k} = ...)]` on the struct, not on a field"));
                }
                k => {
                    skip_value(&meta)?;
                    errors.at(
                        span,
                        format_args!(
                            "unknown dual_mode field attribute `{k}`; expected `shared`, `secret`, `nested`, `config = spec.path`, `open = path`, `close = path`, `key = \"name\"` or `env = \"NAME\"`"
                        ),
                    );
                }
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
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
fn config_path(input: ParseStream<'_>) -> syn::Result<ConfigPath> {
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
    Ok(ConfigPath { segments })
}
