//! Helpers for the job layer tests: queues, polling with a deadline, child worker processes.
#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use dual_mode::jobs::{
    JobError, JobInfo, JobState, Queue, QueueConfig, RunReport, Worker, WorkerConfig, WorkerHandle, typed,
};
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};

/// An environment variable, if set (how a test binary's child processes get their roles).
pub fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// A queue name unique within this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A worker configuration for tests: `concurrency` slots, a 2 s lease renewed every 200 ms,
/// 100 ms blocking waits, delayed entries polled every 20 ms, a 300 ms cancellation grace.
pub fn fast_worker(concurrency: usize) -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(concurrency)
        .lease(Duration::from_secs(2))
        .renew_every(Duration::from_millis(200))
        .block(Duration::from_millis(100))
        .poll_delayed_every(Duration::from_millis(20))
        .cancel_grace(Duration::from_millis(300))
}

/// Connects a queue on `url`.
pub async fn queue(url: &str, config: QueueConfig) -> Queue {
    let client = redis::Client::open(url).expect("valid redis url");
    Queue::connect(client, config).await.expect("connect queue")
}

/// A plain multiplexed connection for assertions.
pub async fn con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("connect")
}

/// Polls `f` every 25 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: AsyncFnMut() -> Option<T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits up to `within` for each of `ids` to reach `want` in its record.
pub async fn wait_state(q: &Queue, ids: &[&str], want: JobState, within: Duration) {
    for id in ids {
        wait_for(within, &format!("job {id} {want}"), async || (q.job(id).await.ok()??.state == want).then_some(()))
            .await;
    }
}

/// A child process re-executing this test binary in a role; killed on drop.
pub struct RoleProcess {
    pub child: Child,
}

impl RoleProcess {
    /// Runs the test fn `test_name` of this binary with `envs` set (the role selector among them).
    pub fn spawn(test_name: &str, envs: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self { child: cmd.spawn().expect("spawn role process") }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`) with the `kill` utility.
    pub fn signal(&self, sig: &str) {
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit, up to `timeout`; returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return false,
            }
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg("-CONT").arg(self.pid().to_string()).stderr(Stdio::null()).status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `worker` in a task.
pub fn start(worker: Worker) -> WorkerHandle {
    worker.spawn()
}

/// Stops a worker started with [`start`] and returns its report.
pub async fn stop(w: WorkerHandle) -> RunReport {
    w.stop().await.expect("worker runs")
}

/// The payload of a ledger worker's jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    pub n: u32,
}

/// A worker whose `Work` jobs sleep `work`, then add one to field `n` of hash `runs_key` on the
/// ledger (a server of its own, which stays up whatever happens to the queue's Redis).
pub async fn ledger_worker(q: Queue, config: WorkerConfig, ledger_url: &str, runs_key: &str, work: Duration) -> Worker {
    let rec = con(ledger_url).await;
    let key = runs_key.to_owned();
    Worker::new(q, config).handle(
        "Work",
        typed(move |w: Work, _job: JobInfo| {
            let (mut rec, key) = (rec.clone(), key.clone());
            async move {
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                let _: i64 = rec.hincr(&key, w.n, 1).await.map_err(JobError::failed)?;
                Ok(())
            }
        }),
    )
}

/// Runs of each job so far, from the ledger.
pub async fn runs(ledger: &mut redis::aio::MultiplexedConnection, key: &str) -> HashMap<u32, u32> {
    ledger.hgetall(key).await.expect("HGETALL")
}

/// How many jobs ran at least once, from the ledger.
pub async fn ran(ledger: &mut redis::aio::MultiplexedConnection, key: &str) -> u32 {
    ledger.hlen(key).await.expect("HLEN")
}
