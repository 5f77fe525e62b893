#!/usr/bin/env bash
# Leader stability under load: no election may start while the leader is
# healthy, however busy the machine.
#
#   benches/steady-leader.sh [--minutes M] [--busy-disk]
#
# A fresh 3-node `paxos up` cluster on 127.0.0.1 (release build, default
# timing) takes the 64-client write load of benches/vs-etcd.sh (256-byte
# values, 10,000 keys, clients on every node) for M minutes (default 10).
# With --busy-disk, another process keeps the same disk busy all along with
# 4 KiB O_DSYNC writes (one fsync each). Afterwards it prints every node's
# ballot and leader, before and after, and how many nodes saw a new ballot
# (a leader change needs one; must be 0: it exits 1 otherwise). The figures and the bench's
# JSON go to benches/results/steady-leader-DATE/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

MINUTES=10 BUSY=
usage() { echo "usage: benches/steady-leader.sh [--minutes M] [--busy-disk]" >&2; exit 2; }
while (($#)); do
    case $1 in
        --minutes) (($# >= 2)) || usage; MINUTES=$2; shift 2 ;;
        --busy-disk) BUSY=1; shift ;;
        *) usage ;;
    esac
done
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || { echo "steady-leader: --minutes takes a whole number of minutes" >&2; exit 2; }
say() { printf 'steady-leader: %s\n' "$*" >&2; }

say "building paxos (release)"
cargo build -q --release
PAXOS=$ROOT/target/release/paxos
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
OUT=$ROOT/benches/results/steady-leader-$STAMP${BUSY:+-busy-disk}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/steady-leader.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status() {
    "$PAXOS" --cluster "$WORK/hosts.json" -i "$WORK/keys/operator" status --json
}

"$PAXOS" up --base-port 27601 --data "$WORK/data" --keys "$WORK/keys" --hosts "$WORK/hosts.json" \
    >"$WORK/up.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 60))
until grep -q "is up" "$WORK/up.log" 2>/dev/null; do
    ((SECONDS < deadline)) || { say "timed out waiting for paxos up"; cat "$WORK/up.log" >&2; exit 1; }
    sleep 0.2
done
status >"$OUT/status-before.json"

if [[ -n $BUSY ]]; then
    # Bounded: it stops by itself after the run's length plus a minute.
    (
        end=$((SECONDS + MINUTES * 60 + 60))
        while ((SECONDS < end)); do
            dd if=/dev/zero of="$WORK/busy" bs=4k count=256 oflag=dsync status=none
        done
    ) &
    PIDS+=($!)
    say "disk kept busy by pid $!"
fi

say "64 clients writing for $MINUTES minutes"
bench_status=0
"$PAXOS" --cluster "$WORK/hosts.json" -i "$WORK/keys/operator" bench --json --clients 64 \
    --duration $((MINUTES * 60)) --warmup 2 --value-size 256 --keys 10000 >"$OUT/bench.json" || bench_status=$?
# paxos bench exits 1 when some command failed (counted in its JSON).
((bench_status <= 1)) || { say "paxos bench failed (exit $bench_status)"; exit 1; }
status >"$OUT/status-after.json"

python3 - "$OUT" "$MINUTES" "${BUSY:-}" <<'EOF'
import json, os, platform, sys
out, minutes, busy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(name):
    with open(os.path.join(out, name)) as f:
        return {r["id"]: r["status"] for r in json.load(f) if r["up"]}
before, after = load("status-before.json"), load("status-after.json")
bench = json.load(open(os.path.join(out, "bench.json")))
ballot = lambda s: (s["ballot"]["round"], s["ballot"]["node"])
# A leader change needs a higher ballot: any node whose ballot moved saw one.
changes = sum(ballot(after[i]) != ballot(before[i]) for i in after if i in before)
m = bench["machine"]
lines = [
    f"{bench['date']}: {m['uname']}, {m['cpus']} x {m['cpu_model']}",
    f"load: 64 clients for {minutes} min, disk {'busy (4 KiB O_DSYNC writes alongside)' if busy else 'idle'}",
    f"writes/s {bench['writes']['ops_per_sec']:.0f}, p99 {bench['writes']['latency']['p99_us'] / 1000:.1f} ms, "
    f"max {bench['writes']['latency']['max_us'] / 1000:.1f} ms, errors {bench['errors']['count']}",
]
for i in sorted(after):
    b, a = before.get(i, {}), after[i]
    lines.append(f"node {i}: ballot {b.get('ballot')} -> {a['ballot']}, leader {b.get('leader')} -> {a['leader']}, "
                 f"commit index {b.get('commit_index')} -> {a['commit_index']}")
lines.append(f"nodes that saw a new ballot (a leader change): {changes}")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.txt"), "w").write(text)
print(text, end="")
sys.exit(1 if changes or len(after) != 3 else 0)
EOF
