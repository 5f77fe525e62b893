"""The failover and catch-up figures of benches/vs-etcd.sh, the same way for
both systems. Each subcommand prints one JSON document.

  vs_etcd_recovery.py failover ACK_LOG KILL_US
      ACK_LOG is `paxos bench --ack-log` or `etcd-bench --ack-log`: one line
      per answered request, `SENT_US ANSWERED_US put|get ok|KIND`, wall-clock
      microseconds (CLOCK_REALTIME). KILL_US is the same clock read just
      before the leader's SIGKILL (ACK_LOG may be gzipped: NAME.gz). The figure is the time from the kill to
      the first acknowledged write after it. A write sent before the kill
      and acknowledged sooner after it than the slowest write before the
      kill took is not counted: the old leader decided it, its answer was
      on the way.

  vs_etcd_recovery.py catchup paxos|etcd RESTART_US FOLLOWER DEADLINE_SECS -- STATUS_COMMAND...
      Starts STATUS_COMMAND (`paxos status --json` or `etcd-bench --status`)
      every 100 ms, overlapping, until FOLLOWER (a paxos node id, or an etcd
      endpoint) has applied as far as the leader: paxos `applied_index`,
      etcd `raft_applied_index`. The figure, `seconds`, runs from RESTART_US
      (the wall clock just before the follower was started again) to the end
      of the first status that showed it level; `after_s` is the start of
      the last one that still showed it behind or not answering, so the
      moment lies in (after_s, seconds].
"""
import gzip
import json
import statistics
import subprocess
import sys
import threading
import time

MIN_WRITES_BEFORE = 100
POLL_SECS = 0.1
MAX_POLLS_IN_FLIGHT = 10


def failover(ack_log, kill_us):
    rows = []
    with (gzip.open(ack_log, "rt") if ack_log.endswith(".gz") else open(ack_log)) as f:
        for line in f:
            sent, answered, op, outcome = line.split()
            if op == "put":
                rows.append((int(sent), int(answered), outcome))
    before = [(s, a) for s, a, o in rows if o == "ok" and a <= kill_us]
    doc = {"kill_us": kill_us, "writes_before": len(before), "failover_ms": None}
    if len(before) < MIN_WRITES_BEFORE:
        doc["error"] = f"{len(before)} writes acknowledged before the kill; {MIN_WRITES_BEFORE} needed"
        return doc
    slowest = max(a - s for s, a in before)
    doc["slowest_before_ms"] = slowest / 1000
    doc["last_ack_before_ms"] = (kill_us - max(a for _, a in before)) / 1000
    after = [(s, a, o) for s, a, o in rows if a > kill_us]
    in_flight = [(s, a, o) for s, a, o in after if s < kill_us]
    if in_flight:
        s, a, o = in_flight[0]
        doc["in_flight"] = {"outcome": o, "answered_after_kill_ms": (a - kill_us) / 1000, "latency_ms": (a - s) / 1000}
    counted = [a for s, a, o in after if o == "ok" and (s >= kill_us or a - kill_us > slowest)]
    failures = [o for _, _, o in after if o != "ok"]
    doc["failures_after"] = {k: failures.count(k) for k in sorted(set(failures))}
    if counted:
        first = min(counted)
        doc["failover_ms"] = (first - kill_us) / 1000
        doc["failures_before_recovery"] = sum(1 for _, a, o in after if o != "ok" and a <= first)
        doc["writes_after"] = len([a for a in counted if a >= first])
    else:
        last = max((a for _, a, _ in rows), default=kill_us)
        doc["error"] = f"no write acknowledged in the {(last - kill_us) / 1e6:.1f} s after the kill"
    return doc


def applied(system, rows, follower):
    """(follower's applied index or None, leader's applied index or None)."""
    if system == "paxos":
        up = [r["status"] for r in rows if r.get("up")]
        mine = next((s["applied_index"] for s in up if str(s["id"]) == follower), None)
        leader = next((s["applied_index"] for s in up if s["role"] == "leader"), None)
    else:
        up = [r for r in rows if r.get("up")]
        mine = next((r["raft_applied_index"] for r in up if r["endpoint"] == follower), None)
        leader = next((r["raft_applied_index"] for r in up if r["leader"] and r["member_id"] == r["leader"]), None)
    return mine, leader


def catchup(system, restart_us, follower, deadline_secs, command):
    """Statuses start every POLL_SECS, overlapping (a node busy catching up
    may answer late): the moment of catch-up lies after the start of the
    last status that showed the follower behind (or not answering) and at
    or before the end of the first that showed it level."""
    results, lock, threads = [], threading.Lock(), []

    def poll():
        began = time.time_ns() // 1000
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
            mine, leader = applied(system, json.loads(out), follower)
        except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
            mine, leader = None, None
        with lock:
            results.append((began, time.time_ns() // 1000, mine, leader))

    def level(r):
        return r[2] is not None and r[3] is not None and r[2] >= r[3]

    give_up = time.monotonic() + deadline_secs
    while time.monotonic() < give_up:
        with lock:
            if any(level(r) for r in results):
                break
        threads = [t for t in threads if t.is_alive()]
        if len(threads) < MAX_POLLS_IN_FLIGHT:
            threads.append(threading.Thread(target=poll, daemon=True))
            threads[-1].start()
        time.sleep(POLL_SECS)
    for t in threads:
        t.join(timeout=35)
    answered = [r for r in results if r[2] is not None]
    doc = {"restart_us": restart_us, "seconds": None, "polls": len(results),
           "poll_ms_median": statistics.median((e - b) / 1000 for b, e, _, _ in results) if results else None,
           "first_status_s": (min(e for _, e, _, _ in answered) - restart_us) / 1e6 if answered else None}
    done = [r for r in results if level(r)]
    if not done:
        last = max(answered, default=(0, 0, None, None), key=lambda r: r[1])
        doc.update(follower_applied=last[2], leader_applied=last[3],
                   error=f"the follower had not caught up {deadline_secs:g} s after its restart")
        return doc
    first = min(done, key=lambda r: r[1])
    after = max((r[0] for r in results if not level(r) and r[0] < first[1]), default=restart_us)
    doc.update(seconds=(first[1] - restart_us) / 1e6, after_s=(after - restart_us) / 1e6,
               follower_applied=first[2], leader_applied=first[3])
    return doc


def main(argv):
    if len(argv) == 3 and argv[0] == "failover":
        doc = failover(argv[1], int(argv[2]))
    elif len(argv) > 6 and argv[0] == "catchup" and argv[1] in ("paxos", "etcd") and argv[5] == "--":
        doc = catchup(argv[1], int(argv[2]), argv[3], float(argv[4]), argv[6:])
    else:
        sys.exit(__doc__)
    print(json.dumps(doc))


if __name__ == "__main__":
    main(sys.argv[1:])
