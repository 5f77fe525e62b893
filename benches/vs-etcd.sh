#!/usr/bin/env bash
# paxos and etcd side by side on this machine, in one run: three members of
# each on 127.0.0.1, fsync on (both defaults), 256-byte values on 10,000
# keys, closed-loop clients spread round-robin over the members, a warm-up
# that is not counted, every configuration on a fresh cluster, the two
# systems alternating, medians over the repetitions.
#
#   benches/vs-etcd.sh            3 repetitions; clients 1 16 64 256; 10 s after 2 s
#   benches/vs-etcd.sh --quick    1 repetition; clients 1 16 64; 5 s after 1 s
#
# etcd is Debian's etcd-server (3.4), driven through its gRPC API by
# benches/etcd-bench (the etcd-client crate, built with protoc); paxos by
# `paxos bench`. Both are installed or built when missing. Prints one table
# (figure, etcd, paxos, ratio) and writes every run's JSON and the table
# under benches/results/vs-etcd-DATE/. Everything it starts is stopped at
# the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REPS=3 DURATION=10 WARMUP=2 CLIENTS="1 16 64 256"
if [[ ${1:-} == --quick ]]; then REPS=1 DURATION=5 WARMUP=1 CLIENTS="1 16 64"; fi
VALUE=256 KEYS=10000 READ_CLIENTS=64

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
    rm -rf "$WORK"
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
MEMBERS=() UP_PID=
ETCD_ENDPOINTS=http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793
start_etcd() { # start_etcd TAG
    local tag=$1 i initial=""
    for i in 1 2 3; do initial+="${initial:+,}e$i=http://127.0.0.1:2380$i"; done
    MEMBERS=()
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$WORK/etcd-$tag-$i" \
            --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
            --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
            --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "vs-$tag" \
            >"$WORK/etcd-$tag-$i.log" 2>&1 &
        MEMBERS+=($!) PIDS+=($!)
    done
    wait_for 60 "etcd to elect a leader" env ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint health
}
start_paxos() { # start_paxos TAG
    local tag=$1
    "$PAXOS" up --base-port 27501 --data "$WORK/paxos-$tag" --keys "$WORK/keys" --hosts "$WORK/hosts-$tag.json" \
        >"$WORK/paxos-$tag.log" 2>&1 &
    UP_PID=$! PIDS+=($!)
    wait_for 60 "paxos up" grep -q "is up" "$WORK/paxos-$tag.log"
    mapfile -t MEMBERS < <("$PAXOS" --cluster "$WORK/hosts-$tag.json" -i "$WORK/keys/operator" status --json \
        | python3 -c 'import json, sys; [print(r["status"]["pid"]) for r in json.load(sys.stdin) if r["up"]]')
    PIDS+=("${MEMBERS[@]}")
    [[ ${#MEMBERS[@]} == 3 ]] || { say "paxos: not three members up"; exit 1; }
}
stop_members() {
    local pid
    for pid in "${MEMBERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${MEMBERS[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
    MEMBERS=()
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

say "results in $OUT"
for rep in $(seq 1 "$REPS"); do
    if ((rep % 2)); then run_system etcd "$rep"; run_system paxos "$rep"; else run_system paxos "$rep"; run_system etcd "$rep"; fi
done

python3 "$ROOT/benches/vs_etcd_table.py" "$OUT" "$REPS" "$CLIENTS" "$READ_CLIENTS" | tee "$OUT/table.md"
