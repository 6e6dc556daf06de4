#!/usr/bin/env python3
"""soak.py - many sessions, many queries, faults sprinkled in: no wrong
answer, no crash.

--sessions (8) connections run --per-session (6,000) queries each, in
parallel, against one cluster and one mock API.  Each query is one of ~60
concrete statements (full scans, keyed scans, IN lists with a missing id,
joins with local tables, foreign-foreign joins, correlated subqueries,
LIMIT/OFFSET without ORDER BY, aggregates) run against the tables of one of
these servers, picked at random (seeded):

  schema     server url / options                         allowed errors
  clean      plain                                         none
  lat        latency=3, page_size 4, max_concurrency 3     none
  retry      HTTP 503 x3 per epoch, retry-after-ms 1,      none (the retries
             max_retries 10                                 must hide them)
  retry429   HTTP 429 x2 per epoch, Retry-After 0,         none
             max_retries 10
  flaky      not_json x4 per epoch, max_retries 0          HV00A
  page3      not_json on list pages after the 2nd          HV00A
  e500       HTTP 500 always, max_retries 0                58000
  wrongtype  wrong_type always                             22P02
  stall      stall_headers x2 per epoch, timeout_ms 300    08006
  trunc      truncate on details x3 per epoch              08006
  refused    127.0.0.1:1                                   HV00N
  clean + statement_timeout 15 ms                          57014

3% of the actions are instead a transaction with two cursors on the
clean/retrying servers, fetched in turns, with a random query of the mix
(in a savepoint, rolled back when it fails as allowed) in between: the
open scans' requests in flight must survive the other query and its error.

An "epoch" is the time between two resets of the mock's fault counters
(GET /_mock/reset every --epoch seconds, from a helper thread), so the
times=N / after=N faults keep coming back throughout the run.

The expected answer of every concrete statement is computed once, before
the soak, on the clean server (twice, to be sure it is deterministic).  Every
query that succeeds, on any server, must return exactly that answer (same
rows, same order: statements without ORDER BY check that rows come out in
list/key order whatever the concurrency and the retries).

Claims (exit status 1 if one fails):
  - at least --min-total queries ran (16,000 by default);
  - 0 wrong answers; 0 unexpected errors;
  - 0 crashes: no "terminated by signal" / "exited with exit code" /
    "terminating any other active server processes" / PANIC / TRAP line in
    the server log, the postmaster is alive and has the same pid, no session
    lost its connection.
The backends' VmRSS at connection, after --warmup (1,000) queries of their
session and at the end are reported.

Usage: soak.py [--sessions 8] [--per-session 6000] [--max-seconds 540]
               [--json FILE] [--no-build]
"""
import argparse
import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # nothing written next to the scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402
from ids import batch_id as bid  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402


MISSING = bid(0x999)

SERVERS = {
    "clean": ("", {"max_retries": 0, "page_size": 5}),
    "lat": ("latency=3", {"max_retries": 0, "page_size": 4, "max_concurrency": 3}),
    "retry": ("fault=status/status=503/times=3/retry_after_ms=1",
              {"max_retries": 10, "page_size": 5}),
    "retry429": ("fault=status/status=429/times=2/retry_after=0",
                 {"max_retries": 10, "page_size": 5}),
    "flaky": ("fault=not_json/times=4", {"max_retries": 0, "page_size": 5}),
    "page3": ("fault=not_json/on=list/after=2", {"max_retries": 0, "page_size": 5}),
    "e500": ("fault=status/status=500", {"max_retries": 0}),
    "wrongtype": ("fault=wrong_type", {"max_retries": 0, "page_size": 5}),
    "stall": ("fault=stall_headers/stall=30/times=2", {"max_retries": 0, "timeout_ms": 300,
                                                      "page_size": 5}),
    "trunc": ("fault=truncate/on=details/times=3", {"max_retries": 0, "page_size": 5}),
    "refused": ("http://127.0.0.1:1/v1", {"max_retries": 0}),
}

# (schema, statement_timeout ms, allowed SQLSTATEs, weight)
TARGETS = [
    ("clean", 0, set(), 30),
    ("lat", 0, set(), 8),
    ("retry", 0, set(), 10),
    ("retry429", 0, set(), 5),
    ("flaky", 0, {"HV00A"}, 8),
    ("page3", 0, {"HV00A"}, 7),
    ("e500", 0, {"58000"}, 4),
    ("wrongtype", 0, {"22P02"}, 6),
    ("stall", 0, {"08006"}, 3),
    ("trunc", 0, {"08006"}, 6),
    ("refused", 0, {"HV00N"}, 3),
    ("clean", 15, {"57014"}, 5),
]

LOCAL = [
    "CREATE TABLE watched (label text PRIMARY KEY, batch_id text)",
    "INSERT INTO watched VALUES ('w1', '%s'), ('w3', '%s'), ('w5', '%s'), ('w9', '%s'),"
    " ('wmissing', '%s')" % (bid(1), bid(3), bid(5), bid(9), MISSING),
    "CREATE TABLE watched_all (label text, batch_id text)",
    "INSERT INTO watched_all VALUES %s"
    % ", ".join("('a%d', '%s')" % (n, bid(n)) for n in range(1, 15)),
    "ANALYZE watched", "ANALYZE watched_all",
]


def statements():
    """[(name, sql with {s}, weight)]"""
    st = [
        ("batches_full", "SELECT batch_id, account_name, username, completed, created_at, "
         "task_ids, task_count FROM {s}.batches ORDER BY batch_id", 4),
        ("batches_progress_listorder", "SELECT batch_id, completed_count, progress, "
         "completed_at FROM {s}.batches", 3),
        ("tasks_full_agg", "SELECT batch_id, count(*), count(error), sum(status_code), "
         "min(created_at), max(modified_at) FROM {s}.batch_tasks GROUP BY 1 ORDER BY 1", 1),
        ("batches_limit5", "SELECT batch_id FROM {s}.batches LIMIT 5", 4),
        ("batches_progress_limit3", "SELECT batch_id, progress FROM {s}.batches LIMIT 3", 3),
        ("tasks_limit7", "SELECT batch_id, task_id, state FROM {s}.batch_tasks LIMIT 7", 3),
        ("b3_offset495", "SELECT task_id, state, api_type FROM {s}.batch_tasks "
         "WHERE batch_id = '%s' LIMIT 10 OFFSET 495" % bid(3), 2),
        ("b3_states", "SELECT state, count(*), count(query) FROM {s}.batch_tasks "
         "WHERE batch_id = '%s' GROUP BY 1 ORDER BY 1" % bid(3), 2),
        ("join_local_progress", "SELECT w.label, p.completed, p.completed_count, p.progress "
         "FROM watched w JOIN {s}.batch_progress p USING (batch_id) ORDER BY w.label", 4),
        ("join_local_tasks", "SELECT w.label, t.state, count(*) FROM watched w "
         "JOIN {s}.batch_tasks t USING (batch_id) WHERE w.batch_id <> '%s' "
         "GROUP BY 1, 2 ORDER BY 1, 2" % bid(3), 3),
        ("join_local_all", "SELECT w.label, p.progress FROM watched_all w "
         "LEFT JOIN {s}.batch_progress p USING (batch_id) ORDER BY w.label", 2),
        ("correlated_count", "SELECT b.batch_id, (SELECT count(*) FROM {s}.batch_tasks t "
         "WHERE t.batch_id = b.batch_id) FROM {s}.batches b WHERE b.batch_id <> '%s' "
         "ORDER BY 1" % bid(3), 1),
        ("foreign_join_errors", "SELECT b.account_name, count(*) FROM {s}.batches b "
         "JOIN {s}.batch_tasks t USING (batch_id) WHERE t.state = 'error' "
         "GROUP BY 1 ORDER BY 1", 1),
        ("exists_error", "SELECT p.batch_id FROM {s}.batch_progress p WHERE p.completed AND "
         "EXISTS (SELECT 1 FROM {s}.batch_tasks t WHERE t.batch_id = p.batch_id "
         "AND t.state = 'error') ORDER BY 1", 1),
        ("lateral_tasks", "SELECT w.label, x.task_id FROM watched w CROSS JOIN LATERAL "
         "(SELECT task_id FROM {s}.batch_tasks t WHERE t.batch_id = w.batch_id "
         "ORDER BY task_id DESC LIMIT 2) x WHERE w.label <> 'w3' ORDER BY 1, 2", 2),
    ]
    for n in list(range(1, 13)) + [0x999]:
        w = 1 if n == 3 else 2
        st.append(("keyed_tasks_%d" % n,
                   "SELECT task_id, state, status_code, error, error_type, input, query, "
                   "created_at, modified_at FROM {s}.batch_tasks WHERE batch_id = '%s'" % bid(n), w))
        st.append(("keyed_progress_%d" % n,
                   "SELECT * FROM {s}.batch_progress WHERE batch_id = '%s'" % bid(n), 2))
        st.append(("keyed_batches_%d" % n,
                   "SELECT batch_id, account_name, task_count, completed_count FROM {s}.batches "
                   "WHERE batch_id = '%s'" % bid(n), 1))
    combos = [(1, 2, 0x999), (4, 5, 6), (12, 7, 7, 8), (9, 10, 11), (2, 0x999), (1, 4, 5, 8, 10, 12)]
    for i, c in enumerate(combos):
        ids = ", ".join("'%s'" % bid(n) for n in c)
        st.append(("in_progress_%d" % i,
                   "SELECT batch_id, completed, progress FROM {s}.batch_progress "
                   "WHERE batch_id IN (%s)" % ids, 2))
        st.append(("any_tasks_%d" % i,
                   "SELECT batch_id, task_id, state FROM {s}.batch_tasks WHERE batch_id = "
                   "ANY (ARRAY[%s]) AND state IN ('error', 'success')" % ids, 2))
    return st


class Session(threading.Thread):
    def __init__(self, idx, cluster, n, deadline, expected, stmts, seed, warmup):
        super().__init__(daemon=True)
        self.idx, self.cluster, self.n, self.deadline = idx, cluster, n, deadline
        self.expected, self.stmts = expected, stmts
        self.rnd = random.Random(seed)
        self.warmup = warmup
        self.stats = {"run": 0, "ok": 0, "expected_errors": 0, "unexpected_errors": 0,
                      "wrong_answers": 0, "connection_lost": 0, "set_timeout_retries": 0}
        self.by_target = {}
        self.examples = []
        self.rss = {}
        self.pids = []
        self.done = threading.Event()
        self.cursor_share = 0.03

    def connect(self):
        self.conn = self.cluster.connect()
        self.cur = self.conn.cursor()
        self.pid = self.conn.get_backend_pid()
        self.pids.append(self.pid)
        relib.set_statement_timeout(self.cur, 0)
        self.st_now = 0

    def note(self, what):
        if len(self.examples) < 10:
            self.examples.append(what)

    def set_timeout(self, ms):
        self.stats["set_timeout_retries"] += relib.set_statement_timeout(self.cur, ms)
        self.st_now = ms

    def cursor_interleave(self, tw, sw):
        """Two cursors on clean/retrying servers, fetched in turns, with a
        random query (maybe failing, in a savepoint) in between."""
        bt = self.by_target.setdefault("cursor", {"run": 0, "ok": 0, "errors": {}})
        bt["run"] += 1
        self.stats["run"] += 1
        sa, sb = (self.rnd.choice(["clean", "lat", "retry", "retry429"]) for _ in range(2))
        (na, qa, _), (nb, qb, _) = self.rnd.choices(self.stmts, sw, k=2)
        schema, st_ms, allowed, _ = self.rnd.choices(TARGETS, tw)[0]
        name, sql, _ = self.rnd.choices(self.stmts, sw)[0]
        c = self.cur
        try:
            if self.st_now:
                self.set_timeout(0)
            c.execute("BEGIN")
            c.execute("DECLARE ca NO SCROLL CURSOR FOR " + qa.format(s=sa))
            c.execute("DECLARE cb NO SCROLL CURSOR FOR " + qb.format(s=sb))
            c.execute("FETCH 3 FROM ca")
            ra = c.fetchall()
            c.execute("FETCH 5 FROM cb")
            rb = c.fetchall()
            c.execute("SAVEPOINT sp")
            if st_ms:
                c.execute("SET LOCAL statement_timeout = %d" % st_ms)
            try:
                c.execute(sql.format(s=schema))
                rows = c.fetchall()
                c.execute("RELEASE SAVEPOINT sp")
                if rows != self.expected[name]:
                    self.stats["wrong_answers"] += 1
                    self.note("session %d: WRONG ANSWER between cursors on %s/%s"
                              % (self.idx, schema, name))
            except psycopg2.Error as e:
                if e.pgcode not in allowed:
                    raise
                c.execute("ROLLBACK TO SAVEPOINT sp")
            c.execute("SET LOCAL statement_timeout = 0")
            c.execute("FETCH ALL FROM ca")
            ra += c.fetchall()
            c.execute("FETCH ALL FROM cb")
            rb += c.fetchall()
            c.execute("COMMIT")
        except psycopg2.Error as e:
            if self.conn.closed or e.pgcode is None:
                self.stats["connection_lost"] += 1
                self.note("session %d: connection lost in cursor interleave: %s" % (self.idx, e))
                self.connect()
                return
            bt["errors"][e.pgcode] = bt["errors"].get(e.pgcode, 0) + 1
            self.stats["unexpected_errors"] += 1
            self.note("session %d: unexpected %s in cursor interleave (%s/%s, %s/%s, %s/%s): %s"
                      % (self.idx, e.pgcode, sa, na, sb, nb, schema, name,
                         str(e).strip().splitlines()[0]))
            c.execute("ROLLBACK")
            return
        bt["ok"] += 1
        self.stats["ok"] += 1
        if ra != self.expected[na] or rb != self.expected[nb]:
            self.stats["wrong_answers"] += 1
            self.note("session %d: WRONG ANSWER from interleaved cursors %s/%s, %s/%s"
                      % (self.idx, sa, na, sb, nb))

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            self.stats["harness_error"] = repr(e)
        finally:
            self.done.set()

    def _run(self):
        self.connect()
        self.rss["start_kb"] = relib.rss_kb(self.pid)
        tw = [t[3] for t in TARGETS]
        sw = [s[2] for s in self.stmts]
        for i in range(self.n):
            if time.monotonic() > self.deadline:
                break
            if self.stats["run"] >= self.warmup and "warm_kb" not in self.rss:
                self.rss["warm_kb"] = relib.rss_kb(self.pid)
            if self.rnd.random() < self.cursor_share:
                self.cursor_interleave(tw, sw)
                continue
            schema, st_ms, allowed, _ = self.rnd.choices(TARGETS, tw)[0]
            name, sql, _ = self.rnd.choices(self.stmts, sw)[0]
            key = "%s%s" % (schema, "+timeout" if st_ms else "")
            bt = self.by_target.setdefault(key, {"run": 0, "ok": 0, "errors": {}})
            bt["run"] += 1
            self.stats["run"] += 1
            if st_ms != self.st_now:
                self.set_timeout(st_ms)
            try:
                self.cur.execute(sql.format(s=schema))
                rows = self.cur.fetchall()
            except psycopg2.Error as e:
                code = e.pgcode
                if self.conn.closed or code is None:
                    self.stats["connection_lost"] += 1
                    self.note("session %d: connection lost on %s/%s: %s"
                              % (self.idx, key, name, str(e).strip()))
                    self.connect()
                    continue
                bt["errors"][code] = bt["errors"].get(code, 0) + 1
                if code in allowed:
                    self.stats["expected_errors"] += 1
                else:
                    self.stats["unexpected_errors"] += 1
                    self.note("session %d: unexpected %s on %s/%s: %s"
                              % (self.idx, code, key, name, str(e).strip().splitlines()[0]))
                continue
            bt["ok"] += 1
            self.stats["ok"] += 1
            if rows != self.expected[name]:
                self.stats["wrong_answers"] += 1
                self.note("session %d: WRONG ANSWER on %s/%s: got %d rows %r..., expected %d rows %r..."
                          % (self.idx, key, name, len(rows), rows[:2], len(self.expected[name]),
                             self.expected[name][:2]))
        self.rss["end_kb"] = relib.rss_kb(self.pid)
        self.rss["pid"] = self.pid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--per-session", type=int, default=6000)
    ap.add_argument("--min-total", type=int, default=16000)
    ap.add_argument("--max-seconds", type=float, default=540)
    ap.add_argument("--epoch", type=float, default=0.5, help="seconds between mock resets")
    ap.add_argument("--warmup", type=int, default=1000,
                    help="queries of a session before its 'after warm-up' VmRSS")
    ap.add_argument("--json")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    t_start = time.time()
    build = relib.build_install(a.no_build)
    stmts = statements()
    res = {"script": "soak.py", "build": build, "machine": relib.machine(),
           "sessions": a.sessions, "per_session": a.per_session, "statements": len(stmts),
           "failures": []}
    failures = res["failures"]
    with relib.harness("soak", conf={"max_connections": "40"}) as (cluster, mock):
        admin = cluster.connect()
        relib.sql_setup(admin, mock, SERVERS, LOCAL)
        pm_pid = cluster.postmaster_pid

        # the expected answers, from the clean server, twice
        cur = admin.cursor()
        expected = {}
        for name, sql, _ in stmts:
            runs = []
            for _ in range(2):
                cur.execute(sql.format(s="clean"))
                runs.append(cur.fetchall())
            if runs[0] != runs[1]:
                failures.append("statement %s is not deterministic on the clean server" % name)
            expected[name] = runs[0]
        res["expected_rows_total"] = sum(len(v) for v in expected.values())
        relib.log("expected answers: %d statements, %d rows" % (len(expected), res["expected_rows_total"]))
        mock.reset()

        deadline = time.monotonic() + a.max_seconds
        sessions = [Session(i, cluster, a.per_session, deadline, expected, stmts,
                            a.seed * 1000 + i, a.warmup) for i in range(a.sessions)]
        resets = 0
        mock_total = 0
        t0 = time.time()
        for s in sessions:
            s.start()
        last_log = time.time()
        while not all(s.done.is_set() for s in sessions):
            time.sleep(a.epoch)
            try:
                mock_total += mock.count()
                mock.reset()
                resets += 1
            except OSError as e:
                failures.append("mock reset failed: %s" % e)
            if time.time() - last_log > 30:
                last_log = time.time()
                run = sum(s.stats["run"] for s in sessions)
                relib.log("%d queries, %.0f q/s, wrong %d, unexpected %d"
                          % (run, run / (time.time() - t0),
                             sum(s.stats["wrong_answers"] for s in sessions),
                             sum(s.stats["unexpected_errors"] for s in sessions)))
        elapsed = time.time() - t0
        for s in sessions:
            s.join()
        res["soak_seconds"] = round(elapsed, 1)
        res["mock_resets"] = resets
        tot = {k: sum(s.stats[k] for s in sessions) for k in sessions[0].stats if k != "harness_error"}
        res["totals"] = tot
        res["qps"] = round(tot["run"] / elapsed, 1)
        by_target = {}
        for s in sessions:
            for k, v in s.by_target.items():
                t = by_target.setdefault(k, {"run": 0, "ok": 0, "errors": {}})
                t["run"] += v["run"]
                t["ok"] += v["ok"]
                for c, n in v["errors"].items():
                    t["errors"][c] = t["errors"].get(c, 0) + n
        res["by_target"] = by_target
        res["rss"] = [dict(s.rss, session=s.idx) for s in sessions]
        res["warmup"] = a.warmup
        res["examples"] = [e for s in sessions for e in s.examples]
        for s in sessions:
            if "harness_error" in s.stats:
                failures.append("session %d: harness error %s" % (s.idx, s.stats["harness_error"]))
        crashes = cluster.crash_lines()
        res["server_log_crash_lines"] = crashes[:20]
        res["postmaster_alive"] = cluster.postmaster_alive()
        with open(os.path.join(cluster.data, "postmaster.pid")) as f:
            res["postmaster_same_pid"] = int(f.readline()) == pm_pid
        # counted at each reset, so approximate (requests between the count
        # and the reset are lost)
        res["mock_requests_approx"] = mock_total + mock.count()
        res["mock_alive"] = mock.alive()

    if tot["run"] < a.min_total:
        failures.append("only %d queries ran (minimum %d)" % (tot["run"], a.min_total))
    if tot["wrong_answers"]:
        failures.append("%d wrong answers" % tot["wrong_answers"])
    if tot["unexpected_errors"]:
        failures.append("%d unexpected errors" % tot["unexpected_errors"])
    if tot["connection_lost"]:
        failures.append("%d lost connections" % tot["connection_lost"])
    if res["server_log_crash_lines"]:
        failures.append("server log: %s" % res["server_log_crash_lines"][0])
    if not res["postmaster_alive"] or not res["postmaster_same_pid"]:
        failures.append("the postmaster died or restarted")
    for e in res["examples"]:
        print("  ", e)
    verdict = relib.finish(res, failures, build, t_start, a.json)
    print("soak.py: %s (%d queries in %.0f s, %d ok, %d expected errors, %d unexpected, %d wrong)"
          % (verdict, tot["run"], elapsed, tot["ok"],
             tot["expected_errors"], tot["unexpected_errors"], tot["wrong_answers"]))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
