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
fn test_user_crate(name: &str, tests: usize) {
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
        .env_remove("GREETER_TOKEN")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "user crate `{name}`'s tests failed ({}):\n{stdout}\n{stderr}", out.status);
    let passed = format!("test result: ok. {tests} passed");
    assert!(stdout.contains(&passed), "user crate `{name}` ran:\n{stdout}\n{stderr}");
}

/// A crate whose own tests run its jobs through `dual_mode::jobs::testing`, with no broker.
#[test]
fn jobs_tested_with_the_testing_module_alone() {
    test_user_crate("jobs-testing", 6);
}

/// A new user's crate written from the README's snippets: a service with a shared reqwest
/// client, a Redis connection and a secret, an axum handler on `#[derive(FromRef)]` state, a
/// job waited for with its typed result, another cancelled, a schedule in `Europe/Berlin`.
#[test]
fn first_hour_on_reqwest_0_13() {
    test_user_crate("first-hour-0-13", 3);
}

/// The same crate on reqwest 0.12, with the feature `reqwest-0-12`.
#[test]
fn first_hour_on_reqwest_0_12() {
    test_user_crate("first-hour-0-12", 3);
}

/// The README's `[dependencies]` block states the versions this workspace depends on.
#[test]
fn the_readme_states_the_versions_the_workspace_uses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let block = readme.split("```toml\n[dependencies]\n").nth(1).and_then(|b| b.split("```").next());
    let block = block.expect("the README opens its quick start with a `[dependencies]` block");
    // The version of a dependency as a line of `Cargo.toml` or of the block states it.
    let version_in = |text: &str, name: &str| -> Option<String> {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} = ")))?;
        let rest = line.split_once(" = ")?.1;
        let quoted = rest.split_once("version = ").map_or(rest, |(_, v)| v);
        Some(quoted.split('"').nth(1)?.to_owned())
    };
    for name in ["dual-mode", "reqwest", "redis", "axum", "tokio", "serde"] {
        let stated = version_in(block, name).unwrap_or_else(|| panic!("the README's block has no `{name}`"));
        let used = match name {
            "dual-mode" => manifest
                .lines()
                .skip_while(|l| *l != "[workspace.package]")
                .find_map(|l| l.strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_owned()),
            _ => version_in(&manifest, name),
        };
        assert_eq!(Some(stated), used, "the README's `{name}` version");
    }
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
