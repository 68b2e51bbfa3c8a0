//! Helpers for the deployment checks in `tests/`: the tools `hack/tools.sh` provisions, named
//! by environment variables that `hack/test.sh` exports. A missing tool fails the test with
//! the fix, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of tool `var` (e.g. `HELM`), from the environment.
pub fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run these tests with hack/test.sh, or `eval \"$(hack/tools.sh)\"` first")
    })
}

/// Runs `program` with `args` in the repository root and returns its output.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Like [`run`], panicking with stdout and stderr unless it succeeds.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The project's image under test, from `FETCH_E2E_IMAGE`. Panics with the fix when unset.
pub fn e2e_image() -> String {
    std::env::var("FETCH_E2E_IMAGE").unwrap_or_else(|_| {
        panic!(
            "FETCH_E2E_IMAGE is not set: build the image and name it, e.g. \
             `export FETCH_E2E_IMAGE=\"$(hack/images.sh project)\"` (hack/e2e.sh does both)"
        )
    })
}

/// A file of the shared data set next to the repository (`../shared/data/NAME`), absolute.
/// Panics with the fix when it is missing.
pub fn shared_data(name: &str) -> PathBuf {
    let path = repo().join("../shared/data").join(name);
    path.canonicalize().unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): the shared data set lives in ../shared/data next to the repository",
            path.display()
        )
    })
}

/// Runs `docker` with `args` (in the repository root), panicking with its output unless it
/// succeeds; returns stdout.
pub fn docker(args: &[&str]) -> String {
    run_ok("docker", args)
}
