"""The summary of a dhat heap profile (benches/heap-profile.sh): total and
peak heap, and the bytes live at the peak (t-gmax), at exit (t-end) and
allocated over the run, by group and by allocation site.

    python3 benches/dhat_top.py [--totals] PROFILE.json[.gz]

(--totals: the first lines only.)

A site is the innermost frame of paxos, russh or serde, then the next
paxos function out from it (a clone, say, and what cloned); a group is the first
rule of GROUPS that some frame of the stack matches. dhat names the site
that allocated a block, not what holds it later: a value decoded from a
client's request and then kept in the log is counted where it was decoded.
"""
import collections
import gzip
import json
import re
import sys

args = sys.argv[1:]
totals_only = "--totals" in args
args = [a for a in args if a != "--totals"]
if len(args) != 1:
    sys.exit(__doc__)
path = args[0]
with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
    d = json.load(f)
ftbl, pps = d["ftbl"], d["pps"]

FRAME = re.compile(r"^0x[0-9a-f]+: (.*) \((.*?):(\d+):\d+\)$")


def short(path):
    """dhat keeps a path's last components; shorten a dependency's further."""
    m = re.search(r"/registry/src/[^/]+/(.*)$", path) or re.search(r"/rustc/[0-9a-f]+/(.*)$", path)
    return m.group(1) if m else path


def frame(i):
    """("function", "file:line") of ftbl[i]."""
    m = FRAME.match(ftbl[i])
    if not m:
        return ftbl[i], ""
    name, file, line = m.groups()
    return name, f"{short(file)}:{line}"


OURS = re.compile(r"(^|[<\s&(])(paxos|russh|serde_json|serde)::")
PAXOS = re.compile(r"(^|[<\s&(])paxos::")


def site(pp):
    frames = [frame(i) for i in pp["fs"]]
    ours = [(n, w) for n, w in frames if OURS.search(n)]
    if not ours:
        return "(no paxos/russh/serde frame in the 16 kept) " + " < ".join(n for n, _ in frames[:3])
    name, where = ours[0]
    label = f"{name} ({where})"
    outer = [(n, w) for n, w in ours if PAXOS.search(n) and n != name]
    if outer:
        label += f" < {outer[0][0]} ({outer[0][1]})"
    return label


# First match wins, tried against every frame of the stack ("function file:line").
GROUPS = [
    ("snapshot: serialization (storage::snapshot encode/save, JSON image for peers)",
     r"paxos::storage::snapshot|paxos::storage::disk::DiskStorage.*save_snapshot|send_snapshot_chunk"),
    ("snapshot: clone of the store (learner maybe_snapshot)", r"maybe_snapshot"),
    ("state machine: client session table (KvStore::remember, the cached result)",
     r"KvStore>?::remember|state_machine\.rs:27[0-9]\b"),
    ("state machine: key-value data (KvStore::apply)", r"paxos::state_machine"),
    ("consensus: log, batches and messages (paxos::consensus)", r"paxos::consensus"),
    ("storage: WAL (paxos::storage)", r"paxos::storage"),
    ("SSH: connections, channels, buffers (russh)", r"russh::"),
    ("framing, peer links, node runtime (paxos::ssh, paxos::node, paxos::ops)", r"paxos::(ssh|node|ops)"),
]


def group(pp):
    text = "\n".join(f"{n} {w}" for n, w in (frame(i) for i in pp["fs"]))
    for g, rx in GROUPS:
        if re.search(rx, text):
            return g
    return "other"


def mb(b):
    return f"{b / 1e6:8.2f} MB"


tb, tbk = sum(p["tb"] for p in pps), sum(p["tbk"] for p in pps)
gb, gbk = sum(p.get("gb", 0) for p in pps), sum(p.get("gbk", 0) for p in pps)
eb, ebk = sum(p.get("eb", 0) for p in pps), sum(p.get("ebk", 0) for p in pps)
print(f"heap of pid {d['pid']} (dhat, {d['te'] / 1e6:.0f} s from start to exit): {d['cmd']}")
print(f"  total allocated: {mb(tb)} in {tbk:,} blocks")
print(f"  peak live (t-gmax, at {d['tg'] / 1e6:.0f} s): {mb(gb)} in {gbk:,} blocks")
print(f"  live at exit (t-end, after the clean stop): {mb(eb)} in {ebk:,} blocks")
print(f"  {len(pps):,} allocation points (backtraces of at most 16 frames)")
if totals_only:
    sys.exit(0)


def table(title, key, total, n):
    by_site, blocks, by_group = collections.Counter(), collections.Counter(), collections.Counter()
    for p in pps:
        b = p.get(key, 0)
        if b:
            s = site(p)
            by_site[s] += b
            blocks[s] += p.get(key + "k", 0)
            by_group[group(p)] += b
    print(f"\n{title}, by group:")
    for g, b in by_group.most_common():
        print(f"  {mb(b)} {100 * b / max(total, 1):5.1f}%  {g}")
    print(f"\n{title}, top {n} allocation sites:")
    for s, b in by_site.most_common(n):
        print(f"  {mb(b)} {100 * b / max(total, 1):5.1f}% {blocks[s]:>9,} blocks  {s[:240]}")


table("Bytes live at the peak (t-gmax)", "gb", gb, 25)
table("Bytes live at exit (t-end)", "eb", eb, 10)
table("Bytes allocated over the run (churn)", "tb", tb, 15)
