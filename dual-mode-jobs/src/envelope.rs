//! The envelope: the fields of one stream entry, and payload decoding.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::error::{DecodeError, EnvelopeError, ParkReason};
use super::lane::{Lane, UnknownLane};
use super::trace::TraceParent;

/// Field names of a stream entry.
pub mod field {
    /// The job id, kept by retries.
    pub const ID: &str = "id";
    /// The idempotency key.
    pub const KEY: &str = "key";
    /// The payload's type name.
    pub const TYPE: &str = "type";
    /// The payload's schema version.
    pub const VERSION: &str = "v";
    /// The attempt, from 1.
    pub const ATTEMPT: &str = "attempt";
    /// The first enqueue time (ms since the epoch).
    pub const ENQUEUED: &str = "enq";
    /// The job's maximum attempts.
    pub const MAX: &str = "max";
    /// Its unique key.
    pub const UNIQUE: &str = "uniq";
    /// Its time limit (ms).
    pub const TIMEOUT: &str = "to";
    /// Its rate key.
    pub const RATE_KEY: &str = "rk";
    /// `1`: its start is reserved in its rate limits.
    pub const RESERVED: &str = "rs";
    /// Its lane (`high` or `low`; absent for the normal lane).
    pub const LANE: &str = "lane";
    /// The producer's W3C `traceparent`.
    pub const TRACEPARENT: &str = "tp";
    /// How long the job's record is kept after it ended, in ms ([`PushOptions::keep_for`](crate::PushOptions::keep_for)).
    pub const KEEP: &str = "keep";
    /// The payload (JSON bytes).
    pub const PAYLOAD: &str = "payload";
}

/// The raw field-value pairs of a stream entry, bytes as stored.
pub type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// The value of field `name` among an entry's fields (the first, if it has several).
#[must_use]
pub fn field_of<'a>(fields: &'a RawFields, name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice())
}

/// One job as stored in the stream: metadata and the payload bytes.
///
/// `id` names the job across its attempts (a retry keeps it); `idempotency_key` is what a
/// handler keys its side effects by (it defaults to `id`, and a producer may set it to a
/// business key, e.g. `"aggregate:10000002:2025-06-01"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The job id, unique per push, kept by retries.
    pub id: String,
    /// The idempotency key; see the [module docs](super#at-least-once-delivery).
    pub idempotency_key: String,
    /// The payload's type name (for a service: its spec type's Rust name).
    pub type_name: String,
    /// The payload's schema version.
    pub version: u32,
    /// The attempt this delivery is, from 1.
    pub attempt: u32,
    /// Per-job override of the queue's maximum attempts.
    pub max_attempts: Option<u32>,
    /// The unique key the job holds while it is queued, delayed or running.
    pub unique: Option<String>,
    /// Per-job time limit of one attempt, in ms (wins over the handler's own).
    pub timeout_ms: Option<u64>,
    /// The rate key ([`PushOptions::rate_key`](super::PushOptions::rate_key)).
    pub rate_key: Option<String>,
    /// Whether this delivery's start was reserved in its rate limits' buckets when it was
    /// delayed for them: it starts without drawing again, unless its key is paused.
    pub reserved: bool,
    /// The priority lane; a retry or a re-drive keeps it.
    pub lane: Lane,
    /// The producer's trace context, continued by the job's span (see [`TraceParent`]).
    pub traceparent: Option<TraceParent>,
    /// How long the job's record is kept after it ended, in ms, whatever the queue keeps
    /// ([`PushOptions::keep_for`](super::PushOptions::keep_for)).
    pub keep_ms: Option<u64>,
    /// When the job was first enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// The payload (JSON bytes for payloads pushed by this layer).
    pub payload: Vec<u8>,
}

impl Envelope {
    /// When the job was first enqueued.
    #[must_use]
    pub fn enqueued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_at_ms)
    }

    /// The entry's fields, in stream order; text and payload borrowed, numbers written out.
    #[must_use]
    pub fn to_fields(&self) -> Vec<(&'static str, Cow<'_, [u8]>)> {
        fn number(n: u64) -> Cow<'static, [u8]> {
            Cow::Owned(n.to_string().into_bytes())
        }
        fn text(s: &str) -> Cow<'_, [u8]> {
            Cow::Borrowed(s.as_bytes())
        }
        let mut out = Vec::with_capacity(8);
        out.extend([
            (field::ID, text(&self.id)),
            (field::KEY, text(&self.idempotency_key)),
            (field::TYPE, text(&self.type_name)),
            (field::VERSION, number(self.version.into())),
            (field::ATTEMPT, number(self.attempt.into())),
            (field::ENQUEUED, number(self.enqueued_at_ms)),
        ]);
        if let Some(max) = self.max_attempts {
            out.push((field::MAX, number(max.into())));
        }
        if let Some(unique) = &self.unique {
            out.push((field::UNIQUE, text(unique)));
        }
        if let Some(timeout) = self.timeout_ms {
            out.push((field::TIMEOUT, number(timeout)));
        }
        if let Some(key) = &self.rate_key {
            out.push((field::RATE_KEY, text(key)));
        }
        if self.reserved {
            out.push((field::RESERVED, Cow::Borrowed(b"1")));
        }
        if self.lane != Lane::Normal {
            out.push((field::LANE, text(self.lane.as_str())));
        }
        if let Some(tp) = &self.traceparent {
            out.push((field::TRACEPARENT, text(tp.as_str())));
        }
        if let Some(keep) = self.keep_ms {
            out.push((field::KEEP, number(keep)));
        }
        out.push((field::PAYLOAD, Cow::Borrowed(&self.payload)));
        out
    }

    /// Parses the fields of a stream entry.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming the field that is missing or bad.
    pub fn from_fields(fields: &RawFields) -> Result<Self, EnvelopeError> {
        fn text<'a>(fields: &'a RawFields, name: &'static str) -> Result<&'a str, EnvelopeError> {
            let raw = field_of(fields, name).ok_or(EnvelopeError::Missing(name))?;
            std::str::from_utf8(raw).map_err(|_| EnvelopeError::NotUtf8(name))
        }
        fn number<T: std::str::FromStr>(fields: &RawFields, name: &'static str) -> Result<T, EnvelopeError> {
            let s = text(fields, name)?;
            s.parse().map_err(|_| EnvelopeError::NotNumber { field: name, value: s.to_owned() })
        }
        let payload = field_of(fields, field::PAYLOAD).ok_or(EnvelopeError::Missing(field::PAYLOAD))?;
        let type_name = text(fields, field::TYPE)?.to_owned();
        if type_name.is_empty() {
            return Err(EnvelopeError::Empty(field::TYPE));
        }
        let id = text(fields, field::ID)?.to_owned();
        let idempotency_key = match field_of(fields, field::KEY) {
            None => id.clone(),
            Some(_) => text(fields, field::KEY)?.to_owned(),
        };
        let max_attempts = match field_of(fields, field::MAX) {
            None => None,
            Some(_) => Some(number(fields, field::MAX)?),
        };
        let unique = match field_of(fields, field::UNIQUE) {
            None => None,
            Some(_) => Some(text(fields, field::UNIQUE)?.to_owned()),
        };
        let timeout_ms = match field_of(fields, field::TIMEOUT) {
            None => None,
            Some(_) => Some(number(fields, field::TIMEOUT)?),
        };
        let rate_key = match field_of(fields, field::RATE_KEY) {
            None => None,
            Some(_) => Some(text(fields, field::RATE_KEY)?.to_owned()),
        };
        let reserved = field_of(fields, field::RESERVED) == Some(b"1");
        let lane = match field_of(fields, field::LANE) {
            None => Lane::Normal,
            Some(_) => {
                text(fields, field::LANE)?.parse().map_err(|UnknownLane(name)| EnvelopeError::UnknownLane(name))?
            }
        };
        // Trace context is advice: one that does not parse is ignored (and the job starts a
        // trace of its own), as the W3C specification asks, rather than parking the job.
        let traceparent = field_of(fields, field::TRACEPARENT)
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .and_then(|text| TraceParent::parse(text).ok());
        let keep_ms = match field_of(fields, field::KEEP) {
            None => None,
            Some(_) => Some(number(fields, field::KEEP)?),
        };
        let attempt: u32 = number(fields, field::ATTEMPT)?;
        if attempt == 0 {
            return Err(EnvelopeError::ZeroAttempt);
        }
        Ok(Self {
            id,
            idempotency_key,
            type_name,
            version: number(fields, field::VERSION)?,
            attempt,
            max_attempts,
            unique,
            timeout_ms,
            rate_key,
            reserved,
            lane,
            traceparent,
            keep_ms,
            enqueued_at_ms: number(fields, field::ENQUEUED)?,
            payload: payload.to_vec(),
        })
    }

    /// Decodes the payload as JSON into `T`; a failure is classified into a [`ParkReason`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming `T`, the field path and the kind of bad payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode_json(&self.payload, short_type_name::<T>())
    }
}

/// The last path segment of `T`'s type name (`"EsiClientSpec"`, not `"my_crate::EsiClientSpec"`).
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Decodes JSON bytes into `T` in one pass, classifying a failure.
///
/// # Errors
/// A [`DecodeError`] whose reason is the kind of bad payload.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8], type_name: &str) -> Result<T, DecodeError> {
    let error = |reason, path: Option<String>, message: String| DecodeError {
        reason,
        type_name: type_name.to_owned(),
        path: path.filter(|p| !p.is_empty() && p != "."),
        message,
    };
    if let Err(e) = std::str::from_utf8(bytes) {
        let message = format!("invalid UTF-8 at byte {}", e.valid_up_to());
        return Err(error(ParkReason::NotUtf8, None, message));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => value,
        Err(e) => {
            let path = e.path().to_string();
            let e = e.into_inner();
            return Err(error(classify(&e, bytes), Some(path), e.to_string()));
        }
    };
    // Trailing bytes after the value are a syntax error.
    de.end().map_err(|e| error(ParkReason::NotJson, None, e.to_string()))?;
    Ok(value)
}

/// The park reason of a `serde_json` error: syntax and truncation are not JSON; a data error is
/// the shape, refined by the three `serde::de::Error` constructors whose wording serde fixes
/// (`missing_field`, `unknown_variant`, `unknown_field`).
///
/// `serde_json` reports some shape errors as syntax (a number where an enum is expected), so a
/// syntax error is checked against the bytes: valid JSON means a wrong shape. That second
/// parse happens on this failure path only.
fn classify(e: &serde_json::Error, bytes: &[u8]) -> ParkReason {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                ParkReason::WrongShape
            } else {
                ParkReason::NotJson
            }
        }
        Category::Data => {
            let message = e.to_string();
            if message.starts_with("missing field `") {
                ParkReason::MissingField
            } else if message.starts_with("unknown variant `") {
                ParkReason::UnknownVariant
            } else if message.starts_with("unknown field `") {
                ParkReason::UnknownField
            } else {
                ParkReason::WrongShape
            }
        }
    }
}

/// Milliseconds of a duration, saturating.
#[must_use]
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 before it).
#[must_use]
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random 64-bit value from std only: the per-process random keys of `RandomState` hashing
/// the time, the process id and a counter.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A fresh job id: a version 7 UUID (milliseconds since the epoch, then 74 random bits), so ids sort
/// by creation time in their text form too.
pub(crate) fn unique_id() -> String {
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&random_u64().to_le_bytes());
    random[8..].copy_from_slice(&random_u64().to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(unix_ms(SystemTime::now()), &random).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code, reason = "decoded only")]
    struct P {
        n: u32,
        kind: Kind,
    }

    #[derive(serde::Deserialize, Debug)]
    enum Kind {
        A,
    }

    fn reason(bytes: &[u8]) -> ParkReason {
        decode_json::<P>(bytes, "P").map(|_| ()).expect_err("must fail").reason
    }

    #[test]
    fn classifies_bad_payloads() {
        assert_eq!(reason(b"\xff\xfe"), ParkReason::NotUtf8);
        assert_eq!(reason(b"{not json"), ParkReason::NotJson);
        assert_eq!(reason(br#"{"n":1,"kind":"A"} trailing"#), ParkReason::NotJson);
        assert_eq!(reason(br#"{"n":"x","kind":"A"}"#), ParkReason::WrongShape);
        assert_eq!(reason(b"[1,2]"), ParkReason::WrongShape);
        assert_eq!(reason(br#"{"n":1,"kind":"Z"}"#), ParkReason::UnknownVariant);
        assert_eq!(reason(br#"{"kind":"A"}"#), ParkReason::MissingField);
        assert!(decode_json::<P>(br#"{"n":1,"kind":"A"}"#, "P").is_ok());
        let e = decode_json::<P>(br#"{"n":"x","kind":"A"}"#, "P").expect_err("bad");
        assert_eq!(e.path.as_deref(), Some("n"));
    }

    #[test]
    fn envelope_round_trips() {
        let env = Envelope {
            id: unique_id(),
            idempotency_key: "k".into(),
            type_name: "T".into(),
            version: 2,
            attempt: 3,
            max_attempts: Some(7),
            unique: Some("u".into()),
            timeout_ms: Some(1500),
            rate_key: Some("region:10000002".into()),
            reserved: true,
            lane: Lane::High,
            traceparent: Some(
                TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid"),
            ),
            keep_ms: Some(60_000),
            enqueued_at_ms: 42,
            payload: b"\xff".to_vec(),
        };
        let mut fields: RawFields =
            env.to_fields().into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v.into_owned())).collect();
        assert_eq!(Envelope::from_fields(&fields), Ok(env.clone()));
        // Entries pushed before trace context existed have no `tp`; a bad one is ignored.
        fields.retain(|(k, _)| k != b"tp");
        assert_eq!(Envelope::from_fields(&fields), Ok(Envelope { traceparent: None, ..env.clone() }));
        fields.push((b"tp".to_vec(), b"00-not-a-trace".to_vec()));
        assert_eq!(Envelope::from_fields(&fields), Ok(Envelope { traceparent: None, ..env.clone() }));
        // Lane names read as `Lane` parses them: `normal` too; an unknown one is an error.
        let lane = |name: &[u8]| {
            let mut f = fields.clone();
            f.retain(|(k, _)| k != b"lane");
            f.push((b"lane".to_vec(), name.to_vec()));
            Envelope::from_fields(&f).map(|e| e.lane)
        };
        assert_eq!(lane(b"normal"), Ok(Lane::Normal));
        assert_eq!(lane(b"low"), Ok(Lane::Low));
        assert_eq!(lane(b"urgent"), Err(EnvelopeError::UnknownLane("urgent".into())));
        let missing: RawFields = vec![(b"foo".to_vec(), b"bar".to_vec())];
        assert_eq!(Envelope::from_fields(&missing), Err(EnvelopeError::Missing("payload")));
    }

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| unique_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let earlier = unique_id();
        std::thread::sleep(Duration::from_millis(2));
        assert!(unique_id() > earlier);
    }
}
