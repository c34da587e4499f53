#!/usr/bin/env bash
# A short fuzz run of every target in fuzz/ (docs/security.md, "Fuzzing"):
# build them once, then run each for FUZZ_SECONDS (default 20) starting
# from its committed seeds in fuzz/seeds/<target>/. A crash, a panic or a
# memory blow-up fails the run; libFuzzer saves the input under
# fuzz/artifacts/<target>/ and prints how to reproduce it.
#
# Stable toolchain only: `-s none` builds without a sanitizer, which is
# what needs nightly; coverage instrumentation works on stable.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# Instrumented builds share nothing with the workspace's: keep them apart.
target_dir="${CARGO_TARGET_DIR:-$PWD/fuzz/target}/fuzz"
fuzz=(cargo fuzz)
opts=(-s none --target-dir "$target_dir")

start=$(date +%s)
"${fuzz[@]}" build "${opts[@]}"
echo "fuzz: built in $(( $(date +%s) - start )) s"

summary=()
for t in $("${fuzz[@]}" list); do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  # The first directory is the working corpus (written to), the seeds are
  # only read. rss_limit_mb: an input that makes a decoder allocate
  # without bound is a failure too.
  if ! "${fuzz[@]}" run "${opts[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t/)"
    exit 1
  fi
  runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
  summary+=("$t: $runs executions in ${secs} s")
  rm -rf "$corpus" "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
echo "fuzz: all targets clean, $(( $(date +%s) - start )) s in all"
