//! Replays the fuzz target's inputs through the same checks, without nightly or cargo-fuzz: every
//! file in `fuzz/seeds/process/` (which must exist and hold inputs, so this never passes on
//! nothing), `fuzz/corpus/process/` and `fuzz/regressions/process/` (where present) goes
//! through `fetch_testing::fuzz::check_processing`. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use fetch_testing::fuzz::check_processing;

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");

/// The files of `dir`, sorted; `None` when the directory does not exist.
fn inputs(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Some(files)
}

/// Runs every input of `dir` through the checks; reports all failures, not just the first.
fn replay(dir: &Path) -> usize {
    let files = inputs(dir).unwrap_or_default();
    let mut failed = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| check_processing(&bytes))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs break the processing rules (the panics are printed above; reproduce one \
         with `cargo +nightly fuzz run process FILE` in fuzz/):\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
    files.len()
}

#[test]
fn seeds_hold_the_rules() {
    let dir = Path::new(FUZZ_DIR).join("seeds/process");
    let files = inputs(&dir).unwrap_or_else(|| {
        panic!(
            "{} is missing: the fuzz seeds are checked in, this test replays them",
            dir.display()
        )
    });
    assert!(
        !files.is_empty(),
        "{} holds no seeds: this test would pass on nothing",
        dir.display()
    );
    assert_eq!(replay(&dir), files.len());
}

#[test]
fn corpus_holds_the_rules() {
    replay(&Path::new(FUZZ_DIR).join("corpus/process"));
}

#[test]
fn regressions_hold_the_rules() {
    replay(&Path::new(FUZZ_DIR).join("regressions/process"));
}
