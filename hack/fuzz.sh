#!/usr/bin/env bash
# Fuzzes the processing core with cargo-fuzz and libFuzzer: arbitrary bytes through the rules
# checked by fetch_testing::fuzz::check_processing (testing/src/fuzz.rs; docs/fuzzing.md).
#
#   hack/fuzz.sh [SECONDS]   fuzz the `process` target for SECONDS (default 60) in one process
#                            (one core), then print executions, exec/s and findings
#   hack/fuzz.sh cmin        minimize what the runs found (fuzz/work/process) together with the
#                            checked-in corpus into fuzz/corpus/process
#
# Reads fuzz/seeds/process, fuzz/corpus/process and fuzz/regressions/process; new inputs go to
# fuzz/work/process and findings to fuzz/artifacts/process (both git-ignored). Exits non-zero
# when the run found something. Needs the nightly toolchain (cargo-fuzz builds with sanitizer
# and coverage flags only nightly accepts); installs cargo-fuzz $CARGO_FUZZ_VERSION into the
# cache, so a warm run installs nothing.
#
#   FUZZ_KEEP_GOING=1   record a finding and go on (libFuzzer -fork=1 -ignore_crashes=1: one
#                       worker process at a time, so still one core) instead of stopping at it
#   FUZZ_MAX_LEN        longest input tried, bytes (default 4096)
#   FUZZ_SANITIZER      address (default) or none (faster; the core has no unsafe code)
#   FUZZ_TOOLCHAIN      the nightly toolchain to use (default nightly)
source "$(dirname "$0")/lib.sh"

mode=run seconds=60
case "${1:-}" in
  cmin) mode=cmin ;;
  "") ;;
  *[!0-9]* | 0) die "usage: hack/fuzz.sh [SECONDS | cmin] (got '$1')" ;;
  *) seconds="$1" ;;
esac
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-address}"

"$HACK_DIR/install-system-deps.sh"
need cargo rustup
rustup toolchain list | grep -q "^$toolchain" ||
  die "cargo fuzz needs the $toolchain toolchain (its sanitizer and coverage flags are nightly-only), and rustup has none: run \`rustup toolchain install $toolchain --profile minimal\`"

tools="$FETCH_CACHE_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$tools" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"

cd "$REPO_ROOT"
fuzz() { cargo "+$toolchain" fuzz "$@"; }
build_flags=(--sanitizer "$sanitizer")
# Absolute paths: cargo fuzz runs the target from the fuzz directory.
dir="$REPO_ROOT/fuzz"
seeds="$dir/seeds/process" work="$dir/work/process" artifacts="$dir/artifacts/process"
[ -n "$(ls -A "$seeds" 2>/dev/null)" ] || die "$seeds is missing or empty: the seed corpus is checked in"
mkdir -p "$work" "$artifacts"

if [ "$mode" = cmin ]; then
  # cmin keeps a small set of inputs with the same coverage, in place; minimize a merged copy
  # and replace the checked-in corpus with it. The seeds stay as they are. A greedy set cover
  # keeps about half the files a plain merge does, for the same features.
  merged="$dir/work/cmin"
  rm -rf "$merged" && mkdir -p "$merged"
  for from in "$dir/corpus/process" "$work"; do
    [ -d "$from" ] && find "$from" -maxdepth 1 -type f -exec cp -t "$merged" {} +
  done
  before="$(find "$merged" -type f | wc -l)"
  [ "$before" -gt 0 ] || die "nothing to minimize: run hack/fuzz.sh SECONDS first"
  log "minimizing $before inputs (fuzz/corpus/process and $work)"
  fuzz cmin "${build_flags[@]}" process "$merged" -- -set_cover_merge=1
  rm -rf "$dir/corpus/process" && mkdir -p "$dir/corpus" && mv "$merged" "$dir/corpus/process"
  log "fuzz/corpus/process: $(find "$dir/corpus/process" -type f | wc -l) inputs, $(du -sh --apparent-size "$dir/corpus/process" | cut -f1)"
  exit 0
fi

corpora=("$work" "$seeds")
for from in "$dir/corpus/process" "$dir/regressions/process"; do
  [ -n "$(ls -A "$from" 2>/dev/null)" ] && corpora+=("$from")
done
libfuzzer=(-max_total_time="$seconds" -max_len="${FUZZ_MAX_LEN:-4096}" -timeout=10
  -dict="$dir/process.dict" -print_final_stats=1)
[ -n "${FUZZ_KEEP_GOING:-}" ] && libfuzzer+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)

log "building the fuzz target ($toolchain, sanitizer $sanitizer)"
fuzz build "${build_flags[@]}" process
log "fuzzing for ${seconds}s: ${corpora[*]}"
marker="$(mktemp)"
log_file="$dir/work/process.log"
started=$SECONDS
set +e
fuzz run "${build_flags[@]}" process "${corpora[@]}" -- "${libfuzzer[@]}" 2>&1 | tee "$log_file"
status=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - started))

# The last status line: "#N DONE cov: C ft: F corp: U/S exec/s: E ..." (one process) or
# "#N: cov: C ft: F corp: U exec/s: E oom/timeout/crash: ... time: T ..." (fork mode).
last="$(grep -E '^#[0-9]+:?[[:space:]]' "$log_file" | tail -n 1 || true)"
final_stat() { sed -nE "s/^stat::$1: *([0-9]+)/\\1/p" "$log_file" | tail -n 1; }
execs="$(final_stat number_of_executed_units)" rate="$(final_stat average_exec_per_sec)"
if [ -n "${FUZZ_KEEP_GOING:-}" ] || [ -z "$execs" ]; then
  # Fork mode: the workers' stats cover one job each; the parent's status line has the total.
  execs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")"
  rate="$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))"
fi
findings=()
while IFS= read -r f; do findings+=("$f"); done < <(find "$artifacts" -type f -newer "$marker" | sort)
rm -f "$marker"

echo
echo "fuzzed      ${elapsed}s, $toolchain, sanitizer $sanitizer${FUZZ_KEEP_GOING:+, fork mode (keep going)}"
echo "executions  ${execs:-?} (${rate:-?} exec/s)"
echo "last status ${last:-none}"
echo "corpus      $work: $(find "$work" -type f | wc -l) inputs ($(du -sh --apparent-size "$work" | cut -f1))"
if [ "${#findings[@]}" -gt 0 ]; then
  echo "findings    ${#findings[@]}:"
  printf '            %s\n' "${findings[@]}"
  echo "            reproduce: cargo +$toolchain fuzz run process FILE; minimize: cargo +$toolchain fuzz tmin process FILE"
  echo "            then check it in under fuzz/regressions/process/ (consumer/tests/fuzz_corpus.rs replays it)"
  exit 1
fi
echo "findings    none"
[ "$status" -eq 0 ] || die "cargo fuzz run failed (exit $status; see $log_file)"
