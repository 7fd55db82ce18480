//! Parsing of raw Redis replies into entries, tolerant of any bytes inside them. Entries are
//! parsed from owned replies, their bytes moved out rather than copied.

use redis::Value;

use super::Claimed;
use crate::jobs::envelope::RawFields;

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

/// The bytes of a scalar reply, moved out of it.
pub(crate) fn into_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.into_bytes()),
        other => bytes(&other),
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

/// The items of an array-like reply, moved out of it.
pub(crate) fn into_items(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// Parses the field list of an entry: `[f1, v1, f2, v2, ...]` (or a RESP3 map).
pub(crate) fn fields(v: Value) -> Result<RawFields, String> {
    fn pair(k: Value, v: Value) -> Result<(Vec<u8>, Vec<u8>), String> {
        match (into_bytes(k), into_bytes(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err("entry field is not a string".to_owned()),
        }
    }
    match v {
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| pair(k, v)).collect(),
        Value::Array(list) | Value::Set(list) => {
            if list.len() % 2 != 0 {
                return Err("entry has an odd number of field items".to_owned());
            }
            let mut out = Vec::with_capacity(list.len() / 2);
            let mut list = list.into_iter();
            while let (Some(k), Some(v)) = (list.next(), list.next()) {
                out.push(pair(k, v)?);
            }
            Ok(out)
        }
        other => Err(format!("entry fields are not a list: {other:?}")),
    }
}

/// The text of a scalar reply, its bytes moved out of it.
fn into_text(v: Value) -> Option<String> {
    into_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Parses one entry `[id, fields]`.
pub(crate) fn entry(v: Value) -> Result<Entry, String> {
    let mut pair = into_items(v).ok_or("entry is not a list")?.into_iter();
    let (Some(id), Some(f)) = (pair.next(), pair.next()) else {
        return Err("entry has fewer than two items".to_owned());
    };
    let id = into_text(id).ok_or("entry id is not text")?;
    Ok((id, fields(f)?))
}

/// Parses a list of entries, as `XRANGE` returns.
pub(crate) fn entries(v: Value) -> Result<Vec<Entry>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        other => into_items(other).ok_or("entries are not a list")?.into_iter().map(entry).collect(),
    }
}

/// Parses the claim script's reply: `[cursor, [[id, fields, delivery count]...]]`.
pub(crate) fn claim(v: Value) -> Result<(String, Vec<Claimed>), String> {
    let mut parts = into_items(v).ok_or("claim reply is not a list")?.into_iter();
    let (Some(cursor), Some(list)) = (parts.next(), parts.next()) else {
        return Err("claim reply too short".to_owned());
    };
    let cursor = text(&cursor).ok_or("claim cursor is not text")?;
    Ok((cursor, claimed(list)?))
}

/// Parses a list of claimed entries: `[[id, fields, delivery count]...]`.
pub(crate) fn claimed(list: Value) -> Result<Vec<Claimed>, String> {
    let mut out = Vec::new();
    for item in into_items(list).ok_or("claimed entries are not a list")? {
        let mut triple = into_items(item).ok_or("claimed entry is not a list")?.into_iter();
        let (Some(id), Some(fields_), Some(count)) = (triple.next(), triple.next(), triple.next()) else {
            return Err("claimed entry too short".to_owned());
        };
        let id = text(&id).ok_or("claimed id is not text")?;
        let count = int(&count).and_then(|c| u64::try_from(c).ok()).ok_or("delivery count is not a number")?;
        out.push((id, fields(fields_)?, count));
    }
    Ok(out)
}

/// Parses a push script's reply: `{1, entry id or due ms}` pushed, `{0, holder id}` a
/// duplicate of a unique job.
pub(crate) fn pushed(v: Value) -> Result<Result<String, String>, String> {
    let mut parts = into_items(v).ok_or("push reply is not a list")?.into_iter();
    let (Some(flag), Some(value)) = (parts.next(), parts.next()) else {
        return Err("push reply too short".to_owned());
    };
    let value = text(&value).ok_or("push reply value is not text")?;
    Ok(if int(&flag) == Some(1) { Ok(value) } else { Err(value) })
}
