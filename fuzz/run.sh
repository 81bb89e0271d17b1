#!/usr/bin/env bash
# Fuzzes every target in turn, one process at a time (ASan takes ~0.5 GB).
# Usage: fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]   (default 45, all)
# Prints the executions per target; exits 1 if any target crashed, after
# running the others. Crash inputs and the libFuzzer log of a crashed run
# land in fuzz/artifacts/TARGET/.
set -uo pipefail

seconds="${1:-45}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET [TARGET...]]" >&2; exit 2 ;;
esac
shift $(($# > 0 ? 1 : 0))

cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi
cargo +nightly fuzz build || exit 1

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
if [ $# -eq 0 ]; then
    set -- $(ls fuzz/seeds)
fi
for target in "$@"; do
    seeds="fuzz/seeds/$target/"
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    cp -n "$seeds"* "$corpus"/ 2>/dev/null
    log="$logs/$target.log"
    cargo +nightly fuzz run "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 >"$log" 2>&1
    status=$?
    # libFuzzer ends with "Done N runs in S second(s)", or "#N DONE ..."
    # with -print_final_stats; on a crash the last "#N" status line is it.
    runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
    if [ -z "$runs" ]; then
        runs="$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')"
    fi
    # `cargo fuzz run` rebuilds first if src/ changed since the build above;
    # a build that fails then is not a crash, so say which it was.
    if [ "$status" -eq 0 ]; then
        printf '%-16s %12s runs\n' "$target" "${runs:-?}"
    elif ! grep -q '^INFO: Seed:' "$log"; then
        printf '%-16s %12s       BUILD FAILED (exit %s)\n' "$target" - "$status"
        grep -E '^error' "$log" | head -n 5 | sed 's/^/    /'
        failed+=("$target")
    else
        printf '%-16s %12s runs  CRASH (exit %s)\n' "$target" "${runs:-?}" "$status"
        grep -E 'panicked at|^SUMMARY|Test unit written to' "$log" | sed 's/^/    /'
        mkdir -p "fuzz/artifacts/$target"
        cp "$log" "fuzz/artifacts/$target/run.log"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
