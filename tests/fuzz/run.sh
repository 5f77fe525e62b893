#!/usr/bin/env bash
# Fuzz every decoder of untrusted bytes for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); all targets unless some are named.
# Targets run FUZZ_JOBS at a time (default 3: the six targets take two
# rounds, so the default run fuzzes for about 2 minutes after the build),
# each on a scratch copy of its committed seed corpus (tests/fuzz/corpus/),
# so the corpus in git stays small. Needs the nightly toolchain; cargo-fuzz
# is installed if missing. Without nightly it says so and exits 0.
# Exits non-zero when a target crashes, hangs (-timeout) or allocates past
# its bound (-rss_limit_mb, -malloc_limit_mb), printing the reproducer:
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz TARGET PATH
set -euo pipefail

ALL_TARGETS=(peer_frame ops_command wal_recovery snapshot_load snapshot_install cluster_config)
# Per-input bounds: 10 s is a hang; one allocation over 256 MB (a length
# field believed) or 2 GB resident is a failure. The largest legitimate
# allocation is the peer codec's buffer for one frame, 16 MiB.
TIMEOUT_S=10
MALLOC_LIMIT_MB=256
RSS_LIMIT_MB=2048

seconds=${1:-60}
[ $# -gt 0 ] && shift
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...] (SECONDS is a whole number of seconds per target, not $seconds)" >&2
  exit 2
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  if ! printf '%s\n' "${ALL_TARGETS[@]}" | grep -qx -- "$t"; then
    echo "unknown fuzz target $t; targets: ${ALL_TARGETS[*]}" >&2
    exit 2
  fi
done

jobs=${FUZZ_JOBS:-3}
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "FUZZ_JOBS must be a positive whole number, not $jobs" >&2
  exit 2
fi

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$fuzz_dir/../.." && pwd)
cd "$root"

if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzzing skipped: no nightly Rust toolchain (install it with: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if ! cargo fuzz build --help 2>/dev/null | grep -q -- '--fuzz-dir'; then
  echo "cargo-fuzz $(cargo fuzz --version) has no --fuzz-dir; upgrade it: cargo install cargo-fuzz --locked --force" >&2
  exit 1
fi

echo "== building fuzz targets (nightly, address sanitizer)"
cargo +nightly fuzz build --fuzz-dir tests/fuzz
bin_dir="$fuzz_dir/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/paxos-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# The storage targets fsync a scratch data directory per input: on tmpfs.
data_tmp="$scratch"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  data_tmp=$(mktemp -d /dev/shm/paxos-fuzz.XXXXXX)
  trap 'rm -rf "$scratch" "$data_tmp"' EXIT
fi


run_target() {
  local t=$1 corpus="$scratch/corpus/$t" artifacts="$fuzz_dir/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp "$fuzz_dir/corpus/$t/"* "$corpus/"
  TMPDIR="$data_tmp" "$bin_dir/$t" "$corpus" \
    -dict="$fuzz_dir/dicts/$t.dict" \
    -max_total_time="$seconds" -timeout="$TIMEOUT_S" \
    -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1
}

echo "== fuzzing ${targets[*]}: $seconds s each, $jobs at a time"
declare -A status
running=()
for t in "${targets[@]}"; do
  run_target "$t" &
  running+=("$!:$t")
  if [ ${#running[@]} -ge "$jobs" ]; then
    entry=${running[0]}
    running=("${running[@]:1}")
    if wait "${entry%%:*}"; then status[${entry#*:}]=0; else status[${entry#*:}]=$?; fi
  fi
done
for entry in "${running[@]}"; do
  if wait "${entry%%:*}"; then status[${entry#*:}]=0; else status[${entry#*:}]=$?; fi
done

failed=0
for t in "${targets[@]}"; do
  log="$scratch/$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "${status[$t]}" = 0 ]; then
    echo "ok      $t: ${runs:-?} inputs in $seconds s, no crash, hang or excess allocation"
    continue
  fi
  failed=1
  echo "FAILED  $t (exit ${status[$t]})"
  # The panic and its message, or the sanitizer's or libFuzzer's verdict.
  grep -E -A2 'panicked at' "$log" | head -3 | cut -c1-400 | sed 's/^/    /'
  grep -E '^(==[0-9]+== ?ERROR|SUMMARY)' "$log" | head -2 | sed 's/^/    /'
  repro=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
  if [ -n "$repro" ]; then
    echo "    reproducer: $repro"
    echo "    replay:     cargo +nightly fuzz run --fuzz-dir tests/fuzz $t $repro"
    echo "    minimize:   cargo +nightly fuzz tmin --fuzz-dir tests/fuzz $t $repro"
  else
    tail -20 "$log" | sed 's/^/    /'
  fi
done
exit $failed
