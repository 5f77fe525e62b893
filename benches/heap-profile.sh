#!/usr/bin/env bash
# A heap profile of the leader under the 64-client write load of
# benches/vs-etcd.sh: a release build with the `dhat-heap` feature (dhat as
# the global allocator, line tables for the frames), a 3-node `paxos up`
# cluster whose nodes each write a dhat profile when they stop, the load
# (`paxos bench`, 64 clients, 256-byte values, 10,000 keys, 2 s warm-up),
# then a clean stop.
#
#   benches/heap-profile.sh [OUT_DIR]     default benches/results/heap-DATE
#   WRITES=N benches/heap-profile.sh      measure N writes (default 110000)
#   WRITES=0 benches/heap-profile.sh      measure 10 s instead
#
# OUT_DIR gets every node's profile (nodeN-dhat.json.gz: gunzip one and
# open it in dhat's dh_view.html), the bench's JSON, and top.txt: every node's
# VmRSS/VmHWM at the end of the load, then benches/dhat_top.py's summary
# (total and peak heap, the bytes live at the peak (t-gmax), at exit (t-end)
# and allocated, by group and by allocation site), which can be rerun on
# a committed profile: python3 benches/dhat_top.py OUT_DIR/node1-dhat.json.gz
#
# dhat takes a lock and a backtrace on every allocation: the cluster runs
# some 50 times slower than the plain build (under 200 writes/s here), and
# what holds memory grows with the writes applied (one client session per
# write up to 100,000, a snapshot every 10,000 slots), so 10 s under dhat
# would profile a nearly empty node. The load is therefore a count of
# writes, by default about what the plain build applies in the 2 s + 10 s of
# vs-etcd.sh's 64-client run (85-100k measured plus the warm-up). The RSS
# figures include dhat's own bookkeeping: an upper bound for the plain build.
#
# Builds into target/dhat/ (or $DHAT_TARGET), so target/release stays as
# cargo builds it, and stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-$ROOT/benches/results/heap-$(date -u +%Y-%m-%dT%H%MZ)}
CLIENTS=64 DURATION=10 WARMUP=2 BASE_PORT=27651 WRITES=${WRITES:-110000}
[[ $WRITES =~ ^[0-9]+$ ]] || { printf 'heap-profile: WRITES must be a number of writes (0: measure %s s)\n' "$DURATION" >&2; exit 2; }
if ((WRITES > 0)); then
    LOAD=(--count "$WRITES" --time-limit 3600) LOAD_TEXT="$WRITES writes measured"
else
    LOAD=(--duration "$DURATION") LOAD_TEXT="$DURATION s measured"
fi
say() { printf 'heap-profile: %s\n' "$*" >&2; }
command -v python3 >/dev/null || { say "needs python3"; exit 1; }
say "building the dhat binary (release, feature dhat-heap, line tables)"
DHAT_TARGET=${DHAT_TARGET:-$ROOT/target/dhat}
CARGO_TARGET_DIR=$DHAT_TARGET CARGO_PROFILE_RELEASE_DEBUG=limited \
    cargo build -q --release --features dhat-heap
PAXOS=$DHAT_TARGET/release/paxos
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/paxos-heap.XXXXXX)
UP_PID=
# SIGINT to `paxos up`, which SIGTERMs its nodes and waits for them; each
# node writes its profile as it exits, which takes a while (symbols).
stop_cluster() {
    [[ -n $UP_PID ]] || return 0
    kill -INT "$UP_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 600))
    while kill -0 "$UP_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || { say "paxos up (pid $UP_PID) did not stop in 600 s; killing it"; kill -KILL "$UP_PID"; break; }
        sleep 0.5
    done
    wait "$UP_PID" 2>/dev/null || true
    UP_PID=
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
# `{pid}` is replaced by each process's id (src/main.rs); `paxos up` passes
# the variable on to the nodes it starts, and writes a profile of its own.
PAXOS_DHAT_FILE="$WORK/dhat-{pid}.json" "$PAXOS" up --base-port "$BASE_PORT" --data "$WORK/data" \
    --keys "$WORK/keys" --hosts "$WORK/hosts.json" >"$WORK/up.log" 2>&1 &
UP_PID=$!
deadline=$((SECONDS + 120))
until grep -q "is up" "$WORK/up.log"; do
    kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; say "paxos up exited"; exit 1; }
    ((SECONDS < deadline)) || { say "paxos up did not come up in 120 s"; exit 1; }
    sleep 0.2
done
cli() { "$PAXOS" --cluster "$WORK/hosts.json" -i "$WORK/keys/operator" "$@"; }
cli status --json >"$WORK/status-before.json"
leader_of() { python3 -c 'import json, sys; print([r["status"]["pid"] for r in json.load(open(sys.argv[1])) if r["up"] and r["status"]["role"] == "leader"][0])' "$1"; }
leader_pid=$(leader_of "$WORK/status-before.json")
say "leader pid $leader_pid; $CLIENTS clients, ${WARMUP} s warm-up, $LOAD_TEXT"
cli bench --json --clients "$CLIENTS" "${LOAD[@]}" --warmup "$WARMUP" --value-size 256 --keys 10000 \
    >"$OUT/bench.json" || say "paxos bench exited with status $? (failed commands: see errors in bench.json)"
# The nodes' memory at the end of the load, before anything stops.
python3 - "$WORK/status-before.json" >"$WORK/rss.txt" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    if not r["up"]:
        continue
    s = r["status"]
    f = {}
    for line in open(f"/proc/{s['pid']}/status"):
        k, _, v = line.partition(":")
        f[k] = v.strip()
    print(f"  node{s['id']} pid {s['pid']} ({s['role']}): VmRSS {f['VmRSS']}, VmHWM {f['VmHWM']}")
PY
cli status --json >"$WORK/status-after.json"
leader_after=$(leader_of "$WORK/status-after.json")
leader_note="the leader throughout the load"
if [[ $leader_after != "$leader_pid" ]]; then
    leader_note="the leader at the end of the load; pid $leader_pid led at its start"
    say "the leader changed during the load (pid $leader_pid, then $leader_after)"
fi
say "stopping the cluster; each node writes its profile"
stop_cluster
mapfile -t NODES < <(python3 -c 'import json, sys; [print(r["status"]["id"], r["status"]["pid"]) for r in json.load(open(sys.argv[1])) if r["up"]]' "$WORK/status-before.json")
for node in "${NODES[@]}"; do
    read -r id pid <<<"$node"
    [[ -s $WORK/dhat-$pid.json ]] || { say "no profile from node$id (pid $pid); see $WORK"; trap - EXIT; exit 1; }
    gzip -9c "$WORK/dhat-$pid.json" >"$OUT/node$id-dhat.json.gz"
    if [[ $pid == "$leader_after" ]]; then leader_id=$id; fi
done
[[ -n ${leader_id:-} ]] || { say "the leader (pid $leader_after) was not up at the start"; exit 1; }
{
    echo "paxos heap profile (dhat) of the leader, $CLIENTS clients writing 256-byte values over 10,000 keys,"
    echo "${WARMUP} s warm-up + $LOAD_TEXT, 3 nodes on loopback (paxos up), release build with --features dhat-heap"
    echo "date: $(date -u +%FT%TZ); machine: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "load average before the run: $loadavg_before (a shared machine: other work may have been running)"
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); w = d["writes"]
print("bench: %d writes measured in %.0f s, %.0f writes/s under dhat; errors: %d" % (w["ops"], d["measured_secs"], w["ops_per_sec"], d["errors"]["count"]))' "$OUT/bench.json"
    echo
    echo "RSS of every node at the end of the load (dhat build: includes dhat's own bookkeeping):"
    cat "$WORK/rss.txt"
    echo
    for node in "${NODES[@]}"; do
        read -r id pid <<<"$node"
        [[ $id == "$leader_id" ]] && continue
        echo "node$id:"
        python3 benches/dhat_top.py --totals "$WORK/dhat-$pid.json"
    done
    echo
    echo "node$leader_id, $leader_note:"
    python3 benches/dhat_top.py "$WORK/dhat-$leader_after.json"
} | tee "$OUT/top.txt"
say "written: $OUT"
