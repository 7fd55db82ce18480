//! The one `LISTEN` connection of a target: it wakes the readers of a partition when an entry
//! is added to it (a push's `NOTIFY` is sent when its transaction commits, so a reader never
//! wakes for a job it cannot see) and tells listeners which jobs ended. A notification lost
//! while the connection is down costs a reader at most its bounded poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};

/// How many ended jobs' ids a slow listener may fall behind.
const ENDED_CAPACITY: usize = 4096;

/// How long the listener waits before it connects again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The channel of added entries of `schema` (payload: the partition's key).
pub(crate) fn added_channel(schema: &str) -> String {
    format!("{schema}.added")
}

/// The channel of ended jobs of `schema` (payload: the home's key, a line break, the ids of the
/// jobs that ended, space-separated: one, or up to 64 of an acknowledged batch).
pub(crate) fn ended_channel(schema: &str) -> String {
    format!("{schema}.ended")
}

/// Who waits on the target's notifications, and the task that listens.
pub(crate) struct Hub {
    inner: Arc<HubInner>,
    /// Told when the hub is dropped, so that the task ends and its connection closes.
    closed: Arc<Notify>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.closed.notify_one();
    }
}

struct HubInner {
    pool: PgPool,
    added: String,
    ended: String,
    /// Woken when an entry is added to a partition, by partition key.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The ids of a queue's jobs as they end, by home key.
    finished: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
    /// Whether the listening task runs.
    started: tokio::sync::Mutex<bool>,
}

impl Hub {
    pub(crate) fn new(pool: PgPool, schema: &str) -> Self {
        let inner = HubInner {
            pool,
            added: added_channel(schema),
            ended: ended_channel(schema),
            wakers: Mutex::default(),
            finished: Mutex::default(),
            started: tokio::sync::Mutex::new(false),
        };
        Self { inner: Arc::new(inner), closed: Arc::new(Notify::new()) }
    }

    /// The waker of partition `q`.
    pub(crate) fn waker(&self, q: &str) -> Arc<Notify> {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.entry(q.to_owned()).or_default().clone()
    }

    /// A receiver of the ids of the jobs of the queue whose home is `home`, as they end.
    pub(crate) fn finished(&self, home: &str) -> broadcast::Receiver<Arc<str>> {
        let mut finished = self.inner.finished.lock().unwrap_or_else(PoisonError::into_inner);
        finished.entry(home.to_owned()).or_insert_with(|| broadcast::channel(ENDED_CAPACITY).0).subscribe()
    }

    /// Starts the listening task unless it runs: once this returns `Ok`, the channels are
    /// listened to. A failure is returned and tried again on the next call.
    pub(crate) async fn start(&self) -> Result<(), sqlx::Error> {
        let mut started = self.inner.started.lock().await;
        if *started {
            return Ok(());
        }
        let listener = self.inner.listen().await?;
        tokio::spawn(run(Arc::downgrade(&self.inner), listener, self.closed.clone()));
        *started = true;
        Ok(())
    }
}

impl HubInner {
    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([self.added.as_str(), self.ended.as_str()]).await?;
        Ok(listener)
    }

    /// Hands a notification to who waits for it.
    fn deliver(&self, channel: &str, payload: &str) {
        if channel == self.added {
            let waker = self.wakers.lock().unwrap_or_else(PoisonError::into_inner).get(payload).cloned();
            if let Some(waker) = waker {
                waker.notify_waiters();
            }
        } else if channel == self.ended
            && let Some((home, ids)) = payload.split_once('\n')
        {
            let sender = self.finished.lock().unwrap_or_else(PoisonError::into_inner).get(home).cloned();
            if let Some(sender) = sender {
                // An acknowledged batch's ids, space-separated. No receiver: nobody waits.
                for id in ids.split(' ').filter(|id| !id.is_empty()) {
                    let _ = sender.send(Arc::from(id));
                }
            }
        }
    }

    /// Wakes every reader: after an outage, a notification may have been lost.
    fn wake_all(&self) {
        for waker in self.wakers.lock().unwrap_or_else(PoisonError::into_inner).values() {
            waker.notify_waiters();
        }
        for sender in self.finished.lock().unwrap_or_else(PoisonError::into_inner).values() {
            // An empty id: "you may have missed some, read the records again".
            let _ = sender.send(Arc::from(""));
        }
    }
}

/// Receives notifications until the hub is dropped, connecting again after a failure.
async fn run(hub: Weak<HubInner>, mut listener: PgListener, closed: Arc<Notify>) {
    let mut logged = false;
    loop {
        let received = tokio::select! {
            received = listener.recv() => received,
            () = closed.notified() => return,
        };
        match received {
            Ok(note) => {
                let Some(hub) = hub.upgrade() else { return };
                hub.deliver(note.channel(), note.payload());
                logged = false;
            }
            Err(e) => {
                let Some(inner) = hub.upgrade() else { return };
                if !logged {
                    tracing::warn!(error = %e, "the job layer's LISTEN connection to Postgres failed; reconnecting");
                    logged = true;
                }
                inner.wake_all();
                drop(inner);
                tokio::time::sleep(RECONNECT_AFTER).await;
                let Some(inner) = hub.upgrade() else { return };
                if let Ok(fresh) = inner.listen().await {
                    listener = fresh;
                    inner.wake_all();
                }
            }
        }
    }
}
