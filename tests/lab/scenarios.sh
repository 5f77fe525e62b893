# Scenarios 3-6 of the lab: failover, partition, rolling restart and
# upgrade, learners. Sourced by tests/lab/run after the rollout.
# shellcheck shell=bash

# A node's status as it answers on its own loopback (works while the host is
# cut off from the network): an operator key and a one-node inventory are
# copied into the container for this.
self_status() {
    local name=$1 id=${1#node}
    if ! docker exec "paxos-lab-$name" test -e /root/self.json; then
        docker cp "$WORK/keys/operator" "paxos-lab-$name:/root/operator" >/dev/null
        python3 - "$WORK/lab.json" "$name" >"$WORK/self-$name.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
h = dict(doc["all"]["hosts"][sys.argv[2]])
h["ansible_host"] = "127.0.0.1"
v = {k: doc["all"]["vars"][k] for k in ("paxos_cluster", "paxos_port")}
print(json.dumps({"all": {"hosts": {sys.argv[2]: h}, "vars": v}}))
PY
        docker cp "$WORK/self-$name.json" "paxos-lab-$name:/root/self.json" >/dev/null
    fi
    docker exec "paxos-lab-$name" timeout 10 paxos --cluster /root/self.json -i /root/operator status --json
}

field_of_self() { self_status "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["status"][sys.argv[1]])' "$2"; }

first_node_other_than() { local n; for n in 1 2 3; do [[ $n != "$1" ]] && { echo "$n"; return; }; done; }

# sees_leader_other_than NODE OLD: NODE, asked on its own host, follows or is a leader that is not OLD.
sees_leader_other_than() { local l; l=$(field_of_self "node$1" leader) && [[ $l != None && $l != "$2" ]]; }

# === 3. failover ==============================================================
failover_once() { # failover_once HOW: "stop" (docker stop) or "kill" (systemctl kill -s KILL)
    local how=$1 leader cut writes t0 gap elected back
    leader=$(leader_id)
    [[ -n $leader ]] || fail "no leader before the failover"
    start_writer "$WORK/writes-$how.log"
    wait_until 30 "the writer's first acknowledged write" write_acked_after "$WORK/writes-$how.log" 0
    sleep 1 # let the writer run a while before the fault
    t0=$(now_ms)
    if [[ $how == stop ]]; then
        docker stop -t 10 "paxos-lab-node$leader" >/dev/null
    else
        docker exec "paxos-lab-node$leader" systemctl kill -s KILL paxos.service
    fi
    wait_until 60 "a new leader after losing node$leader" has_leader_other_than "$leader"
    elected=$(($(now_ms) - t0))
    wait_until 60 "a write acknowledged after the failover" write_acked_after "$WORK/writes-$how.log" "$t0"
    gap=$(longest_gap "$WORK/writes-$how.log" $((t0 - 5000)))
    if [[ $how == stop ]]; then
        docker start "paxos-lab-node$leader" >/dev/null
        wait_until 60 "node$leader to boot again" host_running "node$leader"
    fi
    t0=$(now_ms)
    wait_until 90 "node$leader to rejoin and catch up" node_caught_up "$leader"
    back=$(($(now_ms) - t0))
    stop_writer
    writes=$(check_acked "$WORK/writes-$how.log" "node$leader")
    record "3. failover by $how of leader node$leader: the CLI saw new leader $(leader_id) ${elected} ms after the fault began; longest write pause ${gap} ms; node$leader caught up ${back} ms after it was back; all $writes acknowledged writes read back (through node$leader)"
}

scenario_failover() {
    say "== 3. failover"
    failover_once stop
    failover_once kill
}

# === 4. partition =============================================================
scenario_partition() {
    say "== 4. partition: the leader is cut off"
    local leader commit_cut commit_later ballot_before ballot_after t0 elected gap out back
    leader=$(leader_id)
    start_writer "$WORK/writes-partition.log"
    wait_until 30 "the writer's first acknowledged write" write_acked_after "$WORK/writes-partition.log" 0
    self_status "node$leader" >/dev/null
    # A node of the majority is asked on its own host: asking every node
    # would wait out the connection timeout to the cut-off one each time.
    local witness
    witness=$(first_node_other_than "$leader")
    self_status "node$witness" >/dev/null
    t0=$(now_ms)
    docker network disconnect "$LAB_NET" "paxos-lab-node$leader"
    commit_cut=$(field_of_self "node$leader" commit_index)
    wait_until 60 "node$witness to follow a leader other than node$leader" sees_leader_other_than "$witness" "$leader"
    elected=$(($(now_ms) - t0))
    wait_until 60 "a write acknowledged by the majority" write_acked_after "$WORK/writes-partition.log" "$(now_ms)"
    # The cut-off node is asked to commit: it must not.
    local cut_rc=0
    out=$(docker exec "paxos-lab-node$leader" timeout 25 paxos --cluster /root/self.json -i /root/operator put cut-off-write lost 2>&1) \
        || cut_rc=$?
    ((cut_rc != 0)) && ! grep -q '^cut-off-write set' <<<"$out" || fail "the cut-off node acknowledged a write: $out"
    local cut_answer
    cut_answer=$(tr '\n' ' ' <<<"$out" | cut -c1-160)
    commit_later=$(field_of_self "node$leader" commit_index)
    [[ $commit_later -le $((commit_cut + 1)) ]] || fail "the cut-off node's commit index moved from $commit_cut to $commit_later"
    ballot_before=$(status_json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["up"] and x["status"]["role"]=="leader"]; print(r[0]["status"]["id"], r[0]["status"]["ballot"])')
    docker network connect --ip "$(ip_of "node$leader")" "$LAB_NET" "paxos-lab-node$leader"
    t0=$(now_ms)
    wait_until 60 "node$leader to catch up after the partition heals" node_caught_up "$leader"
    back=$(($(now_ms) - t0))
    ballot_after=$(status_json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["up"] and x["status"]["role"]=="leader"]; print(r[0]["status"]["id"], r[0]["status"]["ballot"])')
    [[ $ballot_before == "$ballot_after" ]] || fail "the healed node deposed the leader: $ballot_before -> $ballot_after"
    stop_writer
    gap=$(longest_gap "$WORK/writes-partition.log")
    # The cut-off node's answer decides what may happen to that write later:
    # "outcome unknown" (a leader had it) allows it to commit after healing;
    # "nothing was applied" / "will not be applied" (withdrawn) never does.
    local later
    later=$(paxos_cli get cut-off-write 2>&1 || true)
    if [[ $later == lost ]]; then
        if grep -qiE 'nothing was applied|will not be applied|not applied' <<<"$cut_answer"; then
            fail "the write the cut-off node refused (exit $cut_rc: $cut_answer) was applied after healing"
        fi
        # Outcome unknown, or a client killed by the timeout: the command may
        # commit; the CLI gave it a request id, so a retry is safe.
        later="applied after healing; its answer had been exit $cut_rc: $cut_answer"
    else
        later="never applied (exit $cut_rc: $cut_answer)"
    fi
    local writes
    writes=$(check_acked "$WORK/writes-partition.log" "node$leader")
    record "4. partition of leader node$leader: node$witness followed a new leader ${elected} ms after the cut; longest write pause ${gap} ms; the cut-off node committed nothing (commit index $commit_cut -> $commit_later; the write sent to it: $later); healed, it caught up in ${back} ms and left leader/ballot '$ballot_after' alone; all $writes acknowledged writes read back"
}

# === 5. rolling restart and upgrade ==========================================
rolling() { # rolling LABEL EXTRA-ANSIBLE-ARGS...
    local label=$1 t
    shift
    start_writer "$WORK/writes-$label.log"
    wait_until 30 "the writer's first acknowledged write" write_acked_after "$WORK/writes-$label.log" 0
    t=$SECONDS
    playbook "$WORK/$label.log" -i "$WORK/lab.json" "$ROOT/ansible/rolling.yml" "$@" \
        || { stop_writer; tail -40 "$WORK/$label.log"; fail "the rolling $label failed"; }
    local took=$((SECONDS - t))
    stop_writer
    local writes gap
    writes=$(check_acked "$WORK/writes-$label.log" node1)
    # Per node: the longest pause between acknowledged writes around the
    # moment systemd stopped its paxos (from the node's journal, µs clock).
    local pauses="" h stopped
    for h in node1 node2 node3; do
        stopped=$(docker exec "paxos-lab-$h" journalctl -u paxos -o short-unix --no-pager | grep 'Stopping paxos' | tail -1 | cut -d' ' -f1)
        [[ -n $stopped ]] || fail "$h's journal shows no restart during the rolling $label"
        stopped=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * 1000))' "$stopped")
        pauses+="$h $(awk -v t="$stopped" '$2 == "ok" { if (prev && $1 >= t - 1000 && prev <= t + 15000) { g = $1 - prev; if (g > max) max = g } prev = $1 } END { print max + 0 }' "$WORK/writes-$label.log") ms, "
    done
    record "5. rolling $label (serial: 1) took ${took} s with a writer running: longest write pause per node ${pauses}all $writes acknowledged writes read back"
}

scenario_rolling() {
    say "== 5. rolling restart, then rolling upgrade"
    rolling restart
    # The upgrade: a rebuilt binary whose checksum differs (a build stamp in
    # an ELF note), so the playbook really replaces it on every node.
    cp "$PAXOS" "$WORK/paxos-new"
    date -u +%FT%TZ >"$WORK/stamp"
    objcopy --add-section .note.paxos-lab-build="$WORK/stamp" "$WORK/paxos-new"
    cmp -s "$PAXOS" "$WORK/paxos-new" && fail "the rebuilt binary is identical"
    rolling upgrade -e "paxos_binary_src=$WORK/paxos-new"
    local sum
    sum=$(sha256sum <"$WORK/paxos-new" | cut -c1-12)
    for h in node1 node2 node3; do
        [[ $(docker exec "paxos-lab-$h" sha256sum /usr/local/bin/paxos | cut -c1-12) == "$sum" ]] || fail "$h does not run the new binary"
    done
    record "5. every node now runs the upgraded binary (sha256 $sum...)"
}

# === 6. five hosts, two learners =============================================
scenario_learners() {
    say "== 6. five hosts, two of them pure learners"
    teardown_hosts
    python3 - "$ROOT/hosts/lab.json" "$WORK/lab5.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for n in (4, 5):
    doc["all"]["hosts"][f"node{n}"] = {"ansible_host": f"172.30.99.{10 + n}", "paxos_id": n, "paxos_roles": ["learner"]}
json.dump(doc, open(sys.argv[2], "w"), indent=2)
PY
    write_inventory "$WORK/lab5.json" "$WORK/lab.json"
    boot_hosts node1 node2 node3 node4 node5
    local t=$SECONDS
    playbook "$WORK/site5.log" -i "$WORK/lab.json" "$ROOT/ansible/site.yml" \
        || { tail -40 "$WORK/site5.log"; fail "the 5-host rollout failed"; }
    record "6. 5-host rollout: $((SECONDS - t)) s"
    "$PAXOS" --cluster "$WORK/lab.json" -i "$WORK/keys/operator" ssh-config -o "$WORK/ssh_config" 2>/dev/null
    wait_until 60 "a leader among the 5 hosts" has_leader
    start_writer "$WORK/writes-learners.log"
    wait_until 30 "acknowledged writes" write_acked_after "$WORK/writes-learners.log" 0
    sleep 3
    stop_writer
    local rows
    wait_until 60 "every node, learners too, to apply everything" bash -c "
        \"$PAXOS\" --cluster \"$WORK/lab.json\" -i \"$WORK/keys/operator\" status --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
c = max(r[\"status\"][\"commit_index\"] for r in rows if r[\"up\"])
sys.exit(0 if len(rows) == 5 and all(r[\"up\"] and r[\"status\"][\"applied_index\"] == c for r in rows) else 1)'"
    rows=$(status_json)
    python3 - <<PY || fail "a learner voted or leads: $rows"
import json
rows = {r["id"]: r["status"] for r in json.loads('''$rows''')}
for n in (4, 5):
    s = rows[n]
    assert s["roles"] == ["learner"], s
    assert s["role"] != "leader", s
    assert s["promised"]["round"] == 0, s
PY
    local writes
    writes=$(check_acked "$WORK/writes-learners.log" node4)
    record "6. learners node4, node5 applied every slot (same applied index as the voters), never promised a ballot, never led; $writes acknowledged writes read back through node4"
}

teardown_hosts() {
    local ids
    ids=$(docker ps -aq --filter "label=$LAB_LABEL")
    [[ -n $ids ]] && docker rm -f $ids >/dev/null 2>&1
    : >"$WORK/ssh_known_hosts"
}

# === 8. failover drills and the monitor =======================================
# The drill as an operator runs it against real hosts: every fault is a
# command template from the inventory (paxos_drill_*_cmd: ssh as root for
# systemctl, docker for the network cut), as it would be for real machines.
write_drill_inventory() {
    python3 - "$WORK/lab.json" "$WORK/lab-drill.json" "$WORK" "$LAB_NET" <<'PY'
import json, sys
src, dest, work, net = sys.argv[1:]
doc = json.load(open(src))
root = (f"ssh -i {work}/ansible_key -o UserKnownHostsFile={work}/ssh_known_hosts"
        " -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 root@{host}")
doc["all"]["vars"].update({
    "paxos_drill_kill_cmd": f"{root} systemctl kill -s KILL paxos",
    "paxos_drill_restore_cmd": f"{root} systemctl start paxos",
    "paxos_drill_stop_cmd": f"{root} systemctl kill -s STOP paxos",
    "paxos_drill_cont_cmd": f"{root} systemctl kill -s CONT paxos",
    "paxos_drill_partition_cmd": f"docker network disconnect {net} paxos-lab-{{name}}",
    "paxos_drill_heal_cmd": f"docker network connect --ip {{host}} {net} paxos-lab-{{name}}",
})
json.dump(doc, open(dest, "w"), indent=2)
PY
}

drill_once() { # drill_once KIND: runs it, checks its JSON verdict, records its figures
    local kind=$1 out code=0
    out=$("$PAXOS" --cluster "$WORK/lab-drill.json" -i "$WORK/keys/operator" drill --kind "$kind" --json \
        --svg "$WORK/drill-$kind.svg" 2>"$WORK/drill-$kind.err") || code=$?
    [[ $code == 0 ]] || fail "drill $kind exited $code: ${out:0:2000} $(tail -5 "$WORK/drill-$kind.err")"
    python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$WORK/drill-$kind.svg" \
        || fail "drill $kind wrote an SVG that is not XML"
    out=$(python3 -c '
import json, sys
doc = json.load(sys.stdin)
d = doc["drills"][0]
ok = doc["passed"] and d["logs_agree"] and d["writes_survived"] and not d["lost_writes"] and d["new_leader"] is not None
fmt = lambda v: "-" if v is None else "%.0f ms" % v
print("old leader %s, new leader %s, detect %s, elect %s, longest without a write %s, %d writes acknowledged, %d slots compared, logs agree, every write read back"
      % (d["old_leader"], d["new_leader"], fmt(d["detect_ms"]), fmt(d["elect_ms"]), fmt(d["longest_write_gap_ms"]),
         d["writes_ok"], d["slots_compared"]))
sys.exit(0 if ok else 1)' <<<"$out") || fail "drill $kind report failed its checks: $out"
    record "8. drill $kind (inventory templates): $out"
}

scenario_drills() {
    say "== 8. failover drills through inventory command templates, and the monitor"
    local out kind
    write_drill_inventory
    for kind in transfer kill-leader stop-leader partition-leader; do
        wait_until 60 "a healthy cluster before the $kind drill" paxos_cli health
        drill_once "$kind"
    done
    wait_until 60 "a healthy cluster after the drills" paxos_cli health
    out=$(paxos_cli monitor --once) || fail "monitor --once exited $?: $out"
    [[ $(grep -Ec '^[* ] +[0-9]+ node[123] +[PAL]+ +up ' <<<"$out") == 3 ]] || fail "monitor --once does not show three nodes up: $out"
    [[ $(grep -Ec '^\* +[0-9]+ node[123] ' <<<"$out") == 1 ]] || fail "monitor --once does not mark one leader: $out"
    record "8. monitor --once over the hosts: three rows up, one leader"
}

# === 9. membership through the playbook =======================================
# `paxos members --json` as NODE answers it (the OpenSSH client, ssh-config).
members_of() { timeout 20 ssh -F "$WORK/ssh_config" -o BatchMode=yes -o ConnectTimeout=3 "$1" -s paxos members --json; }

# lists_member ID ROLES NODES...: every NODE lists member ID with exactly
# ROLES (sorted, comma-separated); ROLES "-" means NODE does not list ID.
lists_member() {
    local id=$1 roles=$2 h
    shift 2
    for h in "$@"; do
        members_of "$h" | python3 -c '
import json, sys
id, want = int(sys.argv[1]), sys.argv[2]
rows = [r for r in json.load(sys.stdin)["members"] if r["id"] == id]
got = ",".join(sorted(rows[0]["roles"])) if rows else "-"
sys.exit(0 if got == want else 1)' "$id" "$roles" || return 1
    done
}

# task_changed LOG TASK HOST: the play's TASK reported "changed" for HOST.
task_changed() {
    awk -v task="TASK [paxos : $2" -v host="changed: [$3" \
        'index($0, "TASK [") == 1 { inside = index($0, task) == 1 } inside && index($0, host) == 1 { found = 1 } END { exit !found }' "$1"
}

daemon_starts() { # the start time of paxos on each host, to show nobody restarted
    local h
    for h in "$@"; do
        printf '%s=%s ' "$h" "$(docker exec "paxos-lab-$h" systemctl show -p ExecMainStartTimestampMonotonic --value paxos)"
    done
}

# inventory_set HOST JSON: merges JSON into HOST's entry of the lab's
# inventory ("vars": into all.vars).
inventory_set() {
    python3 - "$WORK/lab.json" "$1" "$2" <<'PY'
import json, sys
path, host, extra = sys.argv[1:]
doc = json.load(open(path))
entry = doc["all"]["vars"] if host == "vars" else doc["all"]["hosts"].setdefault(host, {})
entry.update(json.loads(extra))
json.dump(doc, open(path, "w"), indent=2)
PY
}

scenario_membership() {
    say "== 9. membership through the playbook: node4 joins (paxos_join), node1 leaves (paxos_state: absent)"
    local t out starts log changed
    # After scenario 5 the hosts run its upgraded binary: the play must not
    # put the first one back (that alone restarts every node).
    if [[ -e $WORK/paxos-new ]]; then
        inventory_set vars "{\"paxos_binary_src\": \"$WORK/paxos-new\"}"
    fi
    paxos_cli put before-join written-before >/dev/null || fail "put before-join failed"
    starts=$(daemon_starts node1 node2 node3)
    boot_hosts node4
    inventory_set node4 '{"ansible_host": "172.30.99.14", "paxos_id": 4, "paxos_join": true, "paxos_roles": ["acceptor", "learner"]}'
    t=$SECONDS
    playbook "$WORK/join.log" -i "$WORK/lab.json" "$ROOT/ansible/site.yml" \
        || { tail -60 "$WORK/join.log"; fail "the rollout that adds node4 failed"; }
    record "9. rollout with node4 (paxos_join, roles acceptor,learner): $((SECONDS - t)) s, changed=$(changed_total "$WORK/join.log")"
    for log in 'Add this host as a learner' 'Promote it to its inventory roles'; do
        task_changed "$WORK/join.log" "$log" node4 \
            || { grep -A6 "TASK \[paxos : $log" "$WORK/join.log"; fail "the playbook did not run '$log' for node4"; }
    done
    "$PAXOS" --cluster "$WORK/lab.json" -i "$WORK/keys/operator" ssh-config -o "$WORK/ssh_config" 2>/dev/null
    t=$SECONDS
    wait_until 60 "every node to list node4 as acceptor,learner" lists_member 4 acceptor,learner node1 node2 node3 node4
    wait_until 60 "node4 to read the value written before it joined" \
        bash -c "[[ \$(timeout 20 ssh -F '$WORK/ssh_config' -o BatchMode=yes node4 -s paxos get --stale before-join) == written-before ]]"
    out=$(timeout 20 ssh -F "$WORK/ssh_config" -o BatchMode=yes node4 -s paxos get before-join) || fail "a linearizable get on node4 failed: $out"
    [[ $out == written-before ]] || fail "node4 reads before-join as '$out'"
    [[ $(daemon_starts node1 node2 node3) == "$starts" ]] || fail "adding node4 restarted a node: $starts -> $(daemon_starts node1 node2 node3)"
    docker exec paxos-lab-node1 grep -q node4 /etc/paxos/cluster.json && fail "node4 reached node1's cluster file"
    record "9. node4 is listed as a member with roles acceptor,learner by all four nodes ($((SECONDS - t)) s after the play) and reads the value written before it joined (stale and linearizable); no other node restarted, no other cluster file changed"
    playbook "$WORK/join2.log" -i "$WORK/lab.json" "$ROOT/ansible/site.yml" \
        || { tail -40 "$WORK/join2.log"; fail "the second rollout with node4 failed"; }
    changed=$(changed_total "$WORK/join2.log")
    [[ $changed == 0 ]] || { grep -B3 'changed:' "$WORK/join2.log" | head -40; fail "second run with node4 changed=$changed"; }
    record "9. a second run with node4: changed=0 (no second add, no promote)"

    # node1 (a seed host) leaves, with a writer running all along.
    starts=$(daemon_starts node2 node3 node4)
    start_writer "$WORK/writes-membership.log"
    wait_until 30 "the writer's first acknowledged write" write_acked_after "$WORK/writes-membership.log" 0
    inventory_set node1 '{"paxos_state": "absent"}'
    t=$SECONDS
    playbook "$WORK/absent.log" -i "$WORK/lab.json" "$ROOT/ansible/site.yml" \
        || { stop_writer; tail -60 "$WORK/absent.log"; fail "the rollout that removes node1 failed"; }
    local took=$((SECONDS - t))
    task_changed "$WORK/absent.log" 'Remove this host from the cluster' node1 \
        || { stop_writer; grep -A6 'TASK \[paxos : Remove this host' "$WORK/absent.log"; fail "the playbook did not remove node1"; }
    wait_until 60 "node2, node3 and node4 to list no node1" lists_member 1 - node2 node3 node4
    [[ $(docker exec paxos-lab-node1 systemctl is-active paxos || true) == inactive ]] || fail "paxos still runs on node1"
    [[ $(docker exec paxos-lab-node1 systemctl is-enabled paxos || true) == disabled ]] || fail "paxos is still enabled on node1"
    docker exec paxos-lab-node1 sh -c 'test -n "$(ls -A /var/lib/paxos)"' || fail "node1's data directory was emptied"
    docker exec paxos-lab-node2 grep -q '"node1"' /etc/paxos/cluster.json || fail "node1 left node2's cluster file (the seed configuration)"
    local write_t0
    write_t0=$(now_ms)
    wait_until 30 "a write acknowledged after node1 left" write_acked_after "$WORK/writes-membership.log" "$write_t0"
    stop_writer
    paxos_cli put after-removal still-writing >/dev/null || fail "a put after node1 left failed"
    out=$(timeout 20 ssh -F "$WORK/ssh_config" -o BatchMode=yes node4 -s paxos get after-removal) || fail "get on node4 failed: $out"
    [[ $out == still-writing ]] || fail "node4 reads after-removal as '$out'"
    [[ $(daemon_starts node2 node3 node4) == "$starts" ]] || fail "removing node1 restarted a node: $starts -> $(daemon_starts node2 node3 node4)"
    local writes gap
    gap=$(longest_gap "$WORK/writes-membership.log")
    writes=$(check_acked "$WORK/writes-membership.log" node4)
    record "9. node1 marked absent: removed and stopped in ${took} s; node2-4 no longer list it; its service is stopped and disabled, its data kept, it stays in the seed hosts' cluster files; writes go on (longest pause ${gap} ms, all $writes acknowledged writes read back through node4); no other node restarted"
}
