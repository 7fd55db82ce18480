//! A newsletter: a service that renders a welcome mail for a subscriber, and the code that
//! enqueues one per sign-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dual_mode::jobs::{Job, JobError, JobInfo, PushOptions, Pushed, Queue, QueueError};
use dual_mode::{DualMode, Resource};
use serde::{Deserialize, Serialize};

/// A mail outbox: a client whose opens and closes are counted, as a test double of an SMTP
/// connection would be.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    open: Arc<AtomicUsize>,
}

/// How many outboxes are open now, process-wide.
pub static OPEN: AtomicUsize = AtomicUsize::new(0);

impl Resource for Outbox {
    type Config = ();
    type Error = std::io::Error;

    async fn open((): &()) -> Result<Self, Self::Error> {
        OPEN.fetch_add(1, Ordering::SeqCst);
        Ok(Self { open: Arc::new(AtomicUsize::new(1)) })
    }

    async fn close(self) -> Result<(), Self::Error> {
        self.open.fetch_sub(1, Ordering::SeqCst);
        OPEN.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subscriber {
    pub email: String,
    pub name: String,
}

#[derive(DualMode)]
pub struct Welcome {
    pub subscriber: Subscriber,
    pub language: String,
    #[dual_mode(shared)]
    pub outbox: Outbox,
}

impl Job for Welcome {
    type Output = String;

    async fn run(&self, _job: &JobInfo) -> Result<String, JobError> {
        if !self.subscriber.email.contains('@') {
            return Err(JobError::permanent(format!("{:?} is not an address", self.subscriber.email)));
        }
        let greeting = if self.language == "de" { "Willkommen" } else { "Welcome" };
        Ok(format!("{greeting}, {}!", self.subscriber.name))
    }
}

/// What a sign-up handler does: enqueue the welcome mail.
pub async fn sign_up(queue: &Queue, email: &str, name: &str) -> Result<Pushed, QueueError> {
    let language = if email.ends_with(".de") { "de" } else { "en" };
    let spec = WelcomeSpec {
        subscriber: Subscriber { email: email.to_owned(), name: name.to_owned() },
        language: language.to_owned(),
    };
    queue.push_spec(&spec, PushOptions::new()).await
}
