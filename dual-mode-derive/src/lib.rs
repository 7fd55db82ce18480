//! The `#[derive(DualMode)]` macro. An implementation detail of the
//! [`dual-mode`](https://docs.rs/dual-mode) crate: depend on that crate, whose docs describe
//! what the derive generates.
//!
//! Stages, each reading the one before: `ast.rs` (the input, each field resolved once into
//! its kind by `attr.rs`), `check.rs` (checks across fields), `expand/` (one file per
//! generated artifact), with every error collected in `ctxt.rs`.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;

/// Derives a service's job spec, its `Option`-based parts, and its guard entry points.
/// See the `dual-mode` crate docs.
#[proc_macro_derive(DualMode, attributes(dual_mode, serde))]
pub fn derive_dual_mode(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
