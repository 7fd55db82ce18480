//! Typed errors for entering, exiting and decoding a service.
//!
//! `Display` says what failed at its level; the cause is the error's
//! [`source`](std::error::Error::source), never repeated in the message, so a report that walks
//! the chain (anyhow, eyre, `tracing`'s error fields) prints each cause once.

use std::error::Error as StdError;
use std::fmt;

use crate::secret::SecretSource;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// One field of one service: where an open or a close happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// The service type, e.g. `EsiClient`.
    pub service: &'static str,
    /// The field, e.g. `redis`.
    pub field: &'static str,
    /// The field's type as written, e.g. `redis::aio::ConnectionManager`.
    pub resource: &'static str,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}.{}` ({})", self.service, self.field, self.resource)
    }
}

/// Why a service could not be entered.
///
/// It names the service, the field and the resource type; the cause is its
/// [`source`](StdError::source). Whatever the guard had already opened was closed before this
/// error returned; failures of those closes are kept in [`cleanup`](EnterError::cleanup).
#[derive(Debug)]
pub struct EnterError {
    site: Site,
    kind: EnterErrorKind,
    cleanup: Vec<CloseError>,
}

/// What went wrong in [`EnterError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum EnterErrorKind {
    /// The resource's `open` failed.
    Open(BoxError),
    /// A secret's source has no value.
    SecretMissing(SecretSource),
    /// A secret's source has a value that does not parse.
    SecretInvalid(SecretSource, BoxError),
}

impl EnterError {
    /// An open that failed.
    pub(crate) fn open(site: Site, cause: impl Into<BoxError>) -> Self {
        Self { site, kind: EnterErrorKind::Open(cause.into()), cleanup: Vec::new() }
    }

    /// A secret that could not be resolved.
    #[must_use]
    pub(crate) fn secret(site: Site, kind: EnterErrorKind) -> Self {
        Self { site, kind, cleanup: Vec::new() }
    }

    /// The field that failed.
    #[must_use]
    pub fn site(&self) -> Site {
        self.site
    }

    /// Whether no retry can fix this failure: a secret that is missing or does not parse, or
    /// a built-in client's config that is invalid (a malformed Redis URL). A refused or timed
    /// out connection can pass, and is not.
    #[must_use]
    pub fn is_misconfigured(&self) -> bool {
        match &self.kind {
            EnterErrorKind::SecretMissing(_) | EnterErrorKind::SecretInvalid(..) => true,
            #[cfg(feature = "redis")]
            EnterErrorKind::Open(cause) => cause
                .downcast_ref::<redis::RedisError>()
                .is_some_and(|r| r.kind() == redis::ErrorKind::InvalidClientConfig),
            #[cfg(not(feature = "redis"))]
            EnterErrorKind::Open(_) => false,
        }
    }

    /// What failed.
    #[must_use]
    pub fn kind(&self) -> &EnterErrorKind {
        &self.kind
    }

    /// Closes that failed while undoing the opens made before the failure.
    #[must_use]
    pub fn cleanup(&self) -> &[CloseError] {
        &self.cleanup
    }

    pub(crate) fn with_cleanup(mut self, cleanup: Vec<CloseError>) -> Self {
        self.cleanup = cleanup;
        self
    }
}

impl fmt::Display for EnterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let site = self.site;
        write!(f, "cannot enter `{}`: ", site.service)?;
        match &self.kind {
            EnterErrorKind::Open(_) => write!(f, "opening {site} failed")?,
            EnterErrorKind::SecretMissing(source @ SecretSource::File(_)) => {
                write!(f, "secret {site} is missing: {source} does not exist")?;
            }
            EnterErrorKind::SecretMissing(source) => write!(f, "secret {site} is missing: {source} is not set")?,
            EnterErrorKind::SecretInvalid(source, _) => write!(f, "secret {site} from {source} is invalid")?,
        }
        if !self.cleanup.is_empty() {
            write!(f, " (and {} close(s) failed while undoing the opens)", self.cleanup.len())?;
        }
        Ok(())
    }
}

impl StdError for EnterError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            EnterErrorKind::Open(cause) | EnterErrorKind::SecretInvalid(_, cause) => Some(&**cause),
            EnterErrorKind::SecretMissing(_) => None,
        }
    }
}

/// One resource whose close failed; the cause is its `source()`.
#[derive(Debug, thiserror::Error)]
#[error("closing {site} failed")]
pub struct CloseError {
    /// The field whose resource it was.
    pub site: Site,
    /// Why the close failed.
    #[source]
    pub cause: BoxError,
}

/// Closes that failed on exit. Every resource got its close; these are the ones that failed.
///
/// Its message names each failed close with its cause (there may be several, and a chain has
/// room for one), so it has no `source()`.
#[derive(Debug)]
pub struct ExitError {
    service: &'static str,
    errors: Vec<CloseError>,
    interrupted: bool,
}

impl ExitError {
    pub(crate) fn new(service: &'static str, errors: Vec<CloseError>) -> Self {
        Self { service, errors, interrupted: false }
    }

    /// The close task was cancelled by its runtime shutting down: some closes may not have run.
    pub(crate) fn interrupted(service: &'static str) -> Self {
        Self { service, errors: Vec::new(), interrupted: true }
    }

    /// Whether the closes were cut short by the runtime shutting down.
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        self.interrupted
    }

    pub(crate) fn into_errors(self) -> Vec<CloseError> {
        self.errors
    }

    /// The service that was exited.
    #[must_use]
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Every close that failed, in the order the closes ran.
    #[must_use]
    pub fn errors(&self) -> &[CloseError] {
        &self.errors
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.interrupted {
            return write!(f, "exiting `{}`: the runtime shut down during the closes", self.service);
        }
        write!(f, "exiting `{}`: {} close(s) failed", self.service, self.errors.len())?;
        for (i, e) in self.errors.iter().enumerate() {
            write!(f, "{} {e}: {}", if i == 0 { ":" } else { ";" }, e.cause)?;
        }
        Ok(())
    }
}

impl StdError for ExitError {}

/// A job spec payload that does not decode: malformed, or written by another version.
///
/// It names the spec type and the path of the offending field (`settings.regions[2]`; empty
/// when the payload as a whole is wrong).
#[derive(Debug)]
pub struct SpecError {
    spec: &'static str,
    path: String,
    cause: serde_json::Error,
}

impl SpecError {
    pub(crate) fn new(spec: &'static str, path: String, cause: serde_json::Error) -> Self {
        Self { spec, path, cause }
    }

    /// The spec type, e.g. `EsiClientSpec`.
    #[must_use]
    pub fn spec(&self) -> &'static str {
        self.spec
    }

    /// The path of the field that failed, `.` separated; empty for the payload as a whole.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The decoder's own message.
    #[must_use]
    pub fn cause(&self) -> &serde_json::Error {
        &self.cause
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "invalid `{}` payload", self.spec)
        } else {
            write!(f, "invalid `{}` payload at field `{}`", self.spec, self.path)
        }
    }
}

impl StdError for SpecError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.cause)
    }
}

/// Any dual-mode failure, for bodies of [`run`](crate::run) that use `?` on one error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Entering failed.
    #[error(transparent)]
    Enter(#[from] EnterError),
    /// Exiting failed.
    #[error(transparent)]
    Exit(#[from] ExitError),
    /// A spec did not decode.
    #[error(transparent)]
    Spec(#[from] SpecError),
}
