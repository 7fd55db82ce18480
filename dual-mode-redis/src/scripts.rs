//! The Lua scripts, one file each under `lua/`; each runs atomically on the Redis server.
//!
//! Every key a script touches is passed in `KEYS`, and all keys of one queue share the hash
//! tag `{queue}`, so the scripts also hold on a Redis Cluster. One exception: the read
//! script, given the queue's rate rules, gates the entries it reads, and the keys of their
//! gates depend on what it reads; it builds them from the key prefixes it is given, which the
//! reader gives only where they share the lanes' hash tag (a queue of one partition), so they
//! live in the same slot. Each file opens with what the
//! script takes in `KEYS` and `ARGV` and what it returns.
//!
//! Scripts that move job records between states share one layout: `KEYS[1]` is the stream
//! and `KEYS[2..5]` the state sets (running, done, parked, cancelled; see [`STATE_SETS`]); the
//! keys of the script follow. (A push writes a new record in a state without a set, so its
//! script takes neither.) A job's record is written by the same script as the transition it
//! records, so the two never disagree. All but three small ones (a schedule's resume and
//! forgetting, a page of a set) run after `lua/prelude.lua`, the shared functions: the fencing
//! check, the record's move between states, the unique key's claim and release; the gate and
//! read scripts also after `lua/gating.lua`, the gate a job passes as it is about to start.

use std::sync::LazyLock;

use redis::Script;

/// The job states that have a set, in the order of their sets in `KEYS[2..5]` (the prelude's
/// `STATES`). Queued jobs are listed from the stream, delayed and retrying ones from the
/// delayed set.
pub(crate) const STATE_SETS: [&str; 4] = ["running", "done", "parked", "cancelled"];

/// The script of a file of `lua/`, after the prelude.
macro_rules! with_prelude {
    ($($file:literal),+) => {
        LazyLock::new(|| Script::new(concat!(include_str!("lua/prelude.lua"), $(include_str!($file)),+)))
    };
}

/// The script of a file of `lua/` alone (it needs none of the prelude's functions).
macro_rules! alone {
    ($file:literal) => {
        LazyLock::new(|| Script::new(include_str!($file)))
    };
}

/// A push: the entry and its `queued` record, unless its unique key is held.
pub(crate) static PUSH: LazyLock<Script> = with_prelude!("lua/push.lua");

/// A delayed push: the entry's hash, its member of the delayed set and its `delayed` record.
pub(crate) static PUSH_DELAYED: LazyLock<Script> = with_prelude!("lua/push_delayed.lua");

/// The due members of the delayed set, by the server's clock.
pub(crate) static DUE: LazyLock<Script> = with_prelude!("lua/due.lua");

/// New entries for a consumer from a queue's lanes, unless the queue is paused; through their
/// gates when given the queue's rules.
pub(crate) static READ: LazyLock<Script> = with_prelude!("lua/gating.lua", "lua/read.lua");

/// Due delayed entries into their lanes' streams.
pub(crate) static PROMOTE: LazyLock<Script> = with_prelude!("lua/promote.lua");

/// Runs marked as running (fenced).
pub(crate) static MARK: LazyLock<Script> = with_prelude!("lua/mark.lua");

/// Lease renewal of a batch of running jobs (fenced).
pub(crate) static RENEW: LazyLock<Script> = with_prelude!("lua/renew.lua");

/// Success of a batch of runs (fenced).
pub(crate) static ACK: LazyLock<Script> = with_prelude!("lua/ack.lua");

/// A run that ends without success: retried later, parked or cancelled (fenced).
pub(crate) static END: LazyLock<Script> = with_prelude!("lua/end.lua");

/// A waiter's mark on a job's record: kept at least so long once it ends.
pub(crate) static KEEP_WAITED: LazyLock<Script> = with_prelude!("lua/keep_waited.lua");

/// A cancellation by id.
pub(crate) static CANCEL: LazyLock<Script> = with_prelude!("lua/cancel.lua");

/// Jobs at their gates: rate limits (GCRA), the rate key's pause, the key's concurrency.
pub(crate) static GATE: LazyLock<Script> = with_prelude!("lua/gating.lua", "lua/gate.lua");

/// A slot given back, and the key's oldest waiter woken in the delayed set.
pub(crate) static RELEASE_SLOT: LazyLock<Script> = with_prelude!("lua/release_slot.lua");

/// A slot given back, and the key's oldest waiter taken off the waiters.
pub(crate) static RELEASE_SLOT_TAKE: LazyLock<Script> = with_prelude!("lua/release_slot_take.lua");

/// The leases of slots held by running jobs, extended.
pub(crate) static RENEW_SLOTS: LazyLock<Script> = with_prelude!("lua/renew_slots.lua");

/// A rate key's pause (never shortened).
pub(crate) static PAUSE: LazyLock<Script> = with_prelude!("lua/pause.lua");

/// Entries whose lease expired, claimed (never this consumer's own).
pub(crate) static CLAIM: LazyLock<Script> = with_prelude!("lua/claim.lua");

/// This consumer's own pending entries that no run holds, claimed again.
pub(crate) static RECLAIM: LazyLock<Script> = with_prelude!("lua/reclaim.lua");

/// A schedule's tick: its dedupe and its enqueue in one.
pub(crate) static TICK: LazyLock<Script> = with_prelude!("lua/tick.lua");

/// A schedule resumed, its resume time kept.
pub(crate) static RESUME: LazyLock<Script> = alone!("lua/resume.lua");

/// A schedule forgotten.
pub(crate) static FORGET: LazyLock<Script> = alone!("lua/forget.lua");

/// A parked entry back into its lane's stream.
pub(crate) static REDRIVE: LazyLock<Script> = with_prelude!("lua/redrive.lua");

/// Entries pending for no consumer, re-queued.
pub(crate) static SWEEP: LazyLock<Script> = with_prelude!("lua/sweep.lua");

/// The group, created the first time; says when it existed once and is gone.
pub(crate) static ENSURE_GROUP: LazyLock<Script> = with_prelude!("lua/ensure_group.lua");

/// A destroyed group recreated at the stream's end, its entries moved to the delayed set.
pub(crate) static RECREATE: LazyLock<Script> = with_prelude!("lua/recreate.lua");

/// Ended jobs whose records expired, forgotten by their sets.
pub(crate) static TRIM: LazyLock<Script> = with_prelude!("lua/trim.lua");

/// A consumer removed if it has no pending entries.
pub(crate) static DEL_CONSUMER: LazyLock<Script> = with_prelude!("lua/del_consumer.lua");

/// The group's idle consumers that hold nothing, removed.
pub(crate) static PRUNE: LazyLock<Script> = with_prelude!("lua/prune.lua");

/// A page of a sorted set from a cursor (score, member).
pub(crate) static PAGE: LazyLock<Script> = alone!("lua/page.lua");

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Every script, by its file.
    static ALL: [(&str, &LazyLock<Script>); 28] = [
        ("push", &PUSH),
        ("push_delayed", &PUSH_DELAYED),
        ("due", &DUE),
        ("read", &READ),
        ("promote", &PROMOTE),
        ("mark", &MARK),
        ("renew", &RENEW),
        ("ack", &ACK),
        ("end", &END),
        ("cancel", &CANCEL),
        ("gate", &GATE),
        ("release_slot", &RELEASE_SLOT),
        ("release_slot_take", &RELEASE_SLOT_TAKE),
        ("renew_slots", &RENEW_SLOTS),
        ("pause", &PAUSE),
        ("claim", &CLAIM),
        ("reclaim", &RECLAIM),
        ("tick", &TICK),
        ("resume", &RESUME),
        ("forget", &FORGET),
        ("redrive", &REDRIVE),
        ("sweep", &SWEEP),
        ("ensure_group", &ENSURE_GROUP),
        ("recreate", &RECREATE),
        ("trim", &TRIM),
        ("del_consumer", &DEL_CONSUMER),
        ("prune", &PRUNE),
        ("page", &PAGE),
    ];

    /// A redis-server of the test's own, killed on drop.
    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Every script compiles with the prelude: a script that does not fails every call of it,
    /// which a test of the behaviour may not notice (a renewal that fails is only logged).
    #[tokio::test]
    async fn every_script_compiles() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let _server = Server(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH"),
        );
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut con = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(con) => break con,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let mut failed = Vec::new();
        for (name, script) in &ALL {
            if let Err(e) = script.load_async(&mut con).await {
                failed.push(format!("lua/{name}.lua: {e}"));
            }
        }
        assert!(failed.is_empty(), "scripts that do not compile: {failed:#?}");
    }
}
