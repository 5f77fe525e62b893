#!/usr/bin/env bash
# A CPU profile of the leader under the 64-client write (or read) load of
# benches/vs-etcd.sh: `perf record` (software cpu-clock sampling, so it works
# where hardware counters are not exposed) on a release build with frame
# pointers and line tables, folded and drawn as a flame graph by inferno.
#
#   benches/profile.sh [OUT_DIR]     default benches/results/profile-DATE
#   READS=100 benches/profile.sh     the read load instead (linearizable
#                                    reads, as vs-etcd.sh's reads figure)
#
# Builds into target-prof/ (or $PROF_TARGET; not target/, whose release
# binary stays as cargo builds it), installs inferno with cargo when
# missing, and stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-$ROOT/benches/results/profile-$(date -u +%Y-%m-%dT%H%MZ)}
CLIENTS=64 DURATION=10 WARMUP=2 READS=${READS:-0}
[[ $READS =~ ^([0-9]|[1-9][0-9]|100)$ ]] || { echo "profile: READS is a percentage, not $READS" >&2; exit 2; }
LOAD=$([[ $READS == 0 ]] && echo "writing 256-byte values" || echo "$READS% linearizable reads")
have() { command -v "$1" >/dev/null 2>&1; }
say() { printf 'profile: %s\n' "$*" >&2; }
have perf || { say "needs perf (apt-get install linux-perf)"; exit 1; }
have inferno-flamegraph || cargo install --locked inferno
say "building the profiling binary (release, frame pointers, line tables)"
PROF_TARGET=${PROF_TARGET:-$ROOT/target-prof}
CARGO_TARGET_DIR=$PROF_TARGET CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    RUSTFLAGS="-C force-frame-pointers=yes" cargo build -q --release
PAXOS=$PROF_TARGET/release/paxos
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/paxos-profile.XXXXXX)
UP_PID=
cleanup() {
    [[ -n $UP_PID ]] && kill -INT "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PAXOS" up --base-port 27601 --data "$WORK/data" --keys "$WORK/keys" --hosts "$WORK/hosts.json" >"$WORK/up.log" 2>&1 &
UP_PID=$!
deadline=$((SECONDS + 60))
until grep -q "is up" "$WORK/up.log"; do
    ((SECONDS < deadline)) || { say "paxos up did not come up"; exit 1; }
    sleep 0.2
done
cli() { "$PAXOS" --cluster "$WORK/hosts.json" -i "$WORK/keys/operator" "$@"; }
leader_pid=$(cli status --json | python3 -c 'import json, sys; print([r["status"]["pid"] for r in json.load(sys.stdin) if r["up"] and r["status"]["role"] == "leader"][0])')
say "leader pid $leader_pid; $CLIENTS clients, ${WARMUP} s warm-up, ${DURATION} s profiled"
cli bench --json --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --value-size 256 --keys 10000 \
    --reads "$READS" >"$OUT/bench.json" &
bench_pid=$!
sleep "$WARMUP"
perf record -F 499 -g -e cpu-clock -p "$leader_pid" -o "$WORK/perf.data" -- sleep "$DURATION" 2>"$WORK/perf.log"
wait "$bench_pid"
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/leader-cpu.folded"
inferno-flamegraph --title "paxos leader, $CLIENTS clients, $LOAD ($(date -u +%F))" \
    <"$OUT/leader-cpu.folded" >"$OUT/leader-cpu.svg"
python3 - "$OUT/leader-cpu.folded" <<'PY' | tee "$OUT/top.txt"
import collections, sys
total, own = 0, collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rpartition(" ")
    n = int(n); total += n
    frames = stack.split(";")
    own[frames[-1]] += n
print(f"{total / 1e9:.2f} s of the leader's CPU time sampled (cpu-clock); functions by their own share:")
for name, n in own.most_common(25):
    print(f"{100 * n / total:5.1f}%  {name[:150]}")
PY
gzip -9f "$OUT/leader-cpu.folded" # the folded stacks, for inferno-diff-folded against a later profile
say "flame graph: $OUT/leader-cpu.svg"
