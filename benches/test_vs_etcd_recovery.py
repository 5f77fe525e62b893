"""Checks of the failover rule in vs_etcd_recovery.py:
python3 -m unittest discover -s benches -p 'test_vs_etcd_recovery.py'"""
import os
import tempfile
import unittest

from vs_etcd_recovery import failover

KILL = 10_000_000


def ack_log(rows):
    """rows: (sent_us, answered_us, outcome); 200 writes of 1 ms each end 1 ms before the kill."""
    lines = [f"{KILL - 201_000 + 1000 * i} {KILL - 200_000 + 1000 * i} put ok" for i in range(200)]
    lines += [f"{s} {a} {op} {o}" for s, a, o, op in ((*r, "put") if len(r) == 3 else r for r in rows)]
    f = tempfile.NamedTemporaryFile("w", suffix=".acks", delete=False)
    f.write("\n".join(lines) + "\n")
    f.close()
    return f.name


class Failover(unittest.TestCase):
    def figure(self, rows):
        path = ack_log(rows)
        try:
            return failover(path, KILL)
        finally:
            os.unlink(path)

    def test_the_old_leaders_last_answer_is_not_the_recovery(self):
        # In flight at the kill, answered 0.3 ms later: decided before the kill.
        d = self.figure([(KILL - 500, KILL + 300, "ok"), (KILL + 300, KILL + 1_500_000, "ok")])
        self.assertEqual(d["failover_ms"], 1500.0)
        self.assertEqual(d["in_flight"]["answered_after_kill_ms"], 0.3)

    def test_a_write_that_waited_out_the_election_counts(self):
        d = self.figure([(KILL - 500, KILL + 1_200_000, "ok"), (KILL + 1_200_000, KILL + 1_201_000, "ok")])
        self.assertEqual(d["failover_ms"], 1200.0)

    def test_failures_are_skipped_and_counted(self):
        d = self.figure([
            (KILL - 500, KILL + 5_000_000, "DeadlineExceeded"),
            (KILL + 5_000_000, KILL + 5_002_000, "ok"),
            (KILL + 5_002_000, KILL + 5_003_000, "get", "ok"),
        ])
        self.assertEqual(d["failover_ms"], 5002.0)
        self.assertEqual(d["failures_after"], {"DeadlineExceeded": 1})
        self.assertEqual(d["failures_before_recovery"], 1)

    def test_no_write_after_the_kill_is_an_error(self):
        d = self.figure([(KILL - 500, KILL + 10_000_000, "timeout")])
        self.assertIsNone(d["failover_ms"])
        self.assertIn("no write acknowledged", d["error"])

    def test_too_few_writes_before_the_kill_is_an_error(self):
        path = tempfile.NamedTemporaryFile("w", delete=False)
        path.write(f"{KILL - 2000} {KILL - 1000} put ok\n{KILL + 10} {KILL + 900_000} put ok\n")
        path.close()
        try:
            d = failover(path.name, KILL)
        finally:
            os.unlink(path.name)
        self.assertIsNone(d["failover_ms"])
        self.assertIn("1 writes acknowledged before the kill", d["error"])


if __name__ == "__main__":
    unittest.main()
