//! Compile tests. Each `tests/ui/*.rs` is one misuse of `#[derive(DualMode)]` and its `.stderr`
//! the diagnostic a user sees: regenerate with `TRYBUILD=overwrite` and read each. Each
//! `tests/ui/pass/*.rs` is a user crate's use that must compile and run.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}

/// Words that name the derive's internals: none may reach a user's diagnostics.
const INTERNALS: &[&str] = &["private", "__State", "StateHas", "serde_core", "__scope", "__parts", "Scope::"];

/// Cases whose first error is ours but whose notes or follow-ups come from code we do not
/// write: serde's derive on a spec field that is not serializable (rustc checks serde's impls
/// whatever we report first), and the user's own `#[derive(Serialize)]` around a `Secret`.
const FOLLOW_UPS: &[&str] = &["spec-field-not-serialize", "secret-in-serialize"];

/// The most errors one case may give: a mistake is reported once, not once per generated item.
const MAX_ERRORS: usize = 5;

#[test]
fn no_case_gives_more_than_a_few_errors() {
    let mut noisy = Vec::new();
    for entry in std::fs::read_dir("tests/ui").expect("tests/ui") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "stderr") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let errors = text.lines().filter(|l| l.starts_with("error")).count();
            if errors > MAX_ERRORS {
                noisy.push(format!("{}: {errors} errors", path.display()));
            }
        }
    }
    assert!(noisy.is_empty(), "cases with more than {MAX_ERRORS} errors:\n{}", noisy.join("\n"));
}

#[test]
fn no_diagnostic_names_an_internal() {
    let mut leaks = Vec::new();
    for entry in std::fs::read_dir("tests/ui").expect("tests/ui") {
        let path = entry.expect("entry").path();
        let case = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "stderr") && !FOLLOW_UPS.contains(&case) {
            let text = std::fs::read_to_string(&path).expect("readable");
            leaks.extend(INTERNALS.iter().filter(|w| text.contains(*w)).map(|w| format!("{}: {w}", path.display())));
        }
    }
    assert!(leaks.is_empty(), "diagnostics that name internals:\n{}", leaks.join("\n"));
}
