//! User crates: separate Cargo projects under `tests/user-crates/` that depend on dual-mode by
//! path, built and run here. Each is its own workspace, so Cargo unifies its features as it
//! would in a user's repository, not with this workspace's dev-dependencies.

use std::path::Path;
use std::process::Command;

/// Builds and runs the user crate in `tests/user-crates/<name>`; its `main` asserts what it
/// needs and exits non-zero on failure.
fn run_user_crate(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("tests/user-crates").join(name).join("Cargo.toml");
    // One target directory for every user crate: they share most of their dependencies.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-crates");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "user crate `{name}` failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("user crate: every client works"), "user crate `{name}` printed:\n{stdout}\n{stderr}");
}

/// Runs the tests of the user crate in `tests/user-crates/<name>`.
fn test_user_crate(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("tests/user-crates").join(name).join("Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-crates");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("REDIS_URL")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "user crate `{name}`'s tests failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("test result: ok"), "user crate `{name}` ran no test:\n{stdout}\n{stderr}");
}

/// A crate whose own tests run its jobs through `dual_mode::jobs::testing`, with no broker.
#[test]
fn jobs_tested_with_the_testing_module_alone() {
    test_user_crate("jobs-testing");
}

/// reqwest with its default features: its own TLS provider, next to ours.
#[test]
fn reqwest_with_default_features() {
    run_user_crate("reqwest-default");
}

/// reqwest with `default-features = false`: a client built by the user's own code must not
/// find a TLS feature without a provider because dual-mode is in the tree.
#[test]
fn reqwest_without_default_features() {
    run_user_crate("reqwest-no-default");
}
