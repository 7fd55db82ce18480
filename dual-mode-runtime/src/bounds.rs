//! What `#[derive(DualMode)]` requires of each kind of field, one trait per requirement.
//! Every trait here has a blanket impl (users never implement them), so that a field that does
//! not fit its role is one compile error that says what to change.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::pin::Pin;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, EnterError, Site};
use crate::resource::Resource;
use crate::scope::Scope;
use crate::secret::{Secret, SecretSource};

/// A type that can go into a job spec: `Serialize + Deserialize + Clone + Debug`, and
/// `Send + Sync + 'static`.
///
/// Every field without a `#[dual_mode]` attribute is a spec field. Implemented for every such
/// type: a client left without `#[dual_mode(shared)]` is then one error, "`reqwest::Client`
/// cannot go into the job spec".
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot go into the job spec: a field without `#[dual_mode]` is a spec field, and a spec field is `Serialize + Deserialize + Clone + Debug`",
    label = "a spec field, because it has no `#[dual_mode]` attribute",
    note = "a live client needs `#[dual_mode(shared)]` and a credential `#[dual_mode(secret, env = \"NAME\")]`; a config type needs `#[derive(Clone, Debug, Serialize, Deserialize)]`"
)]
pub trait SpecField: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static> SpecField for T {}

/// Names a spec field's type in generated code, so that one that is not a [`SpecField`] is one
/// error on the field.
#[doc(hidden)]
pub struct IsSpecField<T: SpecField>(PhantomData<T>);

/// Names a nested field's type in generated code, so that one that is not a service is
/// reported on the field first.
#[doc(hidden)]
pub struct IsService<T: crate::DualMode>(PhantomData<T>);

/// The future of one open. Boxed: it is built only when a client is actually opened (which
/// allocates anyway), and the enter future, which would otherwise hold every field's open
/// inline, stays small and cheap to move.
type Opening<'s, T> = Pin<Box<dyn Future<Output = Result<T, EnterError>> + Send + 's>>;

/// A type a `#[dual_mode(shared)]` field can hold and open itself: a [`Resource`] handle that
/// clones.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `dual_mode::Resource` that clones, so a shared field of this type cannot be opened",
    label = "no `Resource` impl for this type (or no `Clone`)",
    note = "add `#[dual_mode(shared, open = path)]` or implement `dual_mode::Resource`"
)]
pub trait SharedField: Resource + Clone {
    /// Opens the field at `site` into `scope` with `config`, unless the scope has it.
    #[doc(hidden)]
    fn open_in<'s>(
        scope: &'s mut Scope,
        site: Site,
        key: Option<&'static str>,
        config: &'s Self::Config,
    ) -> Opening<'s, Self> {
        Box::pin(scope.open::<Self>(site, key, config))
    }
}

#[diagnostic::do_not_recommend]
impl<T: Resource + Clone> SharedField for T {}

/// A resource whose config has a `Default`, so that `#[dual_mode(shared)]` needs no
/// `config = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` needs a config: write `#[dual_mode(shared, config = spec_field)]`",
    label = "no `config = ...` here, and the config of `{Self}` has no default",
    note = "name a spec or secret field that holds the config, such as a Redis or database URL"
)]
pub trait DefaultConfig: SharedField {
    /// Opens the field at `site` into `scope` with the default config, unless the scope has it.
    #[doc(hidden)]
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self>;
}

#[diagnostic::do_not_recommend]
impl<R: SharedField<Config: Default + Sized + Send>> DefaultConfig for R {
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self> {
        Box::pin(async move { scope.open::<Self>(site, key, &R::Config::default()).await })
    }
}

// The traits a shared field goes through when its type is named like a client that dual-mode
// has built in (`Client`, `ConnectionManager`, `MultiplexedConnection`, `Pool`): `SharedField`
// and `DefaultConfig` under other names, whose errors say that another major version of that
// client's crate is the likely cause and which versions are built in. Written out (not by a
// macro), as rustc quotes them in its notes.

/// A shared field whose type is named `Client`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `dual_mode::Resource`: if it is reqwest's `Client`, another major version of reqwest than the ones dual-mode has built in is the likely cause",
    label = "no `Resource` impl for this `Client`",
    note = "built in: reqwest 0.13's `Client` (feature `reqwest`, on by default) and reqwest 0.12's (feature `reqwest-0-12`): depend on `reqwest = \"0.13\"`, or on `reqwest = \"0.12\"` with `dual-mode = {{ version = \"0.1\", features = [\"reqwest-0-12\"] }}`, or write `dual_mode::reqwest::Client`",
    note = "for a client of another crate: add `#[dual_mode(shared, open = path)]` or implement `dual_mode::Resource`"
)]
#[doc(hidden)]
pub trait SharedClient: Sized + Send + Sync + 'static {
    /// Named before anything else of the field, so that a type that is not a resource is
    /// reported with this trait's message.
    const CHECKED: () = ();
}

#[diagnostic::do_not_recommend]
impl<T: SharedField> SharedClient for T {}

/// [`SharedClient`] with no `config = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` needs a config: write `#[dual_mode(shared, config = spec_field)]`",
    label = "no `config = ...` here, and the config of `{Self}` has no default",
    note = "name a spec or secret field that holds the config"
)]
#[doc(hidden)]
pub trait DefaultClientConfig: SharedClient {
    /// [`DefaultConfig::open_default_in`].
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self>;
}

#[diagnostic::do_not_recommend]
impl<T: DefaultConfig> DefaultClientConfig for T {
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self> {
        <T as DefaultConfig>::open_default_in(scope, site, key)
    }
}

/// A shared field whose type is named `ConnectionManager` or `MultiplexedConnection`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `dual_mode::Resource`: if it is a redis connection, another major version of redis than the one dual-mode has built in is the likely cause",
    label = "no `Resource` impl for this connection",
    note = "built in: redis 1.x's `aio::ConnectionManager`, `aio::MultiplexedConnection` and `cluster_async::ClusterConnection` (feature `redis`, on by default): depend on `redis = {{ version = \"1\", features = [\"tokio-comp\", \"connection-manager\"] }}`, or write `dual_mode::redis::aio::ConnectionManager`",
    note = "for a connection of another crate: add `#[dual_mode(shared, open = path)]` or implement `dual_mode::Resource`"
)]
#[doc(hidden)]
pub trait SharedRedisConnection: Sized + Send + Sync + 'static {
    /// Named before anything else of the field, so that a type that is not a resource is
    /// reported with this trait's message.
    const CHECKED: () = ();
}

#[diagnostic::do_not_recommend]
impl<T: SharedField> SharedRedisConnection for T {}

/// [`SharedRedisConnection`] with no `config = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` needs a config: write `#[dual_mode(shared, config = spec_field)]`",
    label = "no `config = ...` here, and the config of `{Self}` has no default",
    note = "name a spec or secret field that holds the config, such as a Redis URL"
)]
#[doc(hidden)]
pub trait DefaultRedisConfig: SharedRedisConnection {
    /// [`DefaultConfig::open_default_in`].
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self>;
}

#[diagnostic::do_not_recommend]
impl<T: DefaultConfig> DefaultRedisConfig for T {
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self> {
        <T as DefaultConfig>::open_default_in(scope, site, key)
    }
}

/// A shared field whose type is named `Pool`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `dual_mode::Resource`: if it is a database pool, a crate or a major version that dual-mode has no built-in `Pool` for is the likely cause",
    label = "no `Resource` impl for this `Pool`",
    note = "built in: no `Pool` type in this version of dual-mode",
    note = "add `#[dual_mode(shared, open = path)]` with an `async fn(&Spec) -> Result<Pool, E>`, or implement `dual_mode::Resource`"
)]
#[doc(hidden)]
pub trait SharedPool: Sized + Send + Sync + 'static {
    /// Named before anything else of the field, so that a type that is not a resource is
    /// reported with this trait's message.
    const CHECKED: () = ();
}

#[diagnostic::do_not_recommend]
impl<T: SharedField> SharedPool for T {}

/// [`SharedPool`] with no `config = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` needs a config: write `#[dual_mode(shared, config = spec_field)]`",
    label = "no `config = ...` here, and the config of `{Self}` has no default",
    note = "name a spec or secret field that holds the config, such as a database URL"
)]
#[doc(hidden)]
pub trait DefaultPoolConfig: SharedPool {
    /// [`DefaultConfig::open_default_in`].
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self>;
}

#[diagnostic::do_not_recommend]
impl<T: DefaultConfig> DefaultPoolConfig for T {
    fn open_default_in<'s>(scope: &'s mut Scope, site: Site, key: Option<&'static str>) -> Opening<'s, Self> {
        <T as DefaultConfig>::open_default_in(scope, site, key)
    }
}

/// The type of a `#[dual_mode(secret)]` field: [`Secret<T>`], and with the `secrecy` feature
/// `secrecy::SecretString` and `secrecy::SecretBox<T>`, whose memory is zeroized on drop.
#[diagnostic::on_unimplemented(
    message = "`#[dual_mode(secret)]` needs a `dual_mode::Secret<T>` (or `secrecy::SecretString`, `secrecy::SecretBox<T>`) field, not `{Self}`",
    label = "not a secret type",
    note = "wrap the value: `token: dual_mode::Secret<String>`"
)]
pub trait SecretField: Sized + Send + Sync + 'static {
    /// What the secret holds, as `config = secret_field` reads it.
    #[doc(hidden)]
    type Exposed: ?Sized;

    /// Resolves the field at `site` from `source`.
    #[doc(hidden)]
    fn read(site: Site, source: SecretSource) -> Result<Self, EnterError>;

    /// The secret value.
    #[doc(hidden)]
    fn exposed(&self) -> &Self::Exposed;
}

impl<T: SecretValue> SecretField for Secret<T> {
    type Exposed = T;

    fn read(site: Site, source: SecretSource) -> Result<Self, EnterError> {
        source.read(site).map(Secret::new)
    }

    fn exposed(&self) -> &T {
        self.expose()
    }
}

/// `secrecy::SecretString`: zeroized on drop.
#[cfg(feature = "secrecy")]
impl SecretField for secrecy::SecretString {
    type Exposed = str;

    fn read(site: Site, source: SecretSource) -> Result<Self, EnterError> {
        // Copied into an exact allocation, and the text read wiped: no copy of the secret is
        // left in freed memory.
        let raw = secrecy::zeroize::Zeroizing::new(source.read_text(site)?);
        Ok(Self::from(raw.as_str()))
    }

    fn exposed(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(self)
    }
}

/// `secrecy::SecretBox<T>` of a value parsed from text: zeroized on drop.
#[cfg(feature = "secrecy")]
impl<T: SecretValue + secrecy::zeroize::Zeroize> SecretField for secrecy::SecretBox<T> {
    type Exposed = T;

    fn read(site: Site, source: SecretSource) -> Result<Self, EnterError> {
        let raw = secrecy::zeroize::Zeroizing::new(source.read_text(site)?);
        source.parse(site, &raw).map(|value| Self::new(Box::new(value)))
    }

    fn exposed(&self) -> &T {
        secrecy::ExposeSecret::expose_secret(self)
    }
}

/// What a [`Secret<T>`] read from a text source holds: a `T` that parses from a string.
#[diagnostic::on_unimplemented(
    message = "a secret is read as text and parsed, and `{Self}` does not implement `FromStr`",
    label = "no `FromStr` impl for `{Self}`",
    note = "use `Secret<String>` and convert it yourself, or implement `std::str::FromStr` for `{Self}`"
)]
pub trait SecretValue: FromStr<Err: Into<BoxError>> + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: FromStr<Err: Into<BoxError>> + Send + Sync + 'static> SecretValue for T {}

/// An app state that provides a client (or secret) of type `T`, through axum's `FromRef`:
/// what `from_state` needs for each shared and secret field.
#[cfg(feature = "axum")]
#[diagnostic::on_unimplemented(
    message = "the app state `{Self}` has no `{T}` for this service",
    label = "no `{T}` in this state",
    note = "implement `axum::extract::FromRef<{Self}>` for `{T}`, or derive `FromRef` on the state"
)]
pub trait Provides<T> {
    /// The state's `T`.
    fn provide(state: &Self) -> T;
}

#[cfg(feature = "axum")]
#[diagnostic::do_not_recommend]
impl<S, T: axum_core::extract::FromRef<S>> Provides<T> for S {
    fn provide(state: &Self) -> T {
        T::from_ref(state)
    }
}

/// Never implemented: the bound `from_state` carries when two fields of a service have one
/// type, because app state provides one value per type.
#[cfg(feature = "axum")]
#[diagnostic::on_unimplemented(
    message = "`from_state` cannot fill this service: several of its fields have type `{T}`",
    label = "app state provides one `{T}`, and fields of one type would all get it",
    note = "give each field its own type (a newtype), or build the service with its parts and `enter`"
)]
pub trait OneFieldPerType<T> {}
