//! Parsing of raw Redis replies into entries, tolerant of any bytes inside them. Entries are
//! parsed from owned replies, their bytes moved out rather than copied. A reply of another
//! shape is a [`ReplyError`] naming what was wrong.

use std::time::Duration;

use dual_mode_jobs::backend::{Claimed, Entry, Passed, PushAnswer};
use redis::Value;

use dual_mode_jobs::RawFields;
use dual_mode_jobs::ReplyError;

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
pub(crate) fn fields(v: Value) -> Result<RawFields, ReplyError> {
    fn pair(k: Value, v: Value) -> Result<(Vec<u8>, Vec<u8>), ReplyError> {
        match (into_bytes(k), into_bytes(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(ReplyError::WrongType { what: "entry field", expected: "a string" }),
        }
    }
    match v {
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| pair(k, v)).collect(),
        Value::Array(list) | Value::Set(list) => {
            if list.len() % 2 != 0 {
                return Err(ReplyError::OddFields { what: "entry" });
            }
            let mut out = Vec::with_capacity(list.len() / 2);
            let mut list = list.into_iter();
            while let (Some(k), Some(v)) = (list.next(), list.next()) {
                out.push(pair(k, v)?);
            }
            Ok(out)
        }
        _ => Err(ReplyError::WrongType { what: "entry fields", expected: "a list" }),
    }
}

/// The text of a scalar reply, its bytes moved out of it.
fn into_text(v: Value) -> Option<String> {
    into_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Parses one entry `[id, fields]`.
pub(crate) fn entry(v: Value) -> Result<Entry, ReplyError> {
    let mut pair = into_items(v).ok_or(ReplyError::WrongType { what: "entry", expected: "a list" })?.into_iter();
    let (Some(id), Some(f)) = (pair.next(), pair.next()) else {
        return Err(ReplyError::TooShort { what: "entry", needs: 2 });
    };
    let id = into_text(id).ok_or(ReplyError::WrongType { what: "entry id", expected: "text" })?;
    Ok((id, fields(f)?))
}

/// Parses a list of entries, as `XRANGE` returns.
pub(crate) fn entries(v: Value) -> Result<Vec<Entry>, ReplyError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        other => into_items(other)
            .ok_or(ReplyError::WrongType { what: "entries", expected: "a list" })?
            .into_iter()
            .map(entry)
            .collect(),
    }
}

/// Parses the claim script's reply: `[cursor, [[id, fields, delivery count]...]]`.
pub(crate) fn claim(v: Value) -> Result<(String, Vec<Claimed>), ReplyError> {
    let mut parts = into_items(v).ok_or(ReplyError::WrongType { what: "claim reply", expected: "a list" })?.into_iter();
    let (Some(cursor), Some(list)) = (parts.next(), parts.next()) else {
        return Err(ReplyError::TooShort { what: "claim reply", needs: 2 });
    };
    let cursor = text(&cursor).ok_or(ReplyError::WrongType { what: "claim cursor", expected: "text" })?;
    Ok((cursor, claimed(list)?))
}

/// Parses a list of claimed entries: `[[id, fields, delivery count]...]`.
pub(crate) fn claimed(list: Value) -> Result<Vec<Claimed>, ReplyError> {
    let mut out = Vec::new();
    for item in into_items(list).ok_or(ReplyError::WrongType { what: "claimed entries", expected: "a list" })? {
        let mut triple =
            into_items(item).ok_or(ReplyError::WrongType { what: "claimed entry", expected: "a list" })?.into_iter();
        let (Some(id), Some(fields_), Some(count)) = (triple.next(), triple.next(), triple.next()) else {
            return Err(ReplyError::TooShort { what: "claimed entry", needs: 3 });
        };
        let id = text(&id).ok_or(ReplyError::WrongType { what: "claimed id", expected: "text" })?;
        let count = int(&count)
            .and_then(|c| u64::try_from(c).ok())
            .ok_or_else(|| ReplyError::BadNumber { what: "delivery count", value: text(&count).unwrap_or_default() })?;
        out.push((id, fields(fields_)?, count));
    }
    Ok(out)
}

/// Parses the push script's reply: `{1, entry id}` pushed, `{0, holder id}` a duplicate of a
/// unique job.
pub(crate) fn pushed(v: Value) -> Result<PushAnswer, ReplyError> {
    let (added, value) = push_reply(v)?;
    Ok(if added { PushAnswer::Added { entry_id: value } } else { PushAnswer::Held { holder: value } })
}

/// Parses the delayed push script's reply: `{1, due ms}` pushed, `{0, holder id}` a duplicate
/// of a unique job.
pub(crate) fn pushed_delayed(v: Value) -> Result<PushAnswer, ReplyError> {
    let (added, value) = push_reply(v)?;
    Ok(if added { PushAnswer::Delayed } else { PushAnswer::Held { holder: value } })
}

/// A push reply's flag (1: pushed) and value.
fn push_reply(v: Value) -> Result<(bool, String), ReplyError> {
    let mut parts = into_items(v).ok_or(ReplyError::WrongType { what: "push reply", expected: "a list" })?.into_iter();
    let (Some(flag), Some(value)) = (parts.next(), parts.next()) else {
        return Err(ReplyError::TooShort { what: "push reply", needs: 2 });
    };
    let value = text(&value).ok_or(ReplyError::WrongType { what: "push reply value", expected: "text" })?;
    Ok((int(&flag) == Some(1), value))
}

/// The read script's reply, unpacked: per lane its entries, in reading order; the lanes' last
/// ids (empty when the read was not short); and per entry what its gate answered (empty when
/// the read gated nothing).
pub(crate) type ReadReply = ([Vec<Entry>; 3], Vec<String>, Vec<Option<Passed>>);

/// The read script's packed reply (see its doc), unpacked.
pub(crate) fn read(packed: &[u8]) -> Result<ReadReply, ReplyError> {
    let mut p = Unpack(packed);
    if p.array()? != 5 {
        return Err(ReplyError::WrongType { what: "read reply", expected: "five lists" });
    }
    let mut lanes: [Vec<Entry>; 3] = Default::default();
    for lane in &mut lanes {
        let n = p.array()?;
        lane.reserve_exact(n);
        for _ in 0..n {
            if p.array()? != 2 {
                return Err(ReplyError::WrongType { what: "entry", expected: "an id and its fields" });
            }
            let id = p.text()?;
            let items = p.array()?;
            if items % 2 != 0 {
                return Err(ReplyError::OddFields { what: "entry" });
            }
            let mut fields = Vec::with_capacity(items / 2);
            for _ in 0..items / 2 {
                fields.push((p.bytes()?.to_vec(), p.bytes()?.to_vec()));
            }
            lane.push((id, fields));
        }
    }
    let last = (0..p.array()?).map(|_| p.text()).collect::<Result<_, _>>()?;
    let gates = (0..p.array()?)
        .map(|_| match p.text()?.as_str() {
            "" => Ok(None),
            wait => {
                let n =
                    wait.parse().map_err(|_| ReplyError::BadNumber { what: "gate's answer", value: wait.into() })?;
                passed(n).map(Some)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !p.0.is_empty() {
        return Err(ReplyError::PackedTrailing);
    }
    if !gates.is_empty() && gates.len() != lanes.iter().map(Vec::len).sum::<usize>() {
        return Err(ReplyError::WrongType { what: "read reply's gates", expected: "one per entry" });
    }
    Ok((lanes, last, gates))
}

/// What a gate's answer means: `0` start, a wait in ms, `-1` no slot.
pub(crate) fn passed(wait: i64) -> Result<Passed, ReplyError> {
    Ok(match u64::try_from(wait) {
        Ok(0) => Passed::Start,
        Ok(ms) => Passed::Wait(Duration::from_millis(ms)),
        Err(_) if wait == -1 => Passed::NoSlot,
        Err(_) => return Err(ReplyError::BadNumber { what: "gate's answer", value: wait.to_string() }),
    })
}

/// A reader of the msgpack that `cmsgpack.pack` makes of Lua tables of strings: arrays
/// and strings, nothing else.
struct Unpack<'a>(&'a [u8]);

impl<'a> Unpack<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReplyError> {
        if self.0.len() < n {
            return Err(ReplyError::PackedShort);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A big-endian length of `n` bytes.
    fn len(&mut self, n: usize) -> Result<usize, ReplyError> {
        let b = self.take(n)?;
        let len = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        usize::try_from(len).map_err(|_| ReplyError::BadNumber { what: "packed length", value: len.to_string() })
    }

    fn tag(&mut self) -> Result<u8, ReplyError> {
        Ok(self.take(1)?[0])
    }

    /// The length of the array that comes next.
    fn array(&mut self) -> Result<usize, ReplyError> {
        match self.tag()? {
            t @ 0x90..=0x9f => Ok(usize::from(t & 0x0f)),
            0xdc => self.len(2),
            0xdd => self.len(4),
            // An empty Lua table packs as a map of nothing.
            0x80 => Ok(0),
            tag => Err(ReplyError::PackedTag { tag, expected: "a list" }),
        }
    }

    /// The bytes of the string that comes next.
    fn bytes(&mut self) -> Result<&'a [u8], ReplyError> {
        let n = match self.tag()? {
            t @ 0xa0..=0xbf => usize::from(t & 0x1f),
            0xd9 | 0xc4 => self.len(1)?,
            0xda | 0xc5 => self.len(2)?,
            0xdb | 0xc6 => self.len(4)?,
            tag => return Err(ReplyError::PackedTag { tag, expected: "a string" }),
        };
        self.take(n)
    }

    fn text(&mut self) -> Result<String, ReplyError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| ReplyError::WrongType { what: "entry id", expected: "text" })
    }
}

#[cfg(test)]
mod tests {
    use super::{Duration, Passed, read};
    use dual_mode_jobs::ReplyError;

    /// The msgpack of a string, as `cmsgpack` writes it.
    fn s(b: &[u8]) -> Vec<u8> {
        let mut out = match b.len() {
            n @ 0..32 => vec![0xa0 | u8::try_from(n).unwrap()],
            n @ 32..256 => vec![0xd9, u8::try_from(n).unwrap()],
            n => [&[0xda][..], &u16::try_from(n).unwrap().to_be_bytes()].concat(),
        };
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn a_packed_read_gives_each_lane_its_entries_the_last_ids_and_the_gates() {
        let long = vec![b'x'; 300];
        let mid = vec![b'y'; 40];
        let mut p = vec![0x95];
        // First lane: one entry with two fields, one value of each string size.
        p.extend([0x91, 0x92]);
        p.extend(s(b"1-1"));
        p.extend([0x94]);
        p.extend(s(b"payload"));
        p.extend(s(&long));
        p.extend(s(b"id"));
        p.extend(s(&mid));
        // Second lane: none (an array of 16-bit length); third: none (an empty map).
        p.extend([0xdc, 0, 0, 0x80]);
        p.extend([0x93]);
        for id in [b"0-0", b"1-1", b"0-0"] {
            p.extend(s(id));
        }
        let with_gates = |answers: &[&[u8]]| {
            let mut p = p.clone();
            p.push(0x90 | u8::try_from(answers.len()).unwrap());
            for a in answers {
                p.extend(s(a));
            }
            read(&p)
        };
        let (lanes, last, gates) = with_gates(&[b"250"]).expect("parsed");
        assert_eq!(lanes[0].len(), 1);
        assert_eq!(lanes[0][0].0, "1-1");
        assert_eq!(lanes[0][0].1, vec![(b"payload".to_vec(), long), (b"id".to_vec(), mid)]);
        assert!(lanes[1].is_empty() && lanes[2].is_empty());
        assert_eq!(last, ["0-0", "1-1", "0-0"]);
        assert_eq!(gates, [Some(Passed::Wait(Duration::from_millis(250)))]);
        let answers = |g: &[u8]| with_gates(&[g]).map(|(_, _, gates)| gates[0]);
        assert_eq!(answers(b"0").expect("start"), Some(Passed::Start));
        assert_eq!(answers(b"-1").expect("no slot"), Some(Passed::NoSlot));
        assert_eq!(answers(b"").expect("no gate"), None);
        assert!(matches!(answers(b"-2"), Err(ReplyError::BadNumber { .. })));
        assert!(matches!(answers(b"soon"), Err(ReplyError::BadNumber { .. })));
        assert!(with_gates(&[]).expect("no gates").2.is_empty());
        assert!(matches!(with_gates(&[b"0", b"0"]), Err(ReplyError::WrongType { what: "read reply's gates", .. })));
    }

    #[test]
    fn a_cut_or_odd_packed_read_is_an_error() {
        let mut p = vec![0x95, 0x91, 0x92];
        p.extend(s(b"1-1"));
        p.extend([0x91]);
        p.extend(s(b"lonely"));
        assert!(matches!(read(&p), Err(ReplyError::OddFields { what: "entry" })));
        assert!(matches!(read(&[0x95, 0x91]), Err(ReplyError::PackedShort)));
        assert!(matches!(read(&[0x01]), Err(ReplyError::PackedTag { tag: 0x01, expected: "a list" })));
    }
}
