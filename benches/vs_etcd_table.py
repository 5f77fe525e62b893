"""The table of benches/vs-etcd.sh: medians over the repetitions of each
figure for etcd and paxos, and their ratio (paxos over etcd, so above 1 is
better for throughput and below 1 is better for latency, memory and CPU)."""
import json
import os
import platform
import statistics
import sys

out, reps, clients, read_clients = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]


def runs(system, name):
    return [os.path.join(out, f"{system}-{rep}-{name}") for rep in range(1, reps + 1)]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def bench(system, tag, kind, field):
    values = []
    for path in runs(system, tag):
        with open(path) as f:
            doc = json.load(f)
        fig = doc[kind]
        values.append(fig["ops_per_sec"] if field == "ops" else (fig["latency"] or {}).get(field))
    return median(values)


def number(system, name):
    values = []
    for path in runs(system, name):
        with open(path) as f:
            values.append(float(f.read().strip()))
    return median(values)


def run_file(c, reads):
    """The name load() gives a run's JSON, after SYSTEM-REP-."""
    return f"w{c}-c{c}-r0.json" if reads == 0 else f"r-c{c}-r100.json"


rows = []
for c in clients:
    tag = run_file(c, 0)
    n = f"{c} client" + ("" if c == "1" else "s")
    rows.append((f"writes/s, {n}", bench("etcd", tag, "writes", "ops"), bench("paxos", tag, "writes", "ops"), "{:,.0f}"))
    for q in ("p50_us", "p99_us"):
        e, p = bench("etcd", tag, "writes", q), bench("paxos", tag, "writes", q)
        rows.append((f"  {q[:3]} ms, {n}", e and e / 1000, p and p / 1000, "{:.2f}"))
    e, p = number("etcd", f"cpu-c{c}"), number("paxos", f"cpu-c{c}")
    rows.append((f"  CPU s per 1,000 writes, {n}", e, p, "{:.3f}"))
tag = run_file(read_clients, 100)
rows.append((f"linearizable reads/s, {read_clients} clients", bench("etcd", tag, "reads", "ops"), bench("paxos", tag, "reads", "ops"), "{:,.0f}"))
rows.append(("largest member's RSS idle, MB", number("etcd", "rss-idle"), number("paxos", "rss-idle"), "{:.0f}"))
if "64" in clients:
    rows.append(("largest member's RSS after 64 clients, MB", number("etcd", "rss-c64"), number("paxos", "rss-c64"), "{:.0f}"))

machine = f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}"
print(f"vs-etcd: {os.path.basename(out)}; {machine}; medians of {reps} fresh cluster(s) per figure; "
      f"256-byte values, 10,000 keys, fsync on, 3 members on 127.0.0.1\n")
print("| figure | etcd | paxos | paxos / etcd |")
print("|---|---:|---:|---:|")
for name, e, p, fmt in rows:
    show = lambda v: "-" if v is None else fmt.format(v)
    ratio = "-" if not e or p is None else f"{p / e:.2f}×"
    print(f"| {name} | {show(e)} | {show(p)} | {ratio} |")
