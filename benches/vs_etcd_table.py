"""The table of benches/vs-etcd.sh: medians over the repetitions of each
figure for etcd and paxos, and their ratio (paxos over etcd, so above 1 is
better for throughput and below 1 is better for latency, memory, CPU,
failover and catch-up).

  vs_etcd_table.py OUT                              the run's OUT/params.json says what was measured
  vs_etcd_table.py OUT REPS CLIENTS READ_CLIENTS    a load-only run from before params.json
"""
import json
import os
import platform
import statistics
import sys

out = sys.argv[1]
if len(sys.argv) == 5:
    params = {"figures": "load", "reps": sys.argv[2], "clients": sys.argv[3], "read_clients": sys.argv[4]}
elif len(sys.argv) == 2:
    with open(os.path.join(out, "params.json")) as f:
        params = json.load(f)
else:
    sys.exit(__doc__)
figures = params["figures"].split(",")
reps, clients, read_clients = int(params["reps"]), params["clients"].split(), params["read_clients"]


def runs(system, name, count=None):
    return [os.path.join(out, f"{system}-{rep}-{name}") for rep in range(1, (count or reps) + 1)]


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
for c in clients if "load" in figures else []:
    tag = run_file(c, 0)
    n = f"{c} client" + ("" if c == "1" else "s")
    rows.append((f"writes/s, {n}", bench("etcd", tag, "writes", "ops"), bench("paxos", tag, "writes", "ops"), "{:,.0f}"))
    for q in ("p50_us", "p99_us"):
        e, p = bench("etcd", tag, "writes", q), bench("paxos", tag, "writes", q)
        rows.append((f"  {q[:3]} ms, {n}", e and e / 1000, p and p / 1000, "{:.2f}"))
    e, p = number("etcd", f"cpu-c{c}"), number("paxos", f"cpu-c{c}")
    rows.append((f"  CPU s per 1,000 writes, {n}", e, p, "{:.3f}"))
if "load" in figures:
    tag = run_file(read_clients, 100)
    rows.append((f"linearizable reads/s, {read_clients} clients", bench("etcd", tag, "reads", "ops"), bench("paxos", tag, "reads", "ops"), "{:,.0f}"))
    rows.append(("largest member's RSS idle, MB", number("etcd", "rss-idle"), number("paxos", "rss-idle"), "{:.0f}"))
    if "64" in clients:
        rows.append(("largest member's RSS after 64 clients, MB", number("etcd", "rss-c64"), number("paxos", "rss-c64"), "{:.0f}"))


def recovery(system, name, field, count):
    """Median, min and max of one recovery figure; a failed repetition makes the median missing."""
    values = []
    for path in runs(system, f"{name}.json", count):
        with open(path) as f:
            values.append(json.load(f)[field])
    if not values or None in values:
        failed = sum(v is None for v in values)
        return None, f"{failed} of {len(values)} failed" if values else "-"
    return statistics.median(values), (min(values), max(values))


for name, field, label, fmt in (
    ("failover", "failover_ms", "failover: leader SIGKILL to next write acknowledged by a follower, ms", "{:,.0f}"),
    ("catchup", "seconds", "catch-up of a follower after {writes:,} writes, s", "{:.2f}"),
):
    if name not in figures:
        continue
    count = int(params[f"{name}_reps"])
    label = label.format(writes=int(params.get("catchup_writes", 0)))
    (e, e_range), (p, p_range) = recovery("etcd", name, field, count), recovery("paxos", name, field, count)
    rows.append((f"{label} (median of {count})", e, p, fmt))
    spread = lambda r: r if isinstance(r, str) else f"{fmt.format(r[0])}–{fmt.format(r[1])}"
    rows.append(("  min–max", spread(e_range), spread(p_range), "{}"))

machine = f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}"
each = f"medians of {reps} fresh cluster(s) per figure" if "load" in figures else "a fresh cluster per repetition"
print(f"vs-etcd: {os.path.basename(out)}; {machine}; {each}; "
      f"256-byte values, 10,000 keys, fsync on, 3 members on 127.0.0.1\n")
print("| figure | etcd | paxos | paxos / etcd |")
print("|---|---:|---:|---:|")
for name, e, p, fmt in rows:
    show = lambda v: "-" if v is None else fmt.format(v)
    numbers = all(isinstance(v, (int, float)) for v in (e, p))
    ratio = f"{p / e:.2f}×" if numbers and e else "-"
    print(f"| {name} | {show(e)} | {show(p)} | {ratio} |")
