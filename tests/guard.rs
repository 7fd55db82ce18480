//! The guard's semantics, on a resource whose close is explicit and shared by clones.

mod common;
#[path = "common/probe.rs"]
mod probe;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dual_mode::{DualMode, EnterErrorKind, Guard, Secret, SecretSource, Spec};
use probe::{Probe, ProbeConfig, log};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Cfg {
    a: ProbeConfig,
    b: ProbeConfig,
}

#[derive(DualMode)]
struct Two {
    cfg: Cfg,
    #[dual_mode(shared, key = "a", config = cfg.a)]
    a: Probe,
    #[dual_mode(shared, key = "b", config = cfg.b)]
    b: Probe,
}

fn two(prefix: &str) -> TwoSpec {
    TwoSpec {
        cfg: Cfg { a: ProbeConfig::named(&format!("{prefix}-a")), b: ProbeConfig::named(&format!("{prefix}-b")) },
    }
}

#[tokio::test]
async fn opens_in_field_order_and_closes_in_reverse() {
    let guard = TwoParts::from(two("order")).enter().await.unwrap();
    assert_eq!(guard.opened(), 2);
    assert!(guard.a.use_it().is_ok() && guard.b.use_it().is_ok());
    let (a, b) = (guard.a.clone(), guard.b.clone());
    guard.exit().await.unwrap();
    assert_eq!(log("order"), ["open order-a", "open order-b", "close order-b", "close order-a"]);
    assert!(a.is_closed() && b.is_closed());
    assert_eq!((a.closes(), b.closes()), (1, 1));
}

#[tokio::test]
async fn a_failed_open_closes_what_was_opened_and_names_the_field() {
    let mut spec = two("partial");
    spec.cfg.b.fail_open = true;
    let err = TwoParts::from(spec).enter().await.err().expect("b fails");
    assert_eq!(log("partial"), ["open partial-a", "fail partial-b", "close partial-a"]);
    assert_eq!(err.site().service, "Two");
    assert_eq!(err.site().field, "b");
    assert_eq!(err.site().resource, "Probe");
    assert!(matches!(err.kind(), EnterErrorKind::Open(_)));
    // The message says what failed; the cause is its source, printed once by a chain.
    assert_eq!(err.to_string(), "cannot enter `Two`: opening `Two.b` (Probe) failed");
    assert_eq!(chain(&err), "cannot enter `Two`: opening `Two.b` (Probe) failed: partial-b refused");
}

/// An error and its sources, `": "`-joined, as anyhow's `{:#}` prints them.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out = format!("{out}: {cause}");
        next = cause.source();
    }
    out
}

#[tokio::test]
async fn injected_clients_are_untouched_and_usable_after_exit() {
    let injected = Probe::new("injected-a");
    let parts = TwoParts { a: Some(injected.clone()), ..two("injected").into() };
    let guard = parts.enter().await.unwrap();
    assert_eq!(guard.opened(), 1, "only b is opened");
    let b = guard.b.clone();
    guard.exit().await.unwrap();
    assert!(!injected.is_closed(), "the injected pool is not closed");
    assert!(injected.use_it().is_ok());
    assert!(b.is_closed(), "the temporary pool is closed");
    assert_eq!(log("injected"), ["open injected-b", "close injected-b"]);
}

#[tokio::test]
async fn every_close_runs_and_failures_are_collected() {
    let mut spec = two("closefail");
    spec.cfg.a.fail_close = true;
    spec.cfg.b.fail_close = true;
    let guard = spec.enter().await.unwrap();
    let err = guard.exit().await.expect_err("both closes fail");
    assert_eq!(log("closefail"), ["open closefail-a", "open closefail-b", "close closefail-b", "close closefail-a"]);
    let fields: Vec<&str> = err.errors().iter().map(|e| e.site.field).collect();
    assert_eq!(fields, ["b", "a"]);
    assert_eq!(err.service(), "Two");
}

async fn closed_eventually(probe: &Probe) -> bool {
    common::eventually(true, async || probe.is_closed()).await
}

#[tokio::test]
async fn run_exits_after_ok_and_after_err() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let out: Result<u32, dual_mode::Error> = two("run-ok")
        .run(async |svc: &Two| {
            s.lock().unwrap().push(svc.a.clone());
            Ok(7)
        })
        .await;
    assert_eq!(out.unwrap(), 7);
    let s = seen.clone();
    let out: Result<u32, Box<dyn std::error::Error + Send + Sync>> = two("run-err")
        .run(async |svc: &Two| {
            s.lock().unwrap().push(svc.a.clone());
            Err("body failed".into())
        })
        .await;
    assert_eq!(out.unwrap_err().to_string(), "body failed");
    for probe in seen.lock().unwrap().iter() {
        assert!(probe.is_closed(), "{} closed", probe.name);
    }
    assert_eq!(log("run-err"), ["open run-err-a", "open run-err-b", "close run-err-b", "close run-err-a"]);
}

#[tokio::test]
async fn a_panic_in_run_exits_then_resumes() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let _: Result<(), dual_mode::Error> = two("panic")
            .run(async |svc: &Two| {
                *s.lock().unwrap() = Some(svc.a.clone());
                panic!("boom in the body");
            })
            .await;
    });
    let err = task.await.expect_err("the panic resumes");
    assert!(err.is_panic());
    let a = seen.lock().unwrap().clone().unwrap();
    assert!(a.is_closed(), "closed before the panic resumed");
    assert_eq!(log("panic"), ["open panic-a", "open panic-b", "close panic-b", "close panic-a"]);
}

#[tokio::test]
async fn a_timeout_cancelling_the_job_closes_everything() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let job = two("cancel").run(async |svc: &Two| -> Result<(), dual_mode::Error> {
        *s.lock().unwrap() = Some(svc.b.clone());
        std::future::pending::<()>().await;
        Ok(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(50), job).await.is_err());
    let b = seen.lock().unwrap().clone().unwrap();
    assert!(closed_eventually(&b).await);
    assert_eq!(log("cancel"), ["open cancel-a", "open cancel-b", "close cancel-b", "close cancel-a"]);
}

#[tokio::test]
async fn a_timeout_landing_inside_exit_cannot_interrupt_the_close() {
    let mut spec = two("slowexit");
    spec.cfg.a.close_delay_ms = 150;
    spec.cfg.b.close_delay_ms = 150;
    let guard = spec.enter().await.unwrap();
    let (a, b) = (guard.a.clone(), guard.b.clone());
    // The timeout fires while `b`'s close is sleeping.
    assert!(tokio::time::timeout(Duration::from_millis(50), guard.exit()).await.is_err());
    assert!(!a.is_closed());
    assert!(closed_eventually(&a).await && closed_eventually(&b).await);
    assert_eq!(log("slowexit"), ["open slowexit-a", "open slowexit-b", "close slowexit-b", "close slowexit-a"]);
}

/// Counts WARN events that mention a guard dropped without exit.
struct WarnCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut msg = Msg(String::new());
        event.record(&mut msg);
        if *event.metadata().level() == tracing::Level::WARN && msg.0.contains("without exit") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn drop_without_exit_closes_in_the_background_and_warns() {
    let warns = Arc::new(AtomicUsize::new(0));
    let _sub = tracing::subscriber::set_default(WarnCounter(warns.clone()));
    let guard = two("dropped").enter().await.unwrap();
    let (a, b) = (guard.a.clone(), guard.b.clone());
    drop(guard);
    assert_eq!(warns.load(Ordering::SeqCst), 1);
    assert!(closed_eventually(&a).await && closed_eventually(&b).await);
    assert_eq!(log("dropped"), ["open dropped-a", "open dropped-b", "close dropped-b", "close dropped-a"]);
}

#[test]
fn drop_without_exit_outside_a_runtime_drops_and_warns() {
    let warns = Arc::new(AtomicUsize::new(0));
    let _sub = tracing::subscriber::set_default(WarnCounter(warns.clone()));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let guard = rt.block_on(two("noruntime").enter()).unwrap();
    let a = guard.a.clone();
    drop(rt);
    drop(guard);
    assert_eq!(warns.load(Ordering::SeqCst), 1);
    assert!(!a.is_closed(), "no runtime to close on: dropped, not closed");
}

#[derive(DualMode)]
struct Inner {
    cfg: ProbeConfig,
    #[dual_mode(shared, config = cfg)]
    probe: Probe,
}

#[derive(DualMode)]
struct Outer {
    cfg: ProbeConfig,
    #[dual_mode(nested)]
    inner: Inner,
    #[dual_mode(shared, config = cfg)]
    probe: Probe,
    #[dual_mode(nested)]
    middle: Middle,
}

#[derive(DualMode)]
struct Middle {
    #[dual_mode(nested)]
    inner: Inner,
    label: String,
}

#[tokio::test]
async fn nested_services_share_one_temporary_client_per_type() {
    let cfg = ProbeConfig::named("nested-outer");
    let spec = OuterSpec {
        cfg: cfg.clone(),
        inner: InnerSpec { cfg: ProbeConfig::named("nested-inner") },
        middle: MiddleSpec { inner: InnerSpec { cfg: ProbeConfig::named("nested-deep") }, label: "m".into() },
    };
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["middle"]["inner"]["cfg"]["name"], "nested-deep");
    let guard = spec.enter().await.unwrap();
    assert_eq!(guard.opened(), 1, "one Probe for three levels");
    assert_eq!(guard.inner.probe.name, "nested-inner", "the first level to need it opens it");
    assert_eq!(guard.probe.name, "nested-inner");
    assert_eq!(guard.middle.inner.probe.name, "nested-inner");
    let p = guard.probe.clone();
    assert_eq!(guard.spec().middle.label, "m");
    guard.exit().await.unwrap();
    assert!(p.is_closed());
    assert_eq!(log("nested"), ["open nested-inner", "close nested-inner"]);
}

#[tokio::test]
async fn a_context_lends_its_clients_and_keeps_them_open() {
    let warm = Probe::new("ctx-warm");
    let ctx = dual_mode::Context::new().with_keyed("a", warm.clone());
    let guard = TwoParts::from_context(two("ctx"), &ctx).enter().await.unwrap();
    assert_eq!(guard.a.name, "ctx-warm");
    assert_eq!(guard.opened(), 1);
    guard.exit().await.unwrap();
    assert!(!warm.is_closed());
    assert_eq!(log("ctx"), ["open ctx-b", "close ctx-b"]);
    let full = dual_mode::Context::new().with_keyed("a", warm.clone()).with_keyed("b", Probe::new("ctx-warm-b"));
    let guard = TwoParts::from_context(two("ctx2"), &full).enter().await.unwrap();
    assert_eq!(guard.opened(), 0);
    guard.exit().await.unwrap();
    assert!(log("ctx2").is_empty());
}

#[derive(DualMode)]
struct WithSecret {
    label: String,
    #[dual_mode(secret, env = "CARGO_PKG_NAME")]
    token: Secret<String>,
    #[dual_mode(secret, env = "DUAL_MODE_TEST_SURELY_UNSET")]
    missing: Secret<String>,
}

#[tokio::test]
async fn secrets_stay_out_of_specs_and_debug_output() {
    // CARGO_PKG_NAME is set by cargo for the test process: a real environment secret.
    let parts = WithSecretParts {
        missing: Some(Secret::new("s3cr3t-injected".into())),
        ..WithSecretSpec { label: "l".into() }.into()
    };
    let guard = parts.enter().await.unwrap();
    assert_eq!(guard.token.expose(), "dual-mode");
    assert_eq!(guard.missing.expose(), "s3cr3t-injected");
    assert_eq!(format!("{:?}", guard.token), "Secret(***)");
    let json = serde_json::to_string(&guard.spec()).unwrap();
    assert_eq!(json, r#"{"label":"l"}"#);
    assert!(!json.contains("s3cr3t") && !json.contains("dual-mode"));
    let debug = format!("{:?}", guard.spec());
    assert!(!debug.contains("s3cr3t"), "{debug}");
    guard.exit().await.unwrap();
}

#[tokio::test]
async fn a_missing_secret_is_a_typed_error() {
    let err = WithSecretSpec { label: "l".into() }.enter().await.err().expect("missing secret");
    assert_eq!(err.site().field, "missing");
    assert!(matches!(err.kind(), EnterErrorKind::SecretMissing(SecretSource::Env("DUAL_MODE_TEST_SURELY_UNSET"))));
    assert_eq!(
        err.to_string(),
        "cannot enter `WithSecret`: secret `WithSecret.missing` (Secret<String>) is missing: environment variable `DUAL_MODE_TEST_SURELY_UNSET` is not set"
    );
}

#[test]
fn spec_json_round_trips_and_bad_payloads_name_the_field() {
    let spec = two("json");
    let bytes = spec.to_json().unwrap();
    let back = TwoSpec::from_json(&bytes).unwrap();
    assert_eq!(back.cfg, spec.cfg);
    assert_eq!(<TwoSpec as Spec>::NAME, "TwoSpec");
    assert_eq!(<TwoSpec as Spec>::VERSION, 1);

    let err = TwoSpec::from_json(br#"{"cfg":{"a":{"name":"x","fail_open":"no"},"b":{"name":"y"}}}"#).unwrap_err();
    assert_eq!(err.spec(), "TwoSpec");
    assert_eq!(err.path(), "cfg.a.fail_open");
    assert_eq!(err.to_string(), "invalid `TwoSpec` payload at field `cfg.a.fail_open`");
    assert!(chain(&err).starts_with("invalid `TwoSpec` payload at field `cfg.a.fail_open`: invalid type"), "{err}");

    let err = TwoSpec::from_json(br#"{"cfg":{"a":{"name":"x"}}}"#).unwrap_err();
    assert!(chain(&err).contains("missing field `b`"), "{err}");
    assert_eq!(err.path(), "cfg");

    for bad in [&b"not json"[..], b"", b"[1,2]", b"{\"cfg\":", b"{\"cfg\":{\"a\":{},\"b\":{}}} trailing", b"\xff\xfe"] {
        let err = TwoSpec::from_json(bad).unwrap_err();
        assert_eq!(err.spec(), "TwoSpec");
    }
}

#[derive(DualMode)]
struct HasDrop {
    label: String,
    #[dual_mode(shared, config = label_cfg)]
    probe: Probe,
    label_cfg: ProbeConfig,
    #[dual_mode(shared, open = open_counter)]
    counter: Arc<AtomicUsize>,
}

async fn open_counter(spec: &HasDropSpec) -> Result<Arc<AtomicUsize>, std::io::Error> {
    tokio::task::yield_now().await;
    Ok(Arc::new(AtomicUsize::new(spec.label.len())))
}

impl Drop for HasDrop {
    fn drop(&mut self) {
        // Runs before the guard closes the resources: the pool is still usable here.
        assert!(self.probe.use_it().is_ok());
        self.counter.fetch_add(100, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_service_with_its_own_drop_is_dropped_before_its_clients_close() {
    let spec = HasDropSpec { label: "four".into(), label_cfg: ProbeConfig::named("hasdrop") };
    let guard = spec.enter().await.unwrap();
    assert_eq!(guard.counter.load(Ordering::SeqCst), 4, "open = path received the spec");
    let (probe, counter) = (guard.probe.clone(), guard.counter.clone());
    guard.exit().await.unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 104);
    assert!(probe.is_closed());
}

// Guards and parts are `Send`, so jobs holding them can be spawned: checked at compile time.
const _: () = {
    const fn send<T: Send>() {}
    send::<Guard<Two>>();
    send::<Guard<Outer>>();
    send::<TwoParts>();
};

#[tokio::test]
async fn a_context_lends_secrets_under_their_source_name() {
    let ctx =
        dual_mode::Context::new().with_keyed("DUAL_MODE_TEST_SURELY_UNSET", Secret::new(String::from("from-ctx")));
    let parts = WithSecretParts::from_context(WithSecretSpec { label: "l".into() }, &ctx);
    let guard = parts.enter().await.expect("the context has the secret the environment lacks");
    assert_eq!(guard.missing.expose(), "from-ctx");
    assert_eq!(guard.token.expose(), "dual-mode", "the other secret still comes from its source");
    guard.exit().await.unwrap();
}

#[tokio::test]
async fn a_close_that_panics_is_a_failed_close_and_the_others_still_run() {
    let mut spec = two("closepanic");
    spec.cfg.b.panic_close = true;
    let guard = spec.enter().await.unwrap();
    let a = guard.a.clone();
    let err = guard.exit().await.expect_err("b's close panicked");
    assert!(a.is_closed(), "a was closed after b's close panicked");
    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].site.field, "b");
    assert_eq!(err.errors()[0].cause.to_string(), "close panicked: closepanic-b close panicked");
    assert!(!err.is_interrupted());
}

#[derive(DualMode)]
#[expect(dead_code, reason = "never entered successfully")]
struct PanicsOnOpen {
    cfg: ProbeConfig,
    #[dual_mode(shared, config = cfg)]
    first: Probe,
    #[dual_mode(shared, open = open_and_panic)]
    second: Arc<AtomicUsize>,
}

async fn open_and_panic(_: &PanicsOnOpenSpec) -> Result<Arc<AtomicUsize>, std::io::Error> {
    tokio::task::yield_now().await;
    panic!("no client today")
}

#[tokio::test]
async fn an_open_that_panics_is_a_failed_open_naming_the_field() {
    let spec = PanicsOnOpenSpec { cfg: ProbeConfig::named("openpanic") };
    let Err(err) = spec.enter().await else { panic!("the second open panics") };
    assert_eq!(err.site().field, "second");
    assert_eq!(
        chain(&err),
        "cannot enter `PanicsOnOpen`: opening `PanicsOnOpen.second` (Arc<AtomicUsize>) failed: open panicked: no client today"
    );
    assert_eq!(log("openpanic"), ["open openpanic", "close openpanic"], "the first client was closed");
}

#[derive(DualMode)]
#[expect(dead_code, reason = "never entered successfully")]
struct BadHttp {
    config: dual_mode::HttpConfig,
    #[dual_mode(shared, config = config)]
    http: reqwest::Client,
}

#[tokio::test]
async fn a_client_that_cannot_be_built_is_an_enter_error_naming_the_field() {
    let config = dual_mode::HttpConfig { user_agent: Some("line\nbreak".into()), ..Default::default() };
    let Err(err) = BadHttpSpec { config }.enter().await else { panic!("a header value cannot hold a line break") };
    assert_eq!(err.site().field, "http");
    assert_eq!(err.site().resource, "reqwest::Client");
    assert!(matches!(err.kind(), EnterErrorKind::Open(_)));
}

/// Where the file-secret tests mount their secrets, as Docker and Kubernetes mount them
/// under `/run/secrets`.
const SECRETS_DIR: &str = "/tmp/dual-mode-guard-secrets";

#[derive(DualMode)]
struct FileSecrets {
    #[dual_mode(secret, file = "/tmp/dual-mode-guard-secrets/token")]
    token: secrecy::SecretString,
    #[dual_mode(secret, file = "/tmp/dual-mode-guard-secrets/port")]
    port: secrecy::SecretBox<u16>,
    #[dual_mode(secret, env = "CARGO_PKG_NAME")]
    name: Secret<String>,
}

#[derive(DualMode)]
struct AbsentFileSecret {
    #[dual_mode(secret, file = "/tmp/dual-mode-guard-secrets/absent")]
    token: secrecy::SecretString,
}

#[derive(DualMode)]
#[expect(dead_code, reason = "never entered successfully")]
struct DirectoryAsSecret {
    #[dual_mode(secret, file = "/tmp/dual-mode-guard-secrets")]
    token: Secret<String>,
}

#[tokio::test]
async fn secrets_come_from_files_into_secrecy_types() {
    use secrecy::ExposeSecret;
    std::fs::create_dir_all(SECRETS_DIR).unwrap();
    std::fs::write(format!("{SECRETS_DIR}/token"), "s3cr3t-from-file\n").unwrap();
    std::fs::write(format!("{SECRETS_DIR}/port"), "6380").unwrap();
    let guard = FileSecretsSpec {}.enter().await.unwrap();
    assert_eq!(guard.token.expose_secret(), "s3cr3t-from-file", "one trailing line break is dropped");
    assert_eq!(*guard.port.expose_secret(), 6380);
    assert_eq!(guard.name.expose(), "dual-mode");
    assert!(!format!("{:?}", guard.token).contains("s3cr3t"));
    guard.exit().await.unwrap();

    let ctx = dual_mode::Context::new()
        .with_keyed("/tmp/dual-mode-guard-secrets/absent", secrecy::SecretString::from("lent-by-the-context"));
    let guard = AbsentFileSecretParts::from_context(AbsentFileSecretSpec {}, &ctx).enter().await.unwrap();
    assert_eq!(guard.token.expose_secret(), "lent-by-the-context");
    guard.exit().await.unwrap();
}

#[tokio::test]
async fn a_missing_or_unreadable_secret_file_is_a_typed_error_naming_field_and_file() {
    let Err(err) = AbsentFileSecretSpec {}.enter().await else { panic!("the file does not exist") };
    assert_eq!(err.site().field, "token");
    assert!(matches!(
        err.kind(),
        EnterErrorKind::SecretMissing(SecretSource::File("/tmp/dual-mode-guard-secrets/absent"))
    ));
    assert_eq!(
        err.to_string(),
        "cannot enter `AbsentFileSecret`: secret `AbsentFileSecret.token` (secrecy::SecretString) is missing: file `/tmp/dual-mode-guard-secrets/absent` does not exist"
    );

    std::fs::create_dir_all(SECRETS_DIR).unwrap();
    let Err(err) = DirectoryAsSecretSpec {}.enter().await else { panic!("a directory is not a secret file") };
    assert!(matches!(err.kind(), EnterErrorKind::SecretInvalid(SecretSource::File(_), _)), "{err}");
    assert!(chain(&err).starts_with(
        "cannot enter `DirectoryAsSecret`: secret `DirectoryAsSecret.token` (Secret<String>) from file `/tmp/dual-mode-guard-secrets` is invalid: "
    ));
}
