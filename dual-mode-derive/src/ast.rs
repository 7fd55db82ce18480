//! The derive input as the later stages see it: borrowed syn nodes (for spans) plus parsed
//! attributes.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, LitStr, Path, Type, Visibility};

use crate::attr::{self, ConfigPath, Container, Errors, FieldAttrs};

pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a Generics,
    pub(crate) container: Container,
    /// `#[serde(...)]` on the struct, carried to the spec.
    pub(crate) serde_attrs: Vec<&'a Attribute>,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
    pub(crate) kind: Kind,
    /// `#[cfg(...)]`, repeated on everything generated for the field.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// Doc comments, carried to the spec and parts fields.
    pub(crate) docs: Vec<&'a Attribute>,
    /// `#[serde(...)]`, carried to the spec field.
    pub(crate) serde_attrs: Vec<&'a Attribute>,
}

/// What a field is, once its attributes are validated.
pub(crate) enum Kind {
    Spec,
    Shared(Shared),
    Secret { env: LitStr },
    Nested,
}

pub(crate) struct Shared {
    pub(crate) source: Source,
    pub(crate) key: Option<LitStr>,
}

pub(crate) enum Source {
    /// `Resource::open` with the resource's default config.
    Default,
    /// `Resource::open` with `config = a.b`.
    Config(Span, ConfigPath),
    /// `open = path`, `close = path`.
    Open { open: Path, close: Option<Path> },
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> syn::Result<Self> {
        let named = match &node.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(f) => {
                    return Err(syn::Error::new(
                        f.span(),
                        "`DualMode` needs named fields: a tuple struct cannot say which field is which client",
                    ));
                }
                Fields::Unit => {
                    return Err(syn::Error::new(
                        node.ident.span(),
                        "`DualMode` cannot be derived for a unit struct: a service has fields (spec fields and shared clients)",
                    ));
                }
            },
            Data::Enum(e) => {
                return Err(syn::Error::new(
                    e.enum_token.span(),
                    "`DualMode` cannot be derived for an enum: a service is a struct with named fields",
                ));
            }
            Data::Union(u) => {
                return Err(syn::Error::new(
                    u.union_token.span(),
                    "`DualMode` cannot be derived for a union: a service is a struct with named fields",
                ));
            }
        };
        let container = attr::container(&node.attrs, errors);
        let fields = named
            .named
            .iter()
            .filter_map(|f| {
                let ident = f.ident.as_ref()?;
                Some(Field {
                    ident,
                    vis: &f.vis,
                    ty: &f.ty,
                    attrs: attr::field(&f.attrs, errors),
                    kind: Kind::Spec,
                    cfgs: filter(&f.attrs, "cfg"),
                    docs: filter(&f.attrs, "doc"),
                    serde_attrs: filter(&f.attrs, "serde"),
                })
            })
            .collect();
        Ok(Self {
            ident: &node.ident,
            vis: &node.vis,
            generics: &node.generics,
            container,
            serde_attrs: filter(&node.attrs, "serde"),
            fields,
        })
    }
}

fn filter<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a Attribute> {
    attrs.iter().filter(|a| a.path().is_ident(name)).collect()
}
