#!/usr/bin/env bash
# Runs fuzz targets one after another, each for the same time, one process each:
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (default: 600 seconds, every target)
# The corpus grows in tests/fuzz/corpus/TARGET (seeded from tests/fuzz/seeds/TARGET),
# crashes land in tests/fuzz/artifacts/TARGET and the full libFuzzer output in
# tests/fuzz/logs/TARGET.log. Extra libFuzzer flags can be given in FUZZ_FLAGS, and known
# findings tolerated with OXITRAFFIC_FUZZ_TOLERATE (see README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-600}
shift || true
if [ $# -eq 0 ]; then
    set -- path_normalize token_parse slots config html_escape query_decode referrer_clean
fi

fuzz=tests/fuzz
mkdir -p "$fuzz/logs"
for target in "$@"; do
    mkdir -p "$fuzz/corpus/$target"
    corpora=("$fuzz/corpus/$target")
    [ -d "$fuzz/seeds/$target" ] && corpora+=("$fuzz/seeds/$target")
    flags=(-max_total_time="$seconds" -print_final_stats=1)
    [ -f "$fuzz/dicts/$target.dict" ] && flags+=(-dict="$fuzz/dicts/$target.dict")
    echo "== $target: ${seconds}s" >&2
    # No -jobs/-workers: libFuzzer then runs in this one process (with -jobs=N it would
    # fork N workers and write their output to fuzz-N.log instead).
    set +e
    # shellcheck disable=SC2086
    cargo +nightly fuzz run --fuzz-dir "$fuzz" "$target" "${corpora[@]}" -- \
        "${flags[@]}" ${FUZZ_FLAGS:-} 2>&1 | tee "$fuzz/logs/$target.log" |
        grep -E '^#[0-9]+ +(DONE|pulse)|^Done|panicked|SUMMARY' >&2
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "== $target failed ($status); see $fuzz/logs/$target.log and $fuzz/artifacts/$target" >&2
        exit "$status"
    fi
done
