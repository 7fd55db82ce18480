//! Parked entries: listed, read and re-driven.

use crate::backend::Entry;
use crate::envelope::{Envelope, RawFields};
use crate::error::{EnvelopeError, ParkReason, QueueError};
use crate::partition;

use super::Queue;

pub(crate) use crate::fields::parked::RAW_PREFIX;

/// An entry of the dead-letter stream, with why it was parked and its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    /// Its id in the parked stream; pass it to [`Queue::redrive`].
    pub parked_id: String,
    /// The id the entry had in the queue's stream.
    pub source_entry_id: String,
    /// The typed reason, if the stored code is one this version knows.
    pub reason: Option<ParkReason>,
    /// The stored reason code.
    pub reason_code: String,
    /// The detail: the decode error, the missing field, or the handler's last error.
    pub detail: String,
    /// When it was parked, in ms since the Unix epoch.
    pub parked_at_ms: u64,
    /// The consumer that parked it.
    pub consumer: String,
    /// The original entry's fields, bytes as they were (the first 1,000 at most).
    pub fields: RawFields,
    /// How many fields the original entry had, when it had more than were kept: such an
    /// entry cannot be re-driven.
    pub truncated_from: Option<usize>,
}

impl ParkedEntry {
    /// An original field's bytes.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        crate::envelope::field_of(&self.fields, name)
    }

    /// The original payload bytes, if the entry had a payload field.
    #[must_use]
    pub fn payload(&self) -> Option<&[u8]> {
        self.field(crate::envelope::field::PAYLOAD)
    }

    /// The original envelope, if the entry had one.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming the field that is missing or bad.
    pub fn envelope(&self) -> Result<Envelope, EnvelopeError> {
        Envelope::from_fields(&self.fields)
    }

    pub(crate) fn from_entry((parked_id, all): Entry) -> Self {
        use crate::fields::parked;
        let mut out = Self {
            parked_id,
            source_entry_id: String::new(),
            reason: None,
            reason_code: String::new(),
            detail: String::new(),
            parked_at_ms: 0,
            consumer: String::new(),
            fields: Vec::new(),
            truncated_from: None,
        };
        for (k, v) in all {
            if let Some(name) = k.strip_prefix(RAW_PREFIX.as_bytes()) {
                out.fields.push((name.to_vec(), v));
                continue;
            }
            let text = String::from_utf8_lossy(&v).into_owned();
            match std::str::from_utf8(&k).unwrap_or_default() {
                parked::REASON => {
                    out.reason = ParkReason::from_code(&text);
                    out.reason_code = text;
                }
                parked::DETAIL => out.detail = text,
                parked::SOURCE_ID => out.source_entry_id = text,
                parked::PARKED_AT => out.parked_at_ms = text.parse().unwrap_or(0),
                parked::CONSUMER => out.consumer = text,
                parked::TRUNCATED_FROM => out.truncated_from = text.parse().ok(),
                _ => {}
            }
        }
        out
    }
}

impl Queue {
    /// The oldest `count` parked entries, oldest first.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked(&self, count: usize) -> Result<Vec<ParkedEntry>, QueueError> {
        self.parked_merged(None, count).await
    }

    /// Up to `count` parked entries after the parked id `after` (exclusive), for paging.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_after(&self, after: &str, count: usize) -> Result<Vec<ParkedEntry>, QueueError> {
        let cursor = partition::Cursor::parse(after, self.partitions())
            .ok_or_else(|| QueueError::BadCursor { cursor: after.to_owned() })?;
        self.parked_merged(Some(cursor), count).await
    }

    /// One parked entry by its parked id.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_entry(&self, parked_id: &str) -> Result<Option<ParkedEntry>, QueueError> {
        let Some((p, store, id)) = self.store_of(parked_id) else { return Ok(None) };
        Ok(store.parked_range(id, id, 1).await?.pop().map(|e| self.parked_from(p, e)))
    }

    /// Up to `count` parked entries of every partition after `cursor`, oldest first.
    async fn parked_merged(
        &self,
        cursor: Option<partition::Cursor<'_>>,
        count: usize,
    ) -> Result<Vec<ParkedEntry>, QueueError> {
        let pages = self.stores().enumerate().map(|(q, store)| {
            let start = match cursor {
                None => "-".to_owned(),
                Some(c) if c.inclusive(q, false) => c.id.to_owned(),
                Some(c) => format!("({}", c.id),
            };
            async move { store.parked_range(&start, "+", count).await }
        });
        let pages = futures_util::future::try_join_all(pages).await?;
        let merged = partition::merge(pages, count, false, |(id, _): &Entry| id.as_str());
        Ok(merged.into_iter().map(|(p, e)| self.parked_from(p, e)).collect())
    }

    /// A parked entry of partition `p`, its id tagged when the queue has several.
    pub(crate) fn parked_from(&self, p: usize, (id, fields): Entry) -> ParkedEntry {
        ParkedEntry::from_entry((partition::tag(&id, p, self.partitions()), fields))
    }

    /// Puts a parked entry back on the queue with its original fields and the attempt reset
    /// to 1, and removes it from the parked stream, atomically. Returns the new stream entry
    /// id, or `None` if there is no such parked entry.
    ///
    /// # Errors
    /// [`QueueError::Truncated`] for an entry parked with only part of its fields; Redis fails.
    pub async fn redrive(&self, parked_id: &str) -> Result<Option<String>, QueueError> {
        let Some(parked) = self.parked_entry(parked_id).await? else {
            return Ok(None);
        };
        if let Some(fields) = parked.truncated_from {
            return Err(QueueError::Truncated { parked_id: parked_id.to_owned(), fields });
        }
        self.redrive_entry(&parked).await
    }

    /// Re-drives `parked` in its partition.
    async fn redrive_entry(&self, parked: &ParkedEntry) -> Result<Option<String>, QueueError> {
        let Some((_, store, id)) = self.store_of(&parked.parked_id) else { return Ok(None) };
        let job_id = parked.field(crate::envelope::field::ID).and_then(|id| std::str::from_utf8(id).ok());
        store.redrive(id, RAW_PREFIX, job_id).await
    }

    /// Re-drives every parked entry, oldest first (those parked while this runs included, up
    /// to `limit`); entries that kept only part of their fields stay parked (see
    /// [`Queue::redrive`]). Returns how many were re-driven.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn redrive_all(&self, limit: usize) -> Result<usize, QueueError> {
        let mut done = 0;
        let mut after: Option<String> = None;
        while done < limit {
            let want = (limit - done).min(100);
            let batch = match &after {
                Some(after) => self.parked_after(after, want).await?,
                None => self.parked(want).await?,
            };
            let Some(last) = batch.last() else { break };
            after = Some(last.parked_id.clone());
            for p in batch.iter().filter(|p| p.truncated_from.is_none()) {
                if self.redrive_entry(p).await?.is_some() {
                    done += 1;
                }
            }
        }
        Ok(done)
    }
}
