//! The derive input as the later stages see it: borrowed syn nodes (for spans), each field
//! with its final kind.

use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, Type, Visibility};

use crate::attr::{self, Container, Kind};
use crate::ctxt::Errors;

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
    pub(crate) kind: Kind,
    /// `#[cfg(...)]`, repeated on everything generated for the field.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// Doc comments, carried to the spec and parts fields.
    pub(crate) docs: Vec<&'a Attribute>,
    /// `#[serde(...)]`, carried to the spec field.
    pub(crate) serde_attrs: Vec<&'a Attribute>,
}

impl<'a> Input<'a> {
    /// The input, or the one error that leaves nothing to generate (not a struct with named
    /// fields).
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
                let serde_attrs = filter(&f.attrs, "serde");
                Some(Field {
                    ident,
                    vis: &f.vis,
                    ty: &f.ty,
                    kind: attr::field(&f.attrs, &f.ty, &serde_attrs, errors),
                    cfgs: filter(&f.attrs, "cfg"),
                    docs: filter(&f.attrs, "doc"),
                    serde_attrs,
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

    /// The field named `name`.
    pub(crate) fn field(&self, name: &Ident) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.ident == name)
    }
}

fn filter<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a Attribute> {
    attrs.iter().filter(|a| a.path().is_ident(name)).collect()
}
