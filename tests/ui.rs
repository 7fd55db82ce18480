//! Compile-fail tests: each `tests/ui/*.rs` is one misuse of `#[derive(DualMode)]`, and its
//! `.stderr` is the diagnostic a user sees. Regenerate with `TRYBUILD=overwrite` and read each.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
