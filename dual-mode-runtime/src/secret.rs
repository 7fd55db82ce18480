//! [`Secret`]: a value that is never serialized and never printed.

use std::fmt;
use std::str::FromStr;

use crate::error::{BoxError, EnterError, EnterErrorKind, Site};

/// A credential: no `Serialize`, a `Debug` that prints `Secret(***)`, and an explicit
/// [`expose`](Secret::expose) to read it.
///
/// In a service, a `#[dual_mode(secret, env = "NAME")]` (or `file = "/path"`) field is left
/// out of the job spec and resolved from its source when the service is entered. `Secret<T>`
/// does not wipe its memory on drop; for that, use `secrecy::SecretString` or
/// `secrecy::SecretBox<T>` fields, which the derive accepts too (feature `secrecy`).
///
/// ```
/// use dual_mode::Secret;
///
/// let token = Secret::new(String::from("hunter2"));
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Reads the secret value. Every read is visible in the code as a call to `expose`.
    pub const fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Never implemented (sealed): the bound under which a [`Secret`] would serialize, so that a
/// `Secret` inside a type deriving `Serialize` is one error that says why.
#[diagnostic::on_unimplemented(
    message = "a `Secret` is never serialized: keep it out of types that derive `Serialize`",
    label = "this field holds a `Secret<{Self}>`",
    note = "mark the field `#[serde(skip)]`, or keep the credential in a `#[dual_mode(secret, env = \"NAME\")]` field of the service"
)]
pub trait SerializeSecret: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

impl<T: SerializeSecret> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        unreachable!("`SerializeSecret` is sealed and implemented for no type")
    }
}

/// Where a secret field's value comes from when the guard resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// An environment variable of this name.
    Env(&'static str),
    /// A file at this path, the way Docker and Kubernetes mount secrets; one trailing line
    /// break is dropped.
    File(&'static str),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "environment variable `{name}`"),
            Self::File(path) => write!(f, "file `{path}`"),
        }
    }
}

impl SecretSource {
    /// Whether the source has a value now: the environment variable is set, the file exists.
    ///
    /// ```
    /// assert!(!dual_mode::SecretSource::Env("DUAL_MODE_DOC_UNSET_VARIABLE").is_available());
    /// ```
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Self::Env(name) => std::env::var_os(name).is_some(),
            Self::File(path) => std::path::Path::new(path).is_file(),
        }
    }

    /// Reads the text of the secret of the field at `site` from this source.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming `site` and the source when it has no value or cannot be read.
    pub(crate) fn read_text(self, site: Site) -> Result<String, EnterError> {
        let invalid = |cause: BoxError| EnterError::secret(site, EnterErrorKind::SecretInvalid(self, cause));
        let missing = || EnterError::secret(site, EnterErrorKind::SecretMissing(self));
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(raw) => Ok(raw),
                Err(std::env::VarError::NotPresent) => Err(missing()),
                Err(e @ std::env::VarError::NotUnicode(_)) => Err(invalid(e.into())),
            },
            Self::File(path) => match std::fs::read_to_string(path) {
                Ok(mut raw) => {
                    let kept = raw.strip_suffix('\n').map_or(raw.len(), |s| s.strip_suffix('\r').unwrap_or(s).len());
                    raw.truncate(kept);
                    Ok(raw)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
                Err(e) => Err(invalid(e.into())),
            },
        }
    }

    /// Reads the secret of the field at `site` from this source and parses it.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming `site` and the source when it has no value, cannot be read, or
    /// does not parse.
    pub(crate) fn read<T>(self, site: Site) -> Result<T, EnterError>
    where
        T: FromStr,
        T::Err: Into<BoxError>,
    {
        let raw = self.read_text(site)?;
        self.parse(site, &raw)
    }

    /// Parses the text `raw` read from this source for the field at `site`.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming `site` and the source when `raw` does not parse.
    pub(crate) fn parse<T>(self, site: Site, raw: &str) -> Result<T, EnterError>
    where
        T: FromStr,
        T::Err: Into<BoxError>,
    {
        raw.parse().map_err(|e: T::Err| EnterError::secret(site, EnterErrorKind::SecretInvalid(self, e.into())))
    }
}
