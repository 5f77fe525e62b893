# Helpers for the lab: containers as lab machines, bounded waits, a writer
# that records every acknowledged write. Sourced by tests/lab/run.
# shellcheck shell=bash

LAB_NET=paxos-lab
LAB_SUBNET=172.30.99.0/24
LAB_PREFIX=172.30.99
LAB_LABEL=paxos-lab=1
SUMMARY=()

now_ms() { date +%s%3N; }
say() { printf 'lab: %s\n' "$*" >&2; }
fail() { printf 'lab: FAIL: %s\n' "$*" >&2; exit 1; }
record() { SUMMARY+=("$*"); printf 'lab: %s\n' "$*" >&2; }

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s, fails after SECONDS.
wait_until() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out after ${limit} s waiting for $what"
        sleep 0.2
    done
}

ip_of() { echo "$LAB_PREFIX.$((10 + ${1#node}))"; }

start_host() {
    local name=$1
    docker run -d --name "paxos-lab-$name" --hostname "$name" --label "$LAB_LABEL" \
        --network "$LAB_NET" --ip "$(ip_of "$name")" \
        --stop-signal SIGRTMIN+3 -t -e container=docker --tmpfs /run --tmpfs /run/lock \
        -v /sys/fs/cgroup:/sys/fs/cgroup:ro --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
        "$IMAGE" /lib/systemd/systemd >/dev/null
    docker exec -i "paxos-lab-$name" sh -c "mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys" <"$WORK/ansible_key.pub"
}

host_running() {
    local state
    state=$(docker exec "paxos-lab-$1" systemctl is-system-running 2>/dev/null) || true
    [[ $state == running || $state == degraded ]] && docker exec "paxos-lab-$1" test -s /etc/ssh/ssh_host_ed25519_key.pub
}

# Pins the sshd host key read from inside the container (no trust on first use).
pin_sshd_key() {
    local name=$1 key
    key=$(docker exec "paxos-lab-$name" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)
    grep -v "^$(ip_of "$name") " "$WORK/ssh_known_hosts" 2>/dev/null >"$WORK/kh.tmp" || true
    echo "$(ip_of "$name") $key" >>"$WORK/kh.tmp"
    mv "$WORK/kh.tmp" "$WORK/ssh_known_hosts"
}

sshd_up() { timeout 5 bash -c "</dev/tcp/$(ip_of "$1")/22"; }

teardown() {
    local ids
    [[ -n ${WRITER_PID:-} ]] && kill "$WRITER_PID" 2>/dev/null
    ids=$(docker ps -aq --filter "label=$LAB_LABEL")
    [[ -n $ids ]] && docker rm -f $ids >/dev/null 2>&1
    docker network rm "$LAB_NET" >/dev/null 2>&1 || true
}

paxos_cli() { "$PAXOS" --cluster "$WORK/lab.json" -i "$WORK/keys/operator" "$@"; }

# The cluster's status rows as JSON (only nodes that answered).
# Every node up, each with a clock estimate for both of its peers.
clocks_estimated() {
    status_json | python3 -c 'import json, sys; rows = json.load(sys.stdin); sys.exit(0 if len(rows) == 3 and all(r["up"] and len(r["status"].get("clock", [])) == 2 for r in rows) else 1)'
}
status_json() { timeout 20 "$PAXOS" --cluster "$WORK/lab.json" -i "$WORK/keys/operator" status --json 2>/dev/null; }

leader_id() {
    status_json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["up"]]
leaders = {r["status"]["id"] for r in rows if r["status"]["role"] == "leader"}
print(leaders.pop() if len(leaders) == 1 else "")'
}

has_leader_other_than() { local l; l=$(leader_id); [[ -n $l && $l != "$1" ]]; }
has_leader() { [[ -n $(leader_id) ]]; }

# node_caught_up ID: up, led, and within a few slots of the newest commit.
node_caught_up() {
    status_json | python3 -c '
import json, sys
me = int(sys.argv[1])
rows = {r["id"]: r for r in json.load(sys.stdin)}
r = rows.get(me)
sys.exit(0 if r and r["up"] and r["lag"] <= 10 and r["status"]["leader"] is not None else 1)' "$1"
}

# The writer: puts w<N> = v<N> one after another with the real OpenSSH
# client (the generated ssh-config, ConnectTimeout=1), logging "ms ok N" or
# "ms fail N" per attempt. It stays on the node that answered last and moves
# to the next one on a failure, so a pause measures the cluster, not a
# client's connect timeout. A failed N is retried with the same request id,
# so it is applied at most once; only acknowledged Ns count.
start_writer() {
    local log=$1
    : >"$log"
    (
        mapfile -t hosts < <(sed -n 's/^Host //p' "$WORK/ssh_config")
        n=1 at=0
        client=$((RANDOM * 32768 + RANDOM + 1))
        while [[ ! -e $WORK/stop-writer ]]; do
            if timeout 10 ssh -F "$WORK/ssh_config" -o BatchMode=yes -o ConnectTimeout=1 "${hosts[at]}" \
                -s paxos put "--request=$client:$n" "w$n" "v$n" >/dev/null 2>&1; then
                echo "$(now_ms) ok $n" >>"$log"
                n=$((n + 1))
            else
                echo "$(now_ms) fail $n" >>"$log"
                at=$(((at + 1) % ${#hosts[@]}))
            fi
        done
    ) &
    WRITER_PID=$!
}

stop_writer() {
    touch "$WORK/stop-writer"
    wait "$WRITER_PID" 2>/dev/null || true
    rm -f "$WORK/stop-writer"
    WRITER_PID=
}

# acked_count LOG
acked_count() { grep -c ' ok ' "$1" || true; }

# Longest gap in ms between consecutive acknowledged writes in LOG, from MS on.
longest_gap() {
    awk -v from="${2:-0}" '$2 == "ok" && $1 >= from { if (prev) { g = $1 - prev; if (g > max) max = g } prev = $1 } END { print max + 0 }' "$1"
}

# Waits until the writer has acknowledged a write after MS.
write_acked_after() { awk -v from="$2" '$2 == "ok" && $1 > from { found = 1 } END { exit !found }' "$1"; }

# Every acknowledged write of LOG reads back with its value: linearizable
# gets through one console session of the real OpenSSH client on node HOST.
check_acked() {
    local log=$1 host=${2:-node1} result
    awk '$2 == "ok" { print "get w" $3 " --json" }' "$log" >"$WORK/gets.txt"
    result=$(timeout 120 ssh -F "$WORK/ssh_config" -o BatchMode=yes "$host" -s paxos console --json <"$WORK/gets.txt" \
        | python3 -c '
import json, sys
wanted = [l.split()[1] for l in open(sys.argv[1])]
answers = [json.loads(l) for l in sys.stdin if l.strip()]
bad = [k for k, a in zip(wanted, answers) if a.get("value") != "v" + k[1:]]
bad += wanted[len(answers):]
print(len(wanted) - len(bad), len(bad), " ".join(bad[:10]))' "$WORK/gets.txt")
    read -r good bad sample <<<"$result"
    [[ ${bad:-x} == 0 ]] || fail "acknowledged writes missing or wrong on $host: ${bad:-?} (e.g. ${sample:-none}); ${good:-0} read back"
    echo "$good"
}
