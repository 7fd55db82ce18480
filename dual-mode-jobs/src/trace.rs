//! Trace context across the queue: the producer's W3C `traceparent` travels in the envelope,
//! and the job's span continues it.

use std::fmt;
use std::str::FromStr;

/// A W3C Trace Context `traceparent` (`00-<trace id>-<parent id>-<flags>`), validated.
///
/// Set it on a push with [`PushOptions::traceparent`](super::PushOptions::traceparent) (taken
/// from the incoming request's `traceparent` header, say); with the `otel` feature a push
/// without one takes the current span's OpenTelemetry context. The job's `job` span records
/// it as its `traceparent` field and, with `otel`, has it as its parent, so the request, the
/// push and the run (on any machine) are one trace. A handler reads it with
/// [`JobInfo::traceparent`](super::JobInfo::traceparent).
///
/// ```
/// use dual_mode_jobs::TraceParent;
///
/// let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
/// assert!(tp.sampled());
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// # Ok::<(), dual_mode_jobs::TraceParentError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceParent(String);

/// Why a `traceparent` was refused: the value and the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent {value:?}: {problem}")]
pub struct TraceParentError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The length of a version 00 `traceparent`.
const LEN: usize = 55;

impl TraceParent {
    /// Parses and validates a `traceparent` header value. Version `00` must be exactly four
    /// fields; a later version may carry more after them (only the first four are kept), as
    /// the W3C specification asks of a version 00 reader.
    ///
    /// # Errors
    /// A [`TraceParentError`] naming the part that is wrong: the length, a field's hex, a
    /// version `ff`, an all-zero trace id or parent id.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let fail = |problem| TraceParentError { value: value.to_owned(), problem };
        let b = value.as_bytes();
        if b.len() < LEN || (b.len() > LEN && b[LEN] != b'-') {
            return Err(fail("expected `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`"));
        }
        let hex = |range: std::ops::Range<usize>| b[range].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let zero = |range: std::ops::Range<usize>| b[range].iter().all(|&c| c == b'0');
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(fail("the fields are not separated by `-` at their places"));
        }
        if !hex(0..2) || &b[0..2] == b"ff" {
            return Err(fail("the version is not two lowercase hex digits other than `ff`"));
        }
        if &b[0..2] == b"00" && b.len() != LEN {
            return Err(fail("version 00 has exactly four fields"));
        }
        if !hex(3..35) || zero(3..35) {
            return Err(fail("the trace id is not 32 lowercase hex digits, not all zero"));
        }
        if !hex(36..52) || zero(36..52) {
            return Err(fail("the parent id is not 16 lowercase hex digits, not all zero"));
        }
        if !hex(53..55) {
            return Err(fail("the flags are not two lowercase hex digits"));
        }
        Ok(Self(value[..LEN].to_owned()))
    }

    /// The header value.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id: 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The parent id (the producer's span id): 16 lowercase hex digits.
    #[must_use]
    pub fn parent_id(&self) -> &str {
        &self.0[36..52]
    }

    /// The trace flags.
    #[must_use]
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.0[53..55], 16).unwrap_or(0)
    }

    /// Whether the producer sampled the trace (flag bit 0).
    #[must_use]
    pub fn sampled(&self) -> bool {
        self.flags() & 1 == 1
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({})", self.0)
    }
}

/// The trace context a push carries when its options name none: with the `otel` feature, the
/// current span's OpenTelemetry context, if it has a valid one; else none.
pub(crate) fn current() -> Option<TraceParent> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| TraceParent(format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())))
    }
    #[cfg(not(feature = "otel"))]
    None
}

/// Makes the job's span continue `tp`: records it as the span's `traceparent` field and, with
/// the `otel` feature, sets it as the span's remote parent.
pub(crate) fn continue_in(span: &tracing::Span, tp: &TraceParent) {
    span.record("traceparent", tp.as_str());
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(tp.trace_id()), SpanId::from_hex(tp.parent_id())) else {
            return;
        };
        let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(tp.flags()), true, TraceState::default());
        // Refused only when no OpenTelemetry layer sees the span: nothing to continue then.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_specification_allows_and_names_what_is_wrong() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(ok).expect("valid");
        assert_eq!((tp.as_str(), tp.flags(), tp.sampled()), (ok, 1, true));
        // A later version may append fields; only the first four are kept.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert_eq!(TraceParent::parse(later).expect("valid").as_str(), &later[..55]);
        for (bad, problem) in [
            ("", "expected"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "exactly four"),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace id"),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "trace id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "parent id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", "flags"),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "separated"),
        ] {
            let e = TraceParent::parse(bad).expect_err(bad);
            assert!(e.problem.contains(problem), "{bad}: {e}");
            assert_eq!(e.value, bad);
        }
    }
}
