//! The signals that ask a worker to stop.

/// Resolves when the process receives SIGTERM or SIGINT: what Kubernetes, systemd and Docker
/// send before they kill a container, and Ctrl-C. Pass it to [`Worker::run`](super::Worker::run)
/// or [`Scheduler::run`](super::Scheduler::run): running jobs are told
/// ([`JobInfo::cancelled`](super::JobInfo::cancelled)), finish or are handed back to the queue
/// before the shutdown deadline, and no job is lost.
///
/// Set the deadline ([`WorkerConfig::shutdown_deadline`](super::WorkerConfig::shutdown_deadline))
/// below the platform's grace period (Kubernetes' `terminationGracePeriodSeconds`, 30 s by
/// default).
///
/// ```no_run
/// # async fn f(worker: dual_mode_jobs::Worker) -> Result<(), dual_mode_jobs::QueueError> {
/// let report = worker.run(dual_mode_jobs::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
///
/// If the handlers cannot be installed (no signal support), it never resolves and says so
/// through `tracing`.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "shutdown requested");
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM and SIGINT; shutdown only on request");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!(signal = "ctrl-c", "shutdown requested"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C; shutdown only on request");
                std::future::pending::<()>().await;
            }
        }
    }
}
