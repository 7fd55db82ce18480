//! Parsing of raw Redis replies into entries, tolerant of any bytes inside them.

use redis::Value;

use super::envelope::RawFields;

/// One stream entry: its id and raw fields.
pub(crate) type Entry = (String, RawFields);

/// The bytes of a scalar reply.
pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

/// The text of a scalar reply.
pub(crate) fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// An integer reply (or a bulk string holding one).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

/// The items of an array-like reply.
pub(crate) fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// Parses the field list of an entry: `[f1, v1, f2, v2, ...]` (or a RESP3 map).
pub(crate) fn fields(v: &Value) -> Result<RawFields, String> {
    if let Value::Map(pairs) = v {
        return pairs
            .iter()
            .map(|(k, v)| Ok((bytes(k).ok_or("field name")?, bytes(v).ok_or("field value")?)))
            .collect::<Result<_, &str>>()
            .map_err(|what| format!("entry {what} is not a string"));
    }
    let list = items(v).ok_or_else(|| format!("entry fields are not a list: {v:?}"))?;
    if list.len() % 2 != 0 {
        return Err("entry has an odd number of field items".to_owned());
    }
    list.chunks_exact(2)
        .map(|kv| match (bytes(&kv[0]), bytes(&kv[1])) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err("entry field is not a string".to_owned()),
        })
        .collect()
}

/// Parses one entry `[id, fields]`.
pub(crate) fn entry(v: &Value) -> Result<Entry, String> {
    let pair = items(v).ok_or("entry is not a list")?;
    let [id, f, ..] = pair else {
        return Err("entry has fewer than two items".to_owned());
    };
    let id = text(id).ok_or("entry id is not text")?;
    Ok((id, fields(f)?))
}

/// Parses a list of entries, as `XRANGE` returns.
pub(crate) fn entries(v: &Value) -> Result<Vec<Entry>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        other => items(other).ok_or("entries are not a list")?.iter().map(entry).collect(),
    }
}

/// Parses an `XREADGROUP` reply for one stream: nil on timeout, else `[[stream, entries]]`
/// (or a RESP3 map stream -> entries).
pub(crate) fn read_group(v: &Value) -> Result<Vec<Entry>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Map(pairs) => pairs.iter().map(|(_, e)| entries(e)).try_fold(Vec::new(), |mut acc, e| {
            acc.extend(e?);
            Ok(acc)
        }),
        other => {
            let mut out = Vec::new();
            for stream in items(other).ok_or("reply is not a list")? {
                let pair = items(stream).ok_or("stream reply is not a list")?;
                let [_, e, ..] = pair else {
                    return Err("stream reply is too short".to_owned());
                };
                out.extend(entries(e)?);
            }
            Ok(out)
        }
    }
}
