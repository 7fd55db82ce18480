//! Shapes the derive accepts: generics, serde attributes, raw identifiers, `#[cfg]` fields,
//! visibility, renames, versions, keyed fields, `open`/`close` paths.

mod common;
#[path = "common/probe.rs"]
mod probe;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dual_mode::{DualMode, Parts as _, Resource, Spec};
use probe::{Probe, ProbeConfig, log};
use serde::{Deserialize, Serialize};

/// `C` is used by a shared field only: the spec drops it, `T` stays.
#[derive(DualMode)]
struct Generic<T, C: Resource<Config = ProbeConfig>> {
    value: T,
    cfg: ProbeConfig,
    #[dual_mode(shared, config = cfg)]
    client: C,
}

#[tokio::test]
async fn a_parameter_used_only_by_a_shared_field_is_not_in_the_spec() {
    // `GenericSpec<T>` has one parameter: this line does not compile if it had two.
    let spec: GenericSpec<Vec<u8>> = GenericSpec { value: vec![1, 2], cfg: ProbeConfig::named("generic") };
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        r#"{"value":[1,2],"cfg":{"name":"generic","fail_open":false,"fail_close":false,"panic_close":false,"close_delay_ms":0}}"#
    );
    let guard = spec.enter::<Probe>().await.unwrap();
    assert_eq!(guard.value, [1, 2]);
    assert_eq!(guard.client.name, "generic");
    let spec_again: GenericSpec<Vec<u8>> = guard.spec();
    assert_eq!(spec_again.value, [1, 2]);
    guard.exit().await.unwrap();
    assert_eq!(log("generic"), ["open generic", "close generic"]);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Fast,
    Careful,
}

#[derive(DualMode)]
#[dual_mode(spec = RenamedJob, parts = RenamedParts, version = 3)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attrs {
    /// Doc comments are carried to the spec.
    #[serde(rename = "m")]
    pub(crate) mode: Mode,
    #[serde(default = "default_limit", skip_serializing_if = "is_default_limit")]
    limit: u32,
    r#type: String,
    #[cfg(any())]
    never_compiled: NotEvenAType,
    #[cfg(test)]
    always: u8,
    #[dual_mode(shared, key = "primary", config = cfg_a)]
    #[cfg(test)]
    primary: Probe,
    #[dual_mode(shared, key = "replica", config = cfg_b)]
    r#replica: Probe,
    #[cfg(any())]
    #[dual_mode(shared, key = "gone", config = cfg_a)]
    gone: Probe,
    cfg_a: ProbeConfig,
    cfg_b: ProbeConfig,
    #[dual_mode(shared, open = open_counter, close = close_counter)]
    counter: Counter,
    #[dual_mode(shared, open = open_marker)]
    marker: PhantomData<u8>,
}

fn default_limit() -> u32 {
    10
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_default_limit(limit: &u32) -> bool {
    *limit == 10
}

#[derive(Clone, Debug)]
struct Counter(Arc<AtomicUsize>);

static COUNTER_CLOSES: AtomicUsize = AtomicUsize::new(0);

async fn open_counter(spec: &RenamedJob) -> Result<Counter, std::io::Error> {
    tokio::task::yield_now().await;
    Ok(Counter(Arc::new(AtomicUsize::new(spec.limit as usize))))
}

async fn close_counter(counter: Counter) -> Result<(), std::io::Error> {
    tokio::task::yield_now().await;
    COUNTER_CLOSES.fetch_add(counter.0.load(Ordering::SeqCst), Ordering::SeqCst);
    Ok(())
}

async fn open_marker(_: &RenamedJob) -> Result<PhantomData<u8>, std::convert::Infallible> {
    tokio::task::yield_now().await;
    Ok(PhantomData)
}

fn renamed() -> RenamedJob {
    RenamedJob {
        mode: Mode::Careful,
        limit: 10,
        r#type: "courier".into(),
        always: 1,
        cfg_a: ProbeConfig::named("attrs-a"),
        cfg_b: ProbeConfig::named("attrs-b"),
    }
}

#[tokio::test]
async fn serde_attributes_raw_identifiers_cfg_renames_and_open_close_paths() {
    let json = serde_json::to_value(renamed()).unwrap();
    assert_eq!(json["m"], "careful");
    assert!(json.get("limit").is_none(), "skip_serializing_if carried over");
    assert_eq!(json["type"], "courier", "raw identifiers serialize unraw");
    assert_eq!(<RenamedJob as Spec>::NAME, "RenamedJob");
    assert_eq!(<RenamedJob as Spec>::VERSION, 3);
    assert_eq!(<Attrs as DualMode>::NAME, "Attrs");
    let err =
        RenamedJob::from_json(br#"{"m":"fast","type":"x","always":1,"cfg_a":{},"cfg_b":{},"extra":1}"#).unwrap_err();
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("unknown field `extra`"), "container serde attributes carried over: {err}: {cause}");
    let back = RenamedJob::from_json(br#"{"m":"fast","type":"x","always":1,"cfg_a":{},"cfg_b":{}}"#).unwrap();
    assert_eq!((back.mode, back.limit), (Mode::Fast, 10));

    let parts = RenamedParts::from(renamed());
    let guard = parts.enter().await.unwrap();
    assert_eq!(guard.opened(), 4);
    assert_eq!(guard.r#replica.name, "attrs-b");
    assert_eq!(guard.counter.0.load(Ordering::SeqCst), 10, "open = path received the spec");
    assert_eq!(guard.r#type, "courier");
    let _ = (&guard.always, &guard.marker, &guard.primary);
    guard.exit().await.unwrap();
    assert_eq!(COUNTER_CLOSES.load(Ordering::SeqCst), 10, "close = path ran");
    assert_eq!(log("attrs"), ["open attrs-a", "open attrs-b", "close attrs-b", "close attrs-a"]);
}

#[tokio::test]
async fn keyed_fields_come_from_their_own_context_slots() {
    let ctx = dual_mode::Context::new().with_keyed("replica", Probe::new("keyed-replica")).with(Probe::new("unkeyed"));
    let parts = RenamedParts::from_context(renamed(), &ctx);
    assert_eq!(parts.r#replica.as_ref().map(|p| p.name.as_str()), Some("keyed-replica"));
    assert!(parts.primary.is_none(), "an unkeyed client does not fill a keyed field");
    let spec = parts.spec();
    assert_eq!(spec.r#type, "courier");
}

#[derive(DualMode)]
struct Empty {}

#[tokio::test]
async fn a_service_without_clients_enters_and_exits() {
    let guard = EmptySpec {}.enter().await.unwrap();
    assert_eq!(guard.opened(), 0);
    guard.exit().await.unwrap();
    assert_eq!(serde_json::to_string(&EmptySpec {}).unwrap(), "{}");
}

/// A resource from another crate's point of view: implemented outside the runtime.
#[derive(Clone)]
struct Custom;

impl Resource for Custom {
    type Config = str;
    type Error = std::fmt::Error;

    async fn open(_: &str) -> Result<Self, std::fmt::Error> {
        Err(std::fmt::Error)
    }
}

#[derive(DualMode)]
#[allow(dead_code, reason = "never entered: its open fails")]
struct UsesCustom {
    url: String,
    #[dual_mode(shared, config = url)]
    custom: Custom,
}

#[tokio::test]
async fn a_user_resource_error_is_the_enter_errors_source() {
    let err = UsesCustomSpec { url: "x".into() }.enter().await.err().unwrap();
    assert_eq!(err.site().resource, "Custom");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), std::fmt::Error.to_string());
}
