//! Arbitrary bytes through the processing core: exactly one of output or dead letter, the
//! output re-cleans to itself, nothing panics. The rules live in `fetch_testing::fuzz`, shared
//! with the corpus replay test (`consumer/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fetch_testing::fuzz::check_processing(data);
});
