#!/usr/bin/env bash
# Runs fuzz targets one after another, each for the same time, one process each:
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (default: 300 seconds, every target)
# On the stable toolchain: cargo-fuzz (`cargo install cargo-fuzz`) with `--sanitizer none`
# passes only stable `-C` flags (SanitizerCoverage through `-Cpasses=sancov-module` and
# `-Cllvm-args=-sanitizer-coverage-*`, debug assertions and overflow checks on). Set
# FUZZ_SANITIZER=address to add AddressSanitizer; its `-Zsanitizer` flag is unstable, so
# that run sets RUSTC_BOOTSTRAP=1 (the stable compiler ships the ASan runtime).
# The corpus grows in tests/fuzz/corpus/TARGET (seeded from tests/fuzz/seeds/TARGET),
# crashes land in tests/fuzz/artifacts/TARGET and the full libFuzzer output in
# tests/fuzz/logs/TARGET.log. Extra libFuzzer flags can be given in FUZZ_FLAGS, and known
# findings tolerated with OXITRAFFIC_FUZZ_TOLERATE (see README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-300}
shift || true
if [ $# -eq 0 ]; then
    set -- path_normalize token_parse slots config html_escape query_decode referrer_clean \
        dates campaign forwarded authorization path_pattern ip_net
fi

sanitizer=${FUZZ_SANITIZER:-none}
fuzz=(cargo fuzz run --fuzz-dir tests/fuzz --sanitizer "$sanitizer")
if [ "$sanitizer" != none ]; then
    fuzz=(env RUSTC_BOOTSTRAP=1 "${fuzz[@]}")
fi

dir=tests/fuzz
mkdir -p "$dir/logs"
for target in "$@"; do
    mkdir -p "$dir/corpus/$target"
    corpora=("$dir/corpus/$target")
    [ -d "$dir/seeds/$target" ] && corpora+=("$dir/seeds/$target")
    flags=(-max_total_time="$seconds" -print_final_stats=1)
    [ -f "$dir/dicts/$target.dict" ] && flags+=(-dict="$dir/dicts/$target.dict")
    echo "== $target: ${seconds}s, sanitizer $sanitizer" >&2
    # No -jobs/-workers: libFuzzer then runs in this one process (with -jobs=N it would
    # fork N workers and write their output to fuzz-N.log instead).
    set +e
    # shellcheck disable=SC2086
    "${fuzz[@]}" "$target" "${corpora[@]}" -- "${flags[@]}" ${FUZZ_FLAGS:-} 2>&1 |
        tee "$dir/logs/$target.log" |
        grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done|panicked|SUMMARY' >&2
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "== $target failed ($status); see $dir/logs/$target.log and $dir/artifacts/$target" >&2
        exit "$status"
    fi
done
