//! How values live in the tables: an entry's fields as one `bytea`, a record's hash as
//! `jsonb`, entry ids as two numbers.

use dual_mode_jobs::{QueueError, RawFields, ReplyError};

/// An entry's fields as bytes: per field its name's and its value's length (4 bytes, big
/// endian) each followed by the bytes.
pub(crate) fn encode_fields<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        for part in [k, v] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// [`encode_fields`] of raw fields.
pub(crate) fn encode_raw(fields: &RawFields) -> Vec<u8> {
    encode_fields(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}

/// [`encode_fields`] of an envelope.
pub(crate) fn encode_envelope(env: &dual_mode_jobs::Envelope) -> Vec<u8> {
    let fields = env.to_fields();
    encode_fields(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_ref())))
}

/// The fields [`encode_fields`] wrote.
pub(crate) fn decode_fields(bytes: &[u8], op: &'static str) -> Result<RawFields, QueueError> {
    let bad = || QueueError::protocol(op, ReplyError::WrongType { what: "stored entry fields", expected: "fields" });
    let mut out = Vec::new();
    let mut rest = bytes;
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if tail.len() < len {
            return None;
        }
        let (part, tail) = tail.split_at(len);
        *rest = tail;
        Some(part.to_vec())
    };
    while !rest.is_empty() {
        let k = take(&mut rest).ok_or_else(bad)?;
        let v = take(&mut rest).ok_or_else(bad)?;
        out.push((k, v));
    }
    Ok(out)
}

/// A record's items as a JSON object: text as a string, other bytes as an array of numbers.
pub(crate) fn hash_json<'a>(items: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = items
        .into_iter()
        .map(|(k, v)| {
            let value = match std::str::from_utf8(v) {
                Ok(text) => serde_json::Value::String(text.to_owned()),
                Err(_) => serde_json::Value::Array(v.iter().map(|b| serde_json::Value::from(*b)).collect()),
            };
            (k.to_owned(), value)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A record's hash from its JSON text, as [`hash_json`] wrote it.
pub(crate) fn hash_of(text: &str, op: &'static str) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
    let bad = || QueueError::protocol(op, ReplyError::WrongType { what: "stored job record", expected: "a record" });
    let serde_json::Value::Object(map) = serde_json::from_str(text).map_err(|_| bad())? else { return Err(bad()) };
    map.into_iter()
        .map(|(k, v)| {
            let bytes = match v {
                serde_json::Value::String(s) => s.into_bytes(),
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            Ok((k, bytes))
        })
        .collect()
}

/// An entry id, `<ms>-<seq>`, as two numbers; a typed error of `op` for anything else. An id
/// of `<ms>` alone is `<ms>-0`, as Redis reads one.
pub(crate) fn parse_id(id: &str, op: &'static str) -> Result<(i64, i64), QueueError> {
    parse_id_with(id, 0).ok_or_else(|| bad_id(op, id))
}

/// [`parse_id`] with `missing_seq` for an id of `<ms>` alone.
pub(crate) fn parse_id_with(id: &str, missing_seq: i64) -> Option<(i64, i64)> {
    fn number(s: &str) -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    match id.split_once('-') {
        Some((ms, seq)) => Some((number(ms)?, number(seq)?)),
        None => Some((number(id)?, missing_seq)),
    }
}

/// The error for text that is not an entry id where one was expected.
pub(crate) fn bad_id(op: &'static str, id: &str) -> QueueError {
    QueueError::Config(format!("{op}: {id:?} is not a stream entry id (`<ms>-<seq>`)"))
}

/// An entry id from its two numbers.
pub(crate) fn id_text(ms: i64, seq: i64) -> String {
    format!("{ms}-{seq}")
}

/// One end of a range as `XRANGE` takes it (`-`, `+`, `(<id>`, `<id>`) as the lowest or
/// highest id it includes; `None` when nothing is in range on that side.
pub(crate) fn range_end(s: &str, low: bool, op: &'static str) -> Result<Option<(i64, i64)>, QueueError> {
    const MAX: (i64, i64) = (i64::MAX, i64::MAX);
    match s {
        "-" => return Ok(Some((0, 0))),
        "+" => return Ok(Some(MAX)),
        _ => {}
    }
    let (exclusive, id) = match s.strip_prefix('(') {
        Some(id) => (true, id),
        None => (false, s),
    };
    let (ms, seq) = parse_id_with(id, if low { 0 } else { i64::MAX }).ok_or_else(|| bad_id(op, s))?;
    if !exclusive {
        return Ok(Some((ms, seq)));
    }
    Ok(if low {
        match seq.checked_add(1) {
            Some(seq) => Some((ms, seq)),
            None => ms.checked_add(1).map(|ms| (ms, 0)),
        }
    } else {
        match seq.checked_sub(1) {
            Some(seq) if seq >= 0 => Some((ms, seq)),
            _ => ms.checked_sub(1).filter(|ms| *ms >= 0).map(|ms| (ms, i64::MAX)),
        }
    })
}

/// The lane's number in the tables.
pub(crate) fn lane_no(lane: dual_mode_jobs::Lane) -> i16 {
    i16::try_from(lane.index()).unwrap_or(1)
}

/// The lane an entry's `lane` field names (the normal lane for any other value).
pub(crate) fn lane_of(value: Option<&[u8]>) -> dual_mode_jobs::Lane {
    match value {
        Some(b"high") => dual_mode_jobs::Lane::High,
        Some(b"low") => dual_mode_jobs::Lane::Low,
        _ => dual_mode_jobs::Lane::Normal,
    }
}

/// The value of `name` among fields.
pub(crate) fn field<'a>(fields: &'a RawFields, name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let fields: RawFields = vec![(b"a".to_vec(), b"1".to_vec()), (b"payload".to_vec(), vec![0, 255, 7])];
        assert_eq!(decode_fields(&encode_raw(&fields), "t").expect("decodes"), fields);
        assert!(decode_fields(&[0, 0, 0, 9, 1], "t").is_err());
    }

    #[test]
    fn hashes_round_trip_text_and_bytes() {
        let json = hash_json([("state", b"done".as_slice()), ("result", &[0xff, 0x00])]);
        let mut hash = hash_of(&json, "t").expect("decodes");
        hash.sort();
        assert_eq!(hash, vec![("result".to_owned(), vec![0xff, 0]), ("state".to_owned(), b"done".to_vec())]);
    }

    #[test]
    fn range_ends_read_as_redis_reads_them() {
        assert_eq!(range_end("(5-3", true, "t").expect("ok"), Some((5, 4)));
        assert_eq!(range_end("(5-0", false, "t").expect("ok"), Some((4, i64::MAX)));
        assert_eq!(range_end("7", false, "t").expect("ok"), Some((7, i64::MAX)));
        assert!(range_end("x", true, "t").is_err());
    }
}
