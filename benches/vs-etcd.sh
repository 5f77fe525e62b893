#!/usr/bin/env bash
# paxos and etcd side by side on this machine, in one run: three members of
# each on 127.0.0.1, fsync on (both defaults), 256-byte values on 10,000
# keys, closed-loop clients spread round-robin over the members, a warm-up
# that is not counted, every configuration on a fresh cluster, the two
# systems alternating, medians over the repetitions.
#
#   benches/vs-etcd.sh            3 repetitions; clients 1 16 64 256; 10 s after 2 s;
#                                 failover 5 times, catch-up 3 times
#   benches/vs-etcd.sh --quick    1 repetition; clients 1 16 64; 5 s after 1 s;
#                                 failover 3 times, catch-up once
#   benches/vs-etcd.sh [--quick] --only failover,catchup
#                                 only the figures named: load (writes, reads,
#                                 CPU, memory), failover, catchup
#
# Failover: one client writes in a closed loop to a follower; the leader is
# SIGKILLed 2 s in; the figure is the milliseconds from the kill to the
# first write acknowledged after it, both read on CLOCK_REALTIME (see
# benches/vs_etcd_recovery.py). Catch-up: a follower is stopped (SIGTERM),
# 64 clients make 100,000 writes through the other two, the follower is
# started again; the figure is the seconds until its applied index reaches
# the leader's. A fresh cluster for each repetition of either.
#
# etcd is Debian's etcd-server (3.4), driven through its gRPC API by
# benches/etcd-bench (the etcd-client crate, built with protoc); paxos by
# `paxos bench`. Both are installed or built when missing. Prints one table
# (figure, etcd, paxos, ratio) and writes every run's JSON and the table
# under benches/results/vs-etcd-DATE/. Everything it starts is stopped at
# the end, also on failure or Ctrl-C; the members' data and logs are
# removed unless VS_ETCD_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { echo "usage: benches/vs-etcd.sh [--quick] [--only load,failover,catchup]" >&2; exit 2; }
QUICK= ONLY=load,failover,catchup
while (($#)); do
    case $1 in
        --quick) QUICK=1; shift ;;
        --only) (($# >= 2)) || usage; ONLY=$2; shift 2 ;;
        *) usage ;;
    esac
done
for figure in ${ONLY//,/ }; do
    case $figure in load | failover | catchup) ;; *) echo "vs-etcd: --only: unknown figure $figure" >&2; usage ;; esac
done
wants() { [[ ,$ONLY, == *,$1,* ]]; }

REPS=3 DURATION=10 WARMUP=2 CLIENTS="1 16 64 256" FAILOVER_REPS=5 CATCHUP_REPS=3
if [[ -n $QUICK ]]; then REPS=1 DURATION=5 WARMUP=1 CLIENTS="1 16 64" FAILOVER_REPS=3 CATCHUP_REPS=1; fi
VALUE=256 KEYS=10000 READ_CLIENTS=64
# Failover: the kill this many seconds into the client's run, which lasts FAILOVER_RUN seconds.
FAILOVER_KILL_AT=2 FAILOVER_RUN=14
# Catch-up: writes made while the follower is down, by this many clients; how long to wait for it.
CATCHUP_WRITES=100000 CATCHUP_CLIENTS=64 CATCHUP_DEADLINE=180

have() { command -v "$1" >/dev/null 2>&1; }
say() { printf 'vs-etcd: %s\n' "$*" >&2; }
if ! have etcd || ! have protoc; then
    say "installing etcd-server and protobuf-compiler (apt)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server protobuf-compiler >/dev/null
fi
say "building paxos and etcd-bench (release)"
cargo build -q --release
cargo build -q --release --manifest-path benches/etcd-bench/Cargo.toml
PAXOS=$ROOT/target/release/paxos
ETCD_BENCH=$ROOT/benches/etcd-bench/target/release/etcd-bench

STAMP=$(date -u +%Y-%m-%dT%H%MZ)
OUT=$ROOT/benches/results/vs-etcd-$STAMP
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/vs-etcd.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # VS_ETCD_KEEP=1 keeps the members' data and logs, to look into a figure.
    if [[ -n ${VS_ETCD_KEEP:-} ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # wait_for SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { say "timed out waiting for $what"; exit 1; }
        sleep 0.2
    done
}

# --- the clusters: members' PIDs in MEMBERS -----------------------------------
# etcd member i (1-3) answers on ETCD_URLS[i-1] and runs as MEMBERS[i-1]; a
# paxos node's PID is in MEMBER_OF[id].
MEMBERS=() UP_PID=
declare -A MEMBER_OF=()
ETCD_URLS=(http://127.0.0.1:23791 http://127.0.0.1:23792 http://127.0.0.1:23793)
ETCD_ENDPOINTS=$(IFS=,; echo "${ETCD_URLS[*]}")
etcd_member() { # etcd_member TAG I: start (or start again) member I; its PID in MEMBERS[I-1]
    local tag=$1 i=$2 j initial=""
    for j in 1 2 3; do initial+="${initial:+,}e$j=http://127.0.0.1:2380$j"; done
    etcd --name "e$i" --data-dir "$WORK/etcd-$tag-$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "vs-$tag" \
        >>"$WORK/etcd-$tag-$i.log" 2>&1 &
    MEMBERS[i - 1]=$! PIDS+=($!)
    disown # no job notice when the failover kills it
}
start_etcd() { # start_etcd TAG
    local tag=$1 i
    MEMBERS=()
    for i in 1 2 3; do etcd_member "$tag" "$i"; done
    # Every member answers and all name the same leader.
    wait_for 60 "etcd to elect a leader" "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --status
}
paxos_status() { # paxos_status TAG: `paxos status --json` of the cluster
    "$PAXOS" --cluster "$WORK/hosts-$1.json" -i "$WORK/keys/operator" status --json
}
start_paxos() { # start_paxos TAG
    local tag=$1 id pid
    "$PAXOS" up --base-port 27501 --data "$WORK/paxos-$tag" --keys "$WORK/keys" --hosts "$WORK/hosts-$tag.json" \
        >"$WORK/paxos-$tag.log" 2>&1 &
    UP_PID=$! PIDS+=($!)
    wait_for 60 "paxos up" grep -q "is up" "$WORK/paxos-$tag.log"
    MEMBERS=() MEMBER_OF=()
    while read -r id pid; do
        MEMBERS+=("$pid") MEMBER_OF[$id]=$pid PIDS+=("$pid")
    done < <(paxos_status "$tag" \
        | python3 -c 'import json, sys; [print(r["id"], r["status"]["pid"]) for r in json.load(sys.stdin) if r["up"]]')
    [[ ${#MEMBERS[@]} == 3 ]] || { say "paxos: not three members up"; exit 1; }
}
# LEADER and FOLLOWER: paxos node ids, or etcd member numbers (1-3); the
# follower is the first member that is not the leader.
roles() { # roles SYSTEM TAG
    local found
    if [[ $1 == etcd ]]; then
        found=$("$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --status | python3 -c '
import json, sys
rows = json.load(sys.stdin)
leader = [i + 1 for i, r in enumerate(rows) if r["up"] and r["member_id"] == r["leader"]]
print(leader[0], min(i + 1 for i, r in enumerate(rows) if i + 1 != leader[0]))')
    else
        found=$(paxos_status "$2" | python3 -c '
import json, sys
rows = [r["status"] for r in json.load(sys.stdin) if r["up"]]
leader = [s["id"] for s in rows if s["role"] == "leader"]
print(leader[0], min(s["id"] for s in rows if s["id"] != leader[0]))')
    fi
    read -r LEADER FOLLOWER <<<"$found"
}
member_pid() { # member_pid SYSTEM MEMBER
    if [[ $1 == etcd ]]; then echo "${MEMBERS[$2 - 1]}"; else echo "${MEMBER_OF[$2]}"; fi
}
stop_members() {
    local pid
    for pid in "${MEMBERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${MEMBERS[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
    MEMBERS=() MEMBER_OF=()
    if [[ -n $UP_PID ]]; then kill -INT "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; UP_PID=; fi
}

rss_max_mb() { # the largest member's resident set, MB
    local pid kb max=0
    for pid in "${MEMBERS[@]}"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
        ((kb > max)) && max=$kb
    done
    echo $((max / 1024))
}
cpu_ticks() { # user + system clock ticks of all members
    local pid total=0
    for pid in "${MEMBERS[@]}"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

load() { # load SYSTEM TAG CLIENTS READS: one measured run, its JSON in $OUT
    local system=$1 tag=$2 clients=$3 reads=$4 file
    file="$OUT/$system-$tag-c$clients-r$reads.json"
    if [[ $system == etcd ]]; then
        "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" \
            --value-size "$VALUE" --keys "$KEYS" --reads "$reads" >"$file"
    else
        "$PAXOS" --cluster "$WORK/hosts-$tag.json" -i "$WORK/keys/operator" bench --json --clients "$clients" \
            --duration "$DURATION" --warmup "$WARMUP" --value-size "$VALUE" --keys "$KEYS" --reads "$reads" >"$file"
    fi
    echo "$file"
}

run_system() { # run_system SYSTEM REP: every configuration on fresh clusters
    local system=$1 rep=$2 c file before after writes
    for c in $CLIENTS; do
        "start_$system" "$rep-w$c"
        [[ $c == 1 ]] && { sleep 2; echo "$(rss_max_mb)" >"$OUT/$system-$rep-rss-idle"; }
        before=$(cpu_ticks)
        file=$(load "$system" "$rep-w$c" "$c" 0)
        after=$(cpu_ticks)
        writes=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["writes"]["ops"])' "$file")
        # The members' CPU covers warm-up and measurement; the writes of the
        # warm-up are not counted, so scale the measured ones to the whole run.
        python3 -c 'import sys; t, w, hz, d, u = map(float, sys.argv[1:]); w = w * (d + u) / d; print(t / hz / (w / 1000) if w else 0)' \
            "$((after - before))" "$writes" "$(getconf CLK_TCK)" "$DURATION" "$WARMUP" >"$OUT/$system-$rep-cpu-c$c"
        [[ $c == 64 ]] && echo "$(rss_max_mb)" >"$OUT/$system-$rep-rss-c64"
        say "$system rep $rep: $c client(s): $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%.0f writes/s" % d["writes"]["ops_per_sec"])' "$file")"
        stop_members
    done
    "start_$system" "$rep-r"
    file=$(load "$system" "$rep-r" "$READ_CLIENTS" 100)
    say "$system rep $rep: $READ_CLIENTS clients, reads: $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%.0f reads/s" % d["reads"]["ops_per_sec"])' "$file")"
    stop_members
}

failover_run() { # failover_run SYSTEM REP: the leader SIGKILLed under a follower's writer
    local system=$1 rep=$2 tag="$2-f" client kill_us status=0 acks bench
    acks="$OUT/$system-$rep-failover.acks" bench="$OUT/$system-$rep-failover-bench.json"
    "start_$system" "$tag"
    roles "$system" "$tag"
    # One closed-loop writer on the follower; a failed write is followed by the next at once.
    if [[ $system == etcd ]]; then
        "$ETCD_BENCH" --endpoints "${ETCD_URLS[$FOLLOWER - 1]}" --clients 1 --duration "$FAILOVER_RUN" --warmup 0 \
            --value-size "$VALUE" --keys "$KEYS" --ack-log "$acks" >"$bench" &
    else
        "$PAXOS" --cluster "$WORK/hosts-$tag.json" -i "$WORK/keys/operator" bench --json --node "$FOLLOWER" \
            --clients 1 --duration "$FAILOVER_RUN" --warmup 0 --value-size "$VALUE" --keys "$KEYS" \
            --ack-log "$acks" >"$bench" &
    fi
    client=$! PIDS+=($!)
    sleep "$FAILOVER_KILL_AT"
    # The wall clock read just before the signal, in the process that sends it.
    kill_us=$(python3 -c 'import os, sys, time; t = time.time_ns() // 1000; os.kill(int(sys.argv[1]), 9); print(t)' \
        "$(member_pid "$system" "$LEADER")")
    # paxos bench exits 1 when some command failed, as writes may during a failover.
    wait "$client" || status=$?
    ((status <= 1)) || { say "$system failover: the client failed (exit $status)"; exit 1; }
    python3 "$ROOT/benches/vs_etcd_recovery.py" failover "$acks" "$kill_us" >"$OUT/$system-$rep-failover.json"
    gzip -9 "$acks" # kept to check the figure with: vs_etcd_recovery.py failover ACKS.gz KILL_US
    say "$system failover $rep (leader $LEADER killed, writer on $FOLLOWER): $(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["error"] if d["failover_ms"] is None else "%.1f ms to the first write acknowledged after the kill" % d["failover_ms"])' \
        "$OUT/$system-$rep-failover.json")"
    stop_members
}

catchup_run() { # catchup_run SYSTEM REP: a follower stopped, writes made, the follower started again
    local system=$1 rep=$2 tag="$2-u" pid restart_us load status=0 i
    load="$OUT/$system-$rep-catchup-load.json"
    "start_$system" "$tag"
    roles "$system" "$tag"
    pid=$(member_pid "$system" "$FOLLOWER")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    if [[ $system == etcd ]]; then
        local others=()
        for i in 1 2 3; do ((i == FOLLOWER)) || others+=("${ETCD_URLS[i - 1]}"); done
        "$ETCD_BENCH" --endpoints "$(IFS=,; echo "${others[*]}")" --clients "$CATCHUP_CLIENTS" \
            --count "$CATCHUP_WRITES" --duration 300 --warmup 0 --value-size "$VALUE" --keys "$KEYS" >"$load"
    else
        local nodes=()
        for i in "${!MEMBER_OF[@]}"; do ((i == FOLLOWER)) || nodes+=(--node "$i"); done
        "$PAXOS" --cluster "$WORK/hosts-$tag.json" -i "$WORK/keys/operator" bench --json "${nodes[@]}" \
            --clients "$CATCHUP_CLIENTS" --count "$CATCHUP_WRITES" --warmup 0 --value-size "$VALUE" --keys "$KEYS" \
            >"$load" || status=$?
        ((status <= 1)) || { say "paxos catch-up: the writes failed (exit $status)"; exit 1; }
    fi
    say "$system catch-up $rep: $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%d writes (%d failed) in %.1f s while member %s was down" % (d["writes"]["ops"], d["errors"]["count"], d["measured_secs"], sys.argv[2]))' "$load" "$FOLLOWER")"
    restart_us=$(date +%s%6N)
    if [[ $system == etcd ]]; then
        etcd_member "$tag" "$FOLLOWER"
        python3 "$ROOT/benches/vs_etcd_recovery.py" catchup etcd "$restart_us" "${ETCD_URLS[$FOLLOWER - 1]}" \
            "$CATCHUP_DEADLINE" -- "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --status >"$OUT/$system-$rep-catchup.json"
    else
        # As `paxos up` started it, but a child of this script now.
        PAXOS_FAULT_FILE="$WORK/paxos-$tag/node$FOLLOWER.faults" \
            "$PAXOS" serve --config "$WORK/paxos-$tag/node$FOLLOWER.json" >>"$WORK/paxos-$tag/node$FOLLOWER.log" 2>&1 &
        PIDS+=($!)
        disown
        for i in "${!MEMBERS[@]}"; do [[ ${MEMBERS[i]} != "$pid" ]] || MEMBERS[i]=$!; done
        MEMBER_OF[$FOLLOWER]=$!
        python3 "$ROOT/benches/vs_etcd_recovery.py" catchup paxos "$restart_us" "$FOLLOWER" "$CATCHUP_DEADLINE" \
            -- "$PAXOS" --cluster "$WORK/hosts-$tag.json" -i "$WORK/keys/operator" status --json \
            >"$OUT/$system-$rep-catchup.json"
    fi
    say "$system catch-up $rep: $(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["error"] if d["seconds"] is None else "level with the leader (applied index %d) %.2f s after its restart, behind at %.2f s" % (d["leader_applied"], d["seconds"], d["after_s"]))' \
        "$OUT/$system-$rep-catchup.json")"
    stop_members
}

python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    figures "$ONLY" reps "$REPS" clients "$CLIENTS" read_clients "$READ_CLIENTS" \
    failover_reps "$FAILOVER_REPS" failover_kill_at_secs "$FAILOVER_KILL_AT" failover_run_secs "$FAILOVER_RUN" \
    catchup_reps "$CATCHUP_REPS" catchup_writes "$CATCHUP_WRITES" catchup_clients "$CATCHUP_CLIENTS" \
    value_size "$VALUE" keys "$KEYS" >"$OUT/params.json"
say "results in $OUT"
# Each figure's repetitions alternate which system goes first.
alternate() { # alternate FUNCTION REPS
    local rep
    for rep in $(seq 1 "$2"); do
        if ((rep % 2)); then "$1" etcd "$rep"; "$1" paxos "$rep"; else "$1" paxos "$rep"; "$1" etcd "$rep"; fi
    done
}
if wants load; then alternate run_system "$REPS"; fi
if wants failover; then alternate failover_run "$FAILOVER_REPS"; fi
if wants catchup; then alternate catchup_run "$CATCHUP_REPS"; fi

python3 "$ROOT/benches/vs_etcd_table.py" "$OUT" | tee "$OUT/table.md"
