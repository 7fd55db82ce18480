//! The [`Resource`] trait: how a shared client is opened and closed.

use std::future::Future;

/// A live client that a service holds and that dual-mode can open and close on its own.
///
/// A resource is a handle that is cheap to clone (an `Arc` inside): the guard keeps the
/// handle it opened and gives the service a clone, so that nested services share one
/// temporary client and the guard closes exactly the handles it opened.
///
/// # Example
///
/// ```
/// use dual_mode::Resource;
///
/// /// A pool whose close is explicit.
/// #[derive(Clone)]
/// struct Pool { /* ... */ }
///
/// impl Resource for Pool {
///     type Config = str;
///     type Error = std::io::Error;
///
///     async fn open(url: &str) -> Result<Self, Self::Error> {
///         let _ = url;
///         Ok(Pool {})
///     }
///
///     async fn close(self) -> Result<(), Self::Error> {
///         // Drain and close the pool's connections here.
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `dual_mode::Resource`, so a shared field of this type cannot be opened",
    label = "no `Resource` impl for this type",
    note = "add `#[dual_mode(shared, open = path)]` or implement `dual_mode::Resource`"
)]
pub trait Resource: Sized + Send + Sync + 'static {
    /// What [`open`](Resource::open) needs: a URL, a settings struct. When the field's
    /// `#[dual_mode(shared)]` has no `config = ...`, this type's `Default` is used.
    type Config: ?Sized + Sync;
    /// Why opening or closing failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new client.
    fn open(config: &Self::Config) -> impl Future<Output = Result<Self, Self::Error>> + Send;

    /// Which temporary clients of this type one enter may share. Within one enter (nested
    /// services included), a field that needs a client of a type the guard already opened gets
    /// a clone of it when both configs have the same share key, and its own client otherwise.
    /// The default, `0` for every config, shares one client per type (and `key`); the built-in
    /// resources hash their config, so two Redis URLs (or databases) get two connections.
    fn share_key(config: &Self::Config) -> u64 {
        let _ = config;
        0
    }

    /// Closes a client that [`open`](Resource::open) returned. The default drops it.
    fn close(self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        drop(self);
        async { Ok(()) }
    }
}
