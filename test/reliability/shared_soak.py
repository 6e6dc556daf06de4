#!/usr/bin/env python3
"""shared_soak.py - 16 sessions over three keys and six servers against
window-limited mocks, with cancels and terminates in the middle of
requests: no backend left waiting, the shared memory within its bound, no
wrong answer (issue 16).

A private cluster with shared_preload_libraries = 'nimble_fdw' (so the
request budgets, the response cache, nimble_stats and nimble_scans are the
cluster's; README section 7a) and four mocks (test/mock_nimble.py, each on
a port of its own, so each is a host, hence a budget, of its own), all with
the same data set (--batches 100 --tasks-per-batch 3):

  mock  key      window     latency  servers
  a     key-a    100 / 2 s  20 ms    a1 (plain), a2 (cache_ttl 30, page_size 40)
  b     key-b     60 / 1 s  10 ms    b1, b2 (the same)
  c     key-c    200 / 5 s  30 ms    c1, c2 (the same)
  ref   key-ref  none        0 ms    ref: the reference answers

The two servers of a mock share its key (user mappings), hence one budget:
three budgets under load.  The reference answers are computed first on
ref, one batch id at a time (a keyed query's answer is the union of its
ids'), each LIMIT once, the count walk twice.

Then 16 workers, each on a connection of its own (every 4th with
statement_timeout 5 s), first warm up: a keyed scan of 8 ids on each
windowed mock, which opens the backend's keep-alive connections to it.
Once every budget is empty again (nimble_rate_limits: nothing in window,
in flight or held) the mocks' counters are reset and for --seconds (40)
the workers run queries on a random server of the six, and check every
answer against the reference (order-insensitive):

  progress_keyed  batch_progress WHERE batch_id = ANY(5-20 random ids,
                  1 time in 10 with an id that does not exist)
  tasks_keyed     batch_tasks WHERE batch_id = ANY(1-3 random ids)
  batches_limit   batches LIMIT 5 / 25 / 60 / 100 (a list walk, bounded)
  progress_count  count(*), sums over all of batch_progress (the list, then
                  a progress request per batch: 101 requests)

A chaos thread, every 0.5-1.5 s, picks a worker whose backend is active in
pg_stat_activity and sends it pg_cancel_backend or pg_terminate_backend
(half each); a terminated worker reconnects and goes on.  A monitor thread
samples nimble_rate_limits and nimble_scans every 0.25 s.

Allowed errors: 57014 "due to user request" when a cancel was sent to the
backend, 57014 "due to statement timeout" and 53400 "... after
statement_timeout" (the budget's early failure) in the statement_timeout
workers, and the lost connection of a backend that was terminated.
Anything else is a failure, and so is a wrong answer.

Checks (an "ok N - ..." / "not ok N - ..." line each; exit status 1 if one
fails): enough queries ran and the chaos sent both signals; 0 wrong
answers, 0 unexpected errors, 0 connections lost without a terminate; every
cancel that reached a running query ended it (57014) within 2 s and every
terminated backend left pg_stat_activity and nimble_scans within 5 s;
no sampled budget had more in its window than its limit, nimble_scans never
held more rows than workers nor a row of a backend gone for 3 s; after the
workers stop, within 5 s: every budget's in_flight is 0, nimble_scans is
empty, no other backend is active, the workers' backends are idle; each
windowed mock refused 0 requests and saw at most its window
(max_in_window), and (as root) the wire never carried more than the
window to it; the cached servers answered from the cache; the size of
'nimble_fdw' in pg_shmem_allocations is unchanged, nimble_rate_limits has
the 4 shared budgets (of 64); the server log has no crash line and none of
the API keys; the postmaster is alive with the same pid.

As root, a sniffer (AF_PACKET on lo, the kernel's timestamps) also notes
when each request to a mock was on the loopback wire (--no-sniff: not),
and two more figures come out of the mocks' /_mock/requests logs: how late
the mock read each arrival (its "t", headers read, minus the wire time),
and the most requests on the wire in any window of the mock, which is
checked against the window too: that is what nimble_fdw sent, whatever
the mock's reading.  When a mock refused requests, each 429 is set against
the admitted arrivals of the window before it, on the mock's clock and on
the wire (how many, how late the oldest were read, the signals and the
budget's samples around it), so that a late reading by the mock is told
from a real overrun.

Why the warm-up (--cold: none): when 16 backends open their connections to
a mock at once, the mock (Python, a thread per connection, on a 2-core
machine) reads some arrivals up to 260 ms after they were on the wire,
more than the budget's margin (2% of the window + 150 ms, src/throttle.c),
so the first window's oldest requests look younger than they are and the
mock refuses a few requests as the first window turns over (1.2 s on b,
2.3 s on a), while on the wire no window ever held more than the limit.
After the first second the mock reads within about 50 ms.  --cold shows it.

The last line is "shared_soak: N checks passed" (exit 0) or "shared_soak:
K of N checks FAILED: ..." (exit 1); --json FILE keeps the figures (for
report.py).  PostgreSQL 15 or later.

Usage: shared_soak.py [--seconds 40] [--workers 16] [--seed 16]
                      [--json FILE] [--no-build] [--keep] [--no-sniff] [--cold]
"""
import argparse
import bisect
import json
import os
import random
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # nothing written next to the scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402
from ids import batch_id as bid  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402

N_BATCHES = 100
TASKS_PER_BATCH = 3
DATA_ARGS = ("--batches", str(N_BATCHES), "--tasks-per-batch", str(TASKS_PER_BATCH))
MISSING = bid(0x999)
# name: (api key, (window requests, window seconds), latency ms)
MOCKS = {
    "a": ("key-a", (100, 2), 20),
    "b": ("key-b", (60, 1), 10),
    "c": ("key-c", (200, 5), 30),
}
REF_KEY = "key-ref"
KEYS = [m[0] for m in MOCKS.values()] + [REF_KEY]
# per mock: a plain server and one with the shared cache and smaller pages
SERVER_OPTS = {"1": {}, "2": {"cache_ttl": "30", "page_size": "40"}}
SERVERS = ["%s%s" % (m, s) for m in MOCKS for s in SERVER_OPTS]
LIMITS = (5, 25, 60, 100)
STATEMENT_TIMEOUT_MS = 5000
CANCEL_LAND_MAX_S = 2.0      # a cancel that reached a running query ends it within
EXIT_MAX_S = 5.0             # a terminated backend leaves the views within
SETTLE_S = 5.0               # after the workers stop, everything is back within
WARM_IDS = 8                 # a warm-up scan per worker and mock (connections)
STALE_SCAN_S = 3.0           # a nimble_scans row of a gone backend may linger this long
SHARED_BUDGETS = 64          # src/throttle.c NIMBLE_SHARED_BUDGETS

PROGRESS_SQL = ("SELECT batch_id, completed, completed_count, progress, completed_at "
                "FROM {s}.batch_progress WHERE batch_id = ANY(%s)")
TASKS_SQL = ("SELECT batch_id, task_id, state, status_code, api_type, error, error_type, "
             "created_at, modified_at, input, query, output_url, download_url "
             "FROM {s}.batch_tasks WHERE batch_id = ANY(%s)")
LIMIT_SQL = ("SELECT batch_id, account_name, username, completed, created_at, task_ids, "
             "task_count FROM {s}.batches LIMIT %d")
COUNT_SQL = ("SELECT count(*), count(*) FILTER (WHERE completed), sum(completed_count), "
             "sum(progress), max(completed_at) FROM {s}.batch_progress")
KINDS = (("progress_keyed", 40), ("tasks_keyed", 30), ("batches_limit", 20),
         ("progress_count", 10))


def canon(rows):
    """Rows in an order of their own (the comparison ignores the order)."""
    return sorted(rows, key=repr)


def first_line(e):
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


class Checks:
    def __init__(self):
        self.n = 0
        self.failed = []
        self.lines = []

    def ok(self, cond, what, detail=""):
        self.n += 1
        cond = bool(cond)
        self.lines.append({"n": self.n, "ok": cond, "what": what,
                           "detail": "" if cond else str(detail)})
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, what), flush=True)
        if not cond:
            self.failed.append(what)
            for line in str(detail).splitlines():
                print("#   " + line, flush=True)
        return cond


# ----------------------------------------------------------------------
# reference answers
# ----------------------------------------------------------------------

class Reference:
    """The answers of the unlimited mock, one batch id at a time."""

    def __init__(self, cur):
        self.progress, self.tasks, self.limit = {}, {}, {}
        self.problems = []
        ids = [bid(n) for n in range(1, N_BATCHES + 1)] + [MISSING]
        for i in ids:
            cur.execute(PROGRESS_SQL.format(s="ref"), ([i],))
            self.progress[i] = cur.fetchall()
            cur.execute(TASKS_SQL.format(s="ref"), ([i],))
            self.tasks[i] = cur.fetchall()
        for n in LIMITS:
            cur.execute(LIMIT_SQL.format(s="ref") % n)
            self.limit[n] = canon(cur.fetchall())
        runs = []
        for _ in range(2):
            cur.execute(COUNT_SQL.format(s="ref"))
            runs.append(cur.fetchall())
        if runs[0] != runs[1]:
            self.problems.append("the count walk differs between two runs on ref")
        self.count = runs[0]
        # sanity: the shapes, and a multi-id query is the union of its ids'
        if any(len(self.progress[i]) != 1 for i in ids[:-1]) or self.progress[MISSING]:
            self.problems.append("reference progress rows are not one per batch")
        if self.tasks[MISSING] or sum(len(v) for v in self.tasks.values()) != N_BATCHES * TASKS_PER_BATCH:
            self.problems.append("reference task rows are not %d per batch" % TASKS_PER_BATCH)
        if self.count[0][0] != N_BATCHES or any(len(self.limit[n]) != n for n in LIMITS):
            self.problems.append("reference count/limit rows are off: %s" % (self.count,))
        rnd = random.Random(5)
        for _ in range(5):
            some = rnd.sample(ids, 12)
            cur.execute(PROGRESS_SQL.format(s="ref"), (some,))
            if canon(cur.fetchall()) != self.keyed(self.progress, some):
                self.problems.append("a 12-id progress query on ref is not the union of its ids'")
            cur.execute(TASKS_SQL.format(s="ref"), (some[:3],))
            if canon(cur.fetchall()) != self.keyed(self.tasks, some[:3]):
                self.problems.append("a 3-id tasks query on ref is not the union of its ids'")

    @staticmethod
    def keyed(table, ids):
        return canon([r for i in ids for r in table[i]])

    def rows(self):
        return (sum(len(v) for v in self.progress.values()) + sum(len(v) for v in self.tasks.values())
                + sum(len(v) for v in self.limit.values()) + len(self.count))


# ----------------------------------------------------------------------
# the workers
# ----------------------------------------------------------------------

class Worker(threading.Thread):
    def __init__(self, idx, cluster, ref, seed, stop, st_ms, go=None):
        super().__init__(daemon=True)
        self.idx, self.cluster, self.ref, self.stop_ev, self.st_ms = idx, cluster, ref, stop, st_ms
        self.go = go                # warm up, then wait for it (None: start cold)
        self.warmed = threading.Event()
        self.warm_errors = []
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.signals = []           # dicts the chaos thread appends (under self.lock)
        self.pid = None
        self.conn = None
        self.pids = []
        self.stats = {"run": 0, "ok": 0, "wrong": 0, "allowed_errors": 0, "unexpected": 0,
                      "connection_lost": 0, "connection_lost_unexplained": 0, "reconnects": 0}
        self.by_kind = {}
        self.errors = {}            # "SQLSTATE reason" -> n
        self.examples = []
        self.q_start = self.q_prev_start = 0.0
        self.busy = False
        self.harness_error = None

    def note(self, s):
        if len(self.examples) < 8:
            self.examples.append("worker %d: %s" % (self.idx, s))

    def connect(self):
        for i in range(50):
            try:
                conn = self.cluster.connect()
                break
            except psycopg2.OperationalError:
                if i == 49:
                    raise
                time.sleep(0.1)
        cur = conn.cursor()
        if self.st_ms:
            cur.execute("SET statement_timeout = %d" % self.st_ms)
        with self.lock:
            self.conn, self.cur = conn, cur
            self.pid = conn.get_backend_pid()
            self.pids.append(self.pid)

    def choose(self):
        kind = self.rnd.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        server = self.rnd.choice(SERVERS)
        r = self.ref
        if kind == "progress_keyed":
            ids = [bid(n) for n in self.rnd.sample(range(1, N_BATCHES + 1), self.rnd.randint(5, 20))]
            if self.rnd.random() < 0.1:
                ids.append(MISSING)
            return kind, server, PROGRESS_SQL.format(s=server), (ids,), r.keyed(r.progress, ids)
        if kind == "tasks_keyed":
            ids = [bid(n) for n in self.rnd.sample(range(1, N_BATCHES + 1), self.rnd.randint(1, 3))]
            return kind, server, TASKS_SQL.format(s=server), (ids,), r.keyed(r.tasks, ids)
        if kind == "batches_limit":
            n = self.rnd.choice(LIMITS)
            return kind, server, LIMIT_SQL.format(s=server) % n, None, r.limit[n]
        return kind, server, COUNT_SQL.format(s=server), None, r.count

    def resolve(self, t_end, outcome):
        """Settle the signals sent to this worker's backend up to t_end:
        outcome is 'ok', 'cancelled', 'timeout', 'lost' or 'error'.
        Returns whether a cancel explains a 57014 'user request'."""
        explained = False
        with self.lock:
            for s in self.signals:
                if s["outcome"] is not None or s["t"] > t_end or s["pid"] != self.pid:
                    continue
                during = s["t"] >= self.q_start
                if s["kind"] == "cancel":
                    if outcome == "cancelled" and not explained and s["t"] >= self.q_prev_start:
                        explained = True
                        s["outcome"] = "landed"
                        s["delay"] = t_end - s["t"]
                    elif during:
                        # the query went on (finished, or failed otherwise)
                        s["outcome"] = "query_went_on_" + outcome
                        s["delay"] = t_end - s["t"]
                    else:
                        s["outcome"] = "idle"
                else:
                    if outcome == "lost":
                        s["outcome"] = "landed" if during else "landed_idle"
                        s["delay"] = t_end - s["t"] if during else None
                    elif during:
                        # the query finished first; the backend exits after it
                        s["outcome"] = "after_query_" + outcome
                        s["delay"] = t_end - s["t"]
        return explained

    def terminated(self, pid):
        with self.lock:
            return any(s["kind"] == "terminate" and s["pid"] == pid for s in self.signals)

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            self.harness_error = repr(e)
        finally:
            self.busy = False

    def count_error(self, key):
        self.errors[key] = self.errors.get(key, 0) + 1

    def warm_up(self):
        """Open the backend's connections to the three mocks: a keyed scan
        of WARM_IDS ids on each (its answers are not counted)."""
        for m in MOCKS:
            ids = [bid(n) for n in range(1 + self.idx, 1 + self.idx + WARM_IDS)]
            try:
                self.cur.execute(PROGRESS_SQL.format(s=m + "1"), (ids,))
                self.cur.fetchall()
            except psycopg2.Error as e:
                self.warm_errors.append(first_line(e))
                if self.conn.closed:
                    self.connect()

    def _run(self):
        self.connect()
        if self.go is not None:
            self.warm_up()
            self.warmed.set()
            self.go.wait()
        while not self.stop_ev.is_set():
            kind, server, sql, args, expect = self.choose()
            bk = self.by_kind.setdefault(kind, {"run": 0, "ok": 0, "wrong": 0, "errors": 0})
            bk["run"] += 1
            self.stats["run"] += 1
            self.q_prev_start, self.q_start = self.q_start, time.monotonic()
            self.busy = True
            try:
                self.cur.execute(sql, args)
                rows = self.cur.fetchall()
            except psycopg2.Error as e:
                t_end = time.monotonic()
                self.busy = False
                bk["errors"] += 1
                self.on_error(e, t_end, kind, server)
                continue
            t_end = time.monotonic()
            self.busy = False
            self.resolve(t_end, "ok")
            bk["ok"] += 1
            self.stats["ok"] += 1
            if canon(rows) != expect:
                bk["wrong"] += 1
                self.stats["wrong"] += 1
                self.note("WRONG ANSWER on %s/%s: %d rows, expected %d; first got %r, expected %r"
                          % (server, kind, len(rows), len(expect), canon(rows)[:1], expect[:1]))
        with self.lock:
            self.busy = False

    def on_error(self, e, t_end, kind, server):
        code = getattr(e, "pgcode", None)
        msg = first_line(e)
        lost = (self.conn.closed or code is None or code == "57P01"
                or isinstance(e, psycopg2.InterfaceError))
        if lost:
            pid = self.pid
            self.resolve(t_end, "lost")
            self.stats["connection_lost"] += 1
            self.count_error("57P01/connection closed")
            if self.terminated(pid):
                self.stats["allowed_errors"] += 1
            else:
                self.stats["connection_lost_unexplained"] += 1
                self.stats["unexpected"] += 1
                self.note("connection of pid %d lost without a terminate, on %s/%s: %s %s"
                          % (pid, server, kind, code, msg))
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.connect()
            self.stats["reconnects"] += 1
            return
        if code == "57014" and "user request" in msg:
            explained = self.resolve(t_end, "cancelled")
            self.count_error("57014 cancel")
            ok = explained
        elif code == "57014" and "statement timeout" in msg:
            self.resolve(t_end, "timeout")
            self.count_error("57014 statement_timeout")
            ok = bool(self.st_ms)
        elif code == "53400" and "after statement_timeout" in msg:
            self.resolve(t_end, "error")
            self.count_error("53400 after statement_timeout")
            ok = bool(self.st_ms)
        else:
            self.resolve(t_end, "error")
            self.count_error("%s %s" % (code, msg[:60]))
            ok = False
        if ok:
            self.stats["allowed_errors"] += 1
        else:
            self.stats["unexpected"] += 1
            self.note("unexpected %s on %s/%s (statement_timeout %d): %s"
                      % (code, server, kind, self.st_ms, msg))


# ----------------------------------------------------------------------
# chaos and the monitor
# ----------------------------------------------------------------------

class Chaos(threading.Thread):
    """Every 0.5-1.5 s, a cancel or a terminate of a busy worker's backend;
    follows each terminated pid until it has left pg_stat_activity and
    nimble_scans."""

    def __init__(self, cluster, workers, stop, seed):
        super().__init__(daemon=True)
        self.cluster, self.workers, self.stop_ev = cluster, workers, stop
        self.rnd = random.Random(seed)
        self.sent = {"cancel": 0, "terminate": 0}
        self.sent_false = {"cancel": 0, "terminate": 0}
        self.waiting_for = {}          # what the signalled scan was doing
        self.no_busy = 0
        self.exits = []                # (pid, seconds to leave both views or None)
        self.pending = []              # [pid, t_sent]
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)

    def follow_exits(self, cur, final=False):
        if not self.pending:
            return
        pids = [p for p, _ in self.pending]
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) "
                    "UNION SELECT pid FROM nimble_scans WHERE pid = ANY(%s)", (pids, pids))
        alive = {r[0] for r in cur.fetchall()}
        now = time.monotonic()
        keep = []
        for pid, t in self.pending:
            if pid not in alive:
                self.exits.append((pid, round(now - t, 3)))
            elif now - t > EXIT_MAX_S or final:
                self.exits.append((pid, None))
            else:
                keep.append([pid, t])
        self.pending = keep

    def _run(self):
        conn = self.cluster.connect()
        cur = conn.cursor()
        next_t = time.monotonic() + self.rnd.uniform(0.5, 1.5)
        while not self.stop_ev.is_set():
            self.follow_exits(cur)
            if time.monotonic() < next_t:
                time.sleep(0.05)
                continue
            next_t = time.monotonic() + self.rnd.uniform(0.5, 1.5)
            by_pid = {w.pid: w for w in self.workers if w.pid and w.busy}
            if not by_pid:
                self.no_busy += 1
                continue
            cur.execute("SELECT a.pid, s.waiting_for FROM pg_stat_activity a "
                        "LEFT JOIN nimble_scans s USING (pid) "
                        "WHERE a.state = 'active' AND a.pid = ANY(%s)", (list(by_pid),))
            cands = cur.fetchall()
            if not cands:
                self.no_busy += 1
                continue
            # most scans wait for the budget; half the time, when there is
            # one, pick a scan waiting for the API's answers (in mid-request)
            api = [x for x in cands if x[1] == "api"]
            pid, waiting = self.rnd.choice(api if api and self.rnd.random() < 0.5 else cands)
            w = by_pid[pid]
            kind = self.rnd.choice(("cancel", "terminate"))
            entry = {"kind": kind, "pid": pid, "t": time.monotonic(), "outcome": None,
                     "delay": None, "waiting_for": waiting}
            with w.lock:
                if w.pid != pid:
                    continue
                w.signals.append(entry)
            fn = "pg_cancel_backend" if kind == "cancel" else "pg_terminate_backend"
            cur.execute("SELECT %s(%%s)" % fn, (pid,))
            done = cur.fetchone()[0]
            self.sent[kind] += 1
            key = "%s while %s" % (kind, waiting or "not waiting (decoding, rows, planning)")
            self.waiting_for[key] = self.waiting_for.get(key, 0) + 1
            if not done:
                self.sent_false[kind] += 1
                entry["outcome"] = "pid_gone"
            if kind == "terminate":
                self.pending.append([pid, entry["t"]])
        deadline = time.monotonic() + EXIT_MAX_S + 0.5
        while self.pending and time.monotonic() < deadline:
            self.follow_exits(cur)
            time.sleep(0.05)
        self.follow_exits(cur, final=True)
        conn.close()


class Monitor(threading.Thread):
    """nimble_rate_limits and nimble_scans every 0.25 s."""

    def __init__(self, cluster, n_workers, stop, names):
        super().__init__(daemon=True)
        self.cluster, self.n_workers, self.stop_ev = cluster, n_workers, stop
        self.names = names          # host -> the mock's name
        self.samples = 0
        self.budget_max = {}        # host -> {in_window, in_flight, limit, window}
        self.over_window = []       # samples with in_window > limit_requests
        self.max_scans = 0
        self.max_scans_per_pid = 0
        self.max_budget_rows = 0
        self.stale = {}             # pid -> first seen with no backend
        self.stale_long = []        # (pid, seconds)
        self.waiting_for = {}
        self.series = {}            # host -> [(monotonic, in_window, in_flight)]
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)

    def _run(self):
        conn = self.cluster.connect()
        cur = conn.cursor()
        while not self.stop_ev.is_set():
            self.sample(cur)
            time.sleep(0.25)
        conn.close()

    def sample(self, cur):
        self.samples += 1
        cur.execute("SELECT host, limit_requests, window_seconds, in_window, in_flight "
                    "FROM nimble_rate_limits WHERE shared")
        rows = cur.fetchall()
        self.max_budget_rows = max(self.max_budget_rows, len(rows))
        now = time.monotonic()
        for host, lim, win, inw, inf in rows:
            host = self.names.get(host, host)
            self.series.setdefault(host, []).append((now, inw, inf))
            m = self.budget_max.setdefault(host, {"in_window": 0, "in_flight": 0,
                                                  "limit_requests": lim, "window_seconds": win})
            m["in_window"] = max(m["in_window"], inw or 0)
            m["in_flight"] = max(m["in_flight"], inf or 0)
            m["limit_requests"], m["window_seconds"] = lim, win
            if lim is not None and inw is not None and inw > lim and len(self.over_window) < 20:
                self.over_window.append((host, inw, lim))
        cur.execute("SELECT s.pid, s.waiting_for, a.pid IS NOT NULL FROM nimble_scans s "
                    "LEFT JOIN pg_stat_activity a USING (pid)")
        scans = cur.fetchall()
        self.max_scans = max(self.max_scans, len(scans))
        per_pid = {}
        now = time.monotonic()
        for pid, waiting, alive in scans:
            per_pid[pid] = per_pid.get(pid, 0) + 1
            k = waiting or "NULL"
            self.waiting_for[k] = self.waiting_for.get(k, 0) + 1
            if not alive:
                t0 = self.stale.setdefault(pid, now)
                if now - t0 > STALE_SCAN_S and pid not in [p for p, _ in self.stale_long]:
                    self.stale_long.append((pid, round(now - t0, 2)))
        if per_pid:
            self.max_scans_per_pid = max(self.max_scans_per_pid, max(per_pid.values()))


# ----------------------------------------------------------------------
# the mocks' request logs, when they refused something
# ----------------------------------------------------------------------

class Sniffer(threading.Thread):
    """--sniff (root): the kernel's time of each HTTP request on the
    loopback wire (AF_PACKET on lo, SO_TIMESTAMPNS), by mock port and
    request target, as time.monotonic() values, to compare with the mock's
    arrival times (headers read)."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        import socket
        self.ports = set(ports)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, 35, 1)   # SO_TIMESTAMPNS
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)   # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.settimeout(0.2)
        self.stop_ev = threading.Event()
        self.seen = {}              # (port, target) -> [monotonic times]
        self.segments = set()       # (client port, port, sequence number)
        self.retransmits = 0        # a GET's segment seen again: counted once
        self.n = 0
        self.drops = None           # what the kernel could not queue for us
        # CLOCK_REALTIME (the kernel's stamps) -> CLOCK_MONOTONIC
        self.offset = min(((time.time() - time.monotonic()) for _ in range(5)))

    def run(self):
        import socket
        import struct
        while not self.stop_ev.is_set():
            try:
                data, anc, _, addr = self.sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            except OSError:
                break
            if addr[2] != 0:        # PACKET_HOST only: each loopback packet once
                continue
            ip = data[14:]
            if len(ip) < 40 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 15) * 4:]
            sport, dport, seq = struct.unpack("!HHI", tcp[0:8])
            payload = tcp[(tcp[12] >> 4) * 4:]
            if dport not in self.ports or not payload.startswith(b"GET "):
                continue
            if (sport, dport, seq) in self.segments:
                self.retransmits += 1
                continue
            self.segments.add((sport, dport, seq))
            t = None
            for level, typ, val in anc:
                if level == socket.SOL_SOCKET and typ == 35:
                    sec, nsec = struct.unpack("qq", val[:16])
                    t = sec + nsec / 1e9 - self.offset
            if t is None:
                t = time.monotonic()
            target = payload[4:payload.find(b" ", 4)].decode("latin-1")
            if target.startswith("/_mock/"):
                continue            # the harness's own control requests
            self.seen.setdefault((dport, target), []).append(t)
            self.n += 1

    def stop(self):
        import struct
        self.stop_ev.set()
        self.join(2)
        try:
            # PACKET_STATISTICS: packets, drops (since the last call)
            self.drops = struct.unpack("II", self.sock.getsockopt(263, 6, 8))[1]
        except OSError:
            pass
        self.sock.close()


def analyse_refusals(mock, limit, wire=None, signals=(), samples=()):
    """Each 429 of the window limit against the admitted arrivals before it,
    from the mock's own request log (arrival = headers read, monotonic);
    with wire (Sniffer.seen), each request's time on the loopback wire too,
    so that an arrival the mock read late is told from a start too early."""
    import urllib.request
    with urllib.request.urlopen(mock.base + "/_mock/requests", timeout=60) as r:
        reqs = json.loads(r.read().decode())
    n, s = limit
    t0 = reqs[0]["t"] if reqs else 0
    adm = sorted((q["t"], q["path"]) for q in reqs if q["status"] != 429)
    admitted = [t for t, _ in adm]
    refused = [q for q in reqs if q["status"] == 429]
    out = {"requests_logged": len(reqs), "refused_logged": len(refused),
           "first_arrival_monotonic": t0, "examples": []}
    best, j = 0, 0
    for i, t in enumerate(admitted):
        while admitted[j] <= t - s:
            j += 1
        best = max(best, i - j + 1)
    out["max_admitted_in_any_window"] = best
    gaps = [b - a for a, b in zip(admitted, admitted[1:])]
    out["arrivals_within_1ms_of_previous"] = sum(1 for g in gaps if g < 0.001)

    wire_of = {}
    if wire is not None:
        # each logged request's wire time: the latest unmatched one of its
        # target at most 1 ms after its arrival... in arrival order
        pools = {k[1]: sorted(v) for k, v in wire.items() if k[0] == mock.port}
        used = {}
        for q in sorted(reqs, key=lambda q: q["t"]):
            pool = pools.get(q["path"], [])
            k = used.get(q["path"], 0)
            if k < len(pool) and pool[k] <= q["t"] + 0.001:
                wire_of[(q["t"], q["path"])] = pool[k]
                used[q["path"]] = k + 1
        out["matched_on_the_wire"] = len(wire_of)
        # the most requests sent (by the wire: every GET to the mock's port)
        # in any window: more than n is a start too early, not a late read
        wt = sorted((t, k[1]) for k, v in wire.items() if k[0] == mock.port for t in v)
        matched = set(wire_of.values())
        best, j, at = 0, 0, None
        for i, (t, _) in enumerate(wt):
            while wt[j][0] <= t - s:
                j += 1
            if i - j + 1 > best:
                best, at = i - j + 1, (j, i)
        out["requests_on_wire"] = len(wt)
        out["on_wire_not_in_the_mock_log"] = [(round(t - t0, 3), pth) for t, pth in wt
                                              if t not in matched][:10]
        out["max_on_wire_in_any_window"] = best
        if at:
            w = wt[at[0]:at[1] + 1]
            out["max_on_wire_window"] = {
                "from_s": round(w[0][0] - t0, 3), "to_s": round(w[-1][0] - t0, 3),
                "not_in_the_mock_log": sum(1 for t, _ in w if t not in matched)}
        lag = sorted(q["t"] - wire_of[(q["t"], q["path"])] for q in reqs
                     if (q["t"], q["path"]) in wire_of)
        if lag:
            out["mock_read_lag_s"] = {"median": round(relib.median(lag), 4),
                                      "p99": round(relib.percentile(lag, 99), 4),
                                      "max": round(lag[-1], 4)}
        # when the mock read late: reads over 100 ms after the wire, by
        # second since the first arrival
        late = {}
        for q in reqs:
            w = wire_of.get((q["t"], q["path"]))
            if w is not None and q["t"] - w > 0.1:
                k = int(q["t"] - t0)
                late[k] = late.get(k, 0) + 1
        out["reads_over_100ms_late_by_second"] = dict(sorted(late.items()))
    for q in refused[:10]:
        t = q["t"]
        lo = bisect.bisect_right(admitted, t - s)
        hi = bisect.bisect_right(admitted, t)
        win = adm[lo:hi]
        ex = {"t_since_first_arrival": round(t - t0, 4), "path": q["path"],
              "admitted_in_window_before": len(win),
              "oldest_in_window_ago_s": round(t - win[0][0], 4) if win else None,
              "signals_in_window": [(x["kind"], round(x["t"] - t, 3)) for x in signals
                                    if t - s - 0.5 <= x["t"] <= t],
              "budget_samples": [(round(st - t, 2), inw, inf) for st, inw, inf in samples
                                 if t - s <= st <= t + 0.5]}
        if wire_of:
            wt = wire_of.get((t, q["path"]))
            wins = [wire_of.get(x) for x in win]
            known = [w for w in wins if w is not None]
            ex["refused_read_lag_s"] = round(t - wt, 4) if wt else None
            ex["window_matched_on_wire"] = len(known)
            if wt and known:
                # the budget's window, margin included: 2% + 150 ms
                span = s * 1.02 + 0.15
                ex["on_wire_in_window_before"] = sum(1 for w in known if w > wt - s)
                ex["on_wire_in_budget_window_before"] = sum(1 for w in known if w > wt - span)
                ex["oldest_on_wire_ago_s"] = round(wt - min(known), 4)
                oldest = sorted(zip(win, wins), key=lambda x: x[0][0])[:5]
                ex["oldest_five_read_lag_s"] = [round(a[0] - w, 4) if w else None
                                                for a, w in oldest]
        out["examples"].append(ex)
    return out


# ----------------------------------------------------------------------

def one(cur, sql, args=None):
    cur.execute(sql, args)
    r = cur.fetchone()
    return r[0] if r else None


def shmem_size(cur):
    cur.execute("SELECT size, allocated_size FROM pg_shmem_allocations WHERE name = 'nimble_fdw'")
    r = cur.fetchone()
    return tuple(r) if r else None


def poll(fn, timeout, step=0.05):
    t0 = time.monotonic()
    while True:
        v = fn()
        if v or time.monotonic() - t0 >= timeout:
            return v, time.monotonic() - t0
        time.sleep(step)


def setup(cur, mocks):
    cur.execute("CREATE EXTENSION nimble_fdw")

    def server(name, mock, key, opts):
        o = {"url": mock.url()}
        o.update(opts)
        cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (%s)"
                    % (name, ", ".join("%s %s" % (k, relib.quote_lit(v)) for k, v in o.items())))
        cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key %s)"
                    % (name, relib.quote_lit(key)))
        cur.execute("CREATE SCHEMA %s" % name)
        cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))
    server("ref", mocks["ref"], REF_KEY, {})
    for m, (key, _, _) in MOCKS.items():
        for suffix, opts in SERVER_OPTS.items():
            server(m + suffix, mocks[m], key, opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--min-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--json")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    ap.add_argument("--no-sniff", action="store_true",
                    help="do not stamp the requests on the loopback wire (needs root)")
    ap.add_argument("--cold", action="store_true",
                    help="no warm-up: every backend opens its connections to the mocks "
                         "as the soak starts")
    a = ap.parse_args()
    t_start = time.time()

    def on_signal(signum, frame):
        raise SystemExit("shared_soak: stopped by signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    # a backstop: the run stops itself (and everything it started) after this
    total_s = int(a.seconds + 150)

    def on_alarm(signum, frame):
        raise TimeoutError("shared_soak: the run took more than %d s" % total_s)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(total_s)

    build = relib.build_install(a.no_build)
    if int(relib.pg_major()) < 15:
        sys.exit("shared_soak: shared budgets need PostgreSQL 15 or later (%s is %s)"
                 % (relib.PG_CONFIG, relib.pg_major()))
    relib.log("PostgreSQL %s | nimble_fdw.so %s | %s"
              % (relib.pg_major(), build["md5"][:12], build["repo"]))
    c = Checks()
    res = {"script": "shared_soak.py", "build": build, "machine": relib.machine(),
           "workers": a.workers, "seconds_asked": a.seconds, "seed": a.seed,
           "statement_timeout_ms": STATEMENT_TIMEOUT_MS,
           "data": {"batches": N_BATCHES, "tasks_per_batch": TASKS_PER_BATCH},
           "mock_windows": {m: "%d/%ss, latency %d ms" % (v[1][0], v[1][1], v[2])
                            for m, v in MOCKS.items()},
           "servers": SERVERS}
    conf = {"shared_preload_libraries": "'nimble_fdw'",
            "nimble_fdw.allowed_hosts": "'127.0.0.1:*'",
            "max_connections": "40"}
    cluster = relib.Cluster("shared_soak", conf)
    if a.keep:
        relib.log("cluster directory:", cluster.dir)
    mocks = {}
    try:
        for m, (key, (n, s), lat) in MOCKS.items():
            d = os.path.join(cluster.dir, "mock_" + m)
            os.mkdir(d)
            mocks[m] = relib.Mock(d, *DATA_ARGS, "--api-key", key, "--window-limit",
                                  "%d/%s" % (n, s), "--latency-ms", str(lat))
        d = os.path.join(cluster.dir, "mock_ref")
        os.mkdir(d)
        mocks["ref"] = relib.Mock(d, *DATA_ARGS, "--api-key", REF_KEY)
        cluster.start()
        pm_pid = cluster.postmaster_pid
        su = cluster.connect()
        scur = su.cursor()
        setup(scur, mocks)
        t = time.monotonic()
        ref = Reference(scur)
        relib.log("reference answers: %d rows in %.1f s" % (ref.rows(), time.monotonic() - t))
        c.ok(not ref.problems, "the reference answers from the unlimited mock are consistent "
             "(%d rows; keyed = the union of single ids; the count walk twice the same)" % ref.rows(),
             "\n".join(ref.problems))
        res["reference_rows"] = ref.rows()
        size0 = shmem_size(scur)
        res["shmem_size_start"] = size0
        sniffer = None
        if not a.no_sniff:
            try:
                sniffer = Sniffer([mocks[m].port for m in MOCKS])
                sniffer.start()
            except (OSError, AttributeError) as e:
                relib.log("no wire timestamps (--no-sniff, or not root): %s" % e)
        res["sniffed"] = sniffer is not None

        # --- the workers' connections, then the soak ---
        stop = threading.Event()
        go = None if a.cold else threading.Event()
        workers = [Worker(i, cluster, ref, a.seed * 1000 + i, stop,
                          STATEMENT_TIMEOUT_MS if i % 4 == 0 else 0, go) for i in range(a.workers)]
        chaos = Chaos(cluster, workers, stop, a.seed)
        names = {m.base: n for n, m in mocks.items()}
        monitor = Monitor(cluster, a.workers, stop, names)
        def reset():
            for m in MOCKS:
                mocks[m].reset()
            scur.execute("SELECT nimble_stats_reset()")
            if sniffer:
                sniffer.seen = {}   # (the thread looks it up for each packet)
        if go is None:
            reset()                 # cold: the workers' first queries are the soak's
        for w in workers:
            w.start()
        res["warm_up"] = None
        if go is not None:
            t = time.monotonic()
            for w in workers:
                w.warmed.wait(60)
            t_warm = time.monotonic() - t

            def drained():
                scur.execute("SELECT count(*) = 0 FROM nimble_rate_limits WHERE host <> %s "
                             "AND (in_window > 0 OR in_flight > 0 OR held_until IS NOT NULL)",
                             (mocks["ref"].base,))
                return scur.fetchone()[0]
            ok_drained, t_drain = poll(drained, 15, 0.1)
            res["warm_up"] = {"seconds": round(t_warm, 1), "drain_seconds": round(t_drain, 1),
                              "drained": ok_drained,
                              "requests": {m: mocks[m].stats()["total"] for m in MOCKS},
                              "refused": {m: mocks[m].stats().get("refused") for m in MOCKS},
                              "errors": [e for w in workers for e in w.warm_errors][:10]}
            relib.log("warm-up: %d ids x 3 mocks per worker, %.1f s, budgets empty %.1f s later; %s"
                      % (WARM_IDS, t_warm, t_drain, res["warm_up"]["refused"]))
        t0 = time.monotonic()
        if go is not None:
            reset()
            t0 = time.monotonic()
            go.set()
        monitor.start()
        chaos.start()
        last = t0
        while time.monotonic() - t0 < a.seconds:
            time.sleep(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                relib.log("%.0f s: %d queries, %d wrong, %d unexpected, signals %s"
                          % (last - t0, sum(w.stats["run"] for w in workers),
                             sum(w.stats["wrong"] for w in workers),
                             sum(w.stats["unexpected"] for w in workers), chaos.sent))
        stop.set()
        t_stop = time.monotonic()
        for w in workers:
            w.join(60)
        soak_s = time.monotonic() - t0
        relib.log("workers stopped %.1f s after the stop" % (time.monotonic() - t_stop))
        chaos.join(EXIT_MAX_S + 10)
        monitor.join(10)
        stuck = [w.idx for w in workers if w.is_alive()]

        # --- afterwards, the workers' connections still open (idle) ---
        def budgets():
            scur.execute("SELECT host, shared, limit_requests, window_seconds, in_window, "
                         "in_flight, held_until FROM nimble_rate_limits ORDER BY host")
            return scur.fetchall()

        def scans():
            scur.execute("SELECT pid, server, waiting_for FROM nimble_scans")
            return scur.fetchall()

        b_end, t_b = poll(lambda: all(r[5] == 0 for r in budgets()), SETTLE_S)
        b_last = budgets()
        scans_end, t_s = poll(lambda: scans() == [], SETTLE_S)
        scans_last = scans()
        # (a backend terminated as its last query ended is gone, though its
        # worker did not notice)
        worker_pids = [w.pid for w in workers if w.conn is not None and not w.conn.closed
                       and not w.terminated(w.pid)]
        scur.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 80) "
                     "FROM pg_stat_activity WHERE backend_type = 'client backend' "
                     "AND pid <> pg_backend_pid() AND (state <> 'idle' OR pid = ANY(%s))",
                     (worker_pids,))
        act = scur.fetchall()
        others_active = [r for r in act if r[0] not in worker_pids and r[1] == "active"]
        workers_not_idle = [r for r in act if r[0] in worker_pids and r[1] != "idle"]
        workers_seen = sum(1 for r in act if r[0] in worker_pids)
        for w in workers:
            try:
                w.conn.close()
            except (psycopg2.Error, AttributeError):
                pass
        gone, t_gone = poll(lambda: one(scur, "SELECT count(*) = 0 FROM pg_stat_activity "
                                              "WHERE pid = ANY(%s)", (worker_pids,)), SETTLE_S)
        stats = {m: mocks[m].stats() for m in MOCKS}
        if sniffer:
            sniffer.stop()
            res["sniffer"] = {"get_segments": sniffer.n, "retransmitted_gets": sniffer.retransmits,
                              "kernel_drops": sniffer.drops}
        sigs_all = [x for w in workers for x in w.signals]
        refusal_analysis = {m: analyse_refusals(mocks[m], MOCKS[m][1],
                                                sniffer.seen if sniffer else None, sigs_all,
                                                monitor.series.get(m, ()))
                            for m in MOCKS if stats[m].get("refused") or sniffer}
        scur.execute("SELECT server, requests, retries, cache_hits, errors, errors_by_status::text, "
                     "rate_limit_wait_ms, scans FROM nimble_stats ORDER BY server")
        nstats = {r[0]: {"requests": r[1], "retries": r[2], "cache_hits": r[3], "errors": r[4],
                         "errors_by_status": r[5], "rate_limit_wait_ms": r[6], "scans": r[7]}
                  for r in scur.fetchall()}
        size1 = shmem_size(scur)
        res["shmem_size_end"] = size1
        scur.execute("SELECT count(*), count(*) FILTER (WHERE shared) FROM nimble_rate_limits")
        n_budgets, n_shared = scur.fetchone()
        su.close()
        log = cluster.log_text()
        crashes = cluster.crash_lines()
        fatal_term = sum(1 for l in log.splitlines()
                         if "FATAL:  terminating connection due to administrator command" in l)
        keys_in_log = [k for k in KEYS if k in log]
        res["postmaster_alive"] = cluster.postmaster_alive()
        with open(os.path.join(cluster.data, "postmaster.pid")) as f:
            res["postmaster_same_pid"] = int(f.readline()) == pm_pid
        mocks_alive = all(m.alive() for m in mocks.values())
    finally:
        for m in mocks.values():
            m.stop()
        cluster.stop()
        if not a.keep:
            cluster.remove()

    # --- figures ---
    tot = {k: sum(w.stats[k] for w in workers) for k in workers[0].stats}
    by_kind = {}
    for w in workers:
        for k, v in w.by_kind.items():
            t = by_kind.setdefault(k, {"run": 0, "ok": 0, "wrong": 0, "errors": 0})
            for f in t:
                t[f] += v[f]
    errors = {}
    for w in workers:
        for k, v in w.errors.items():
            errors[k] = errors.get(k, 0) + v
    sigs = [s for w in workers for s in w.signals]
    outcomes = {}
    for s in sigs:
        k = "%s: %s" % (s["kind"], s["outcome"] or "unresolved")
        outcomes[k] = outcomes.get(k, 0) + 1
    landed = {k: sorted(s["delay"] for s in sigs if s["kind"] == k and s["outcome"] == "landed"
                        and s["delay"] is not None) for k in ("cancel", "terminate")}
    went_on = sorted(s["delay"] for s in sigs if s["kind"] == "cancel"
                     and (s["outcome"] or "").startswith("query_went_on"))
    # a cancel whose query kept running past CANCEL_LAND_MAX_S was not acted on
    ignored = [s for s in sigs if s["kind"] == "cancel"
               and (s["outcome"] or "").startswith("query_went_on") and s["delay"] > CANCEL_LAND_MAX_S]
    exits_ok = [t for _, t in chaos.exits if t is not None]
    exits_bad = [p for p, t in chaos.exits if t is None]

    def dist(v):
        return {"n": len(v), "median_s": round(relib.median(v), 3) if v else None,
                "max_s": round(max(v), 3) if v else None}

    res.update({
        "soak_seconds": round(soak_s, 1),
        "totals": tot, "qps": round(tot["run"] / soak_s, 1), "by_kind": by_kind, "errors": errors,
        "signals_sent": chaos.sent, "signals_to_gone_pid": chaos.sent_false,
        "signals_by_what_the_scan_did": chaos.waiting_for, "chaos_ticks_without_busy_worker": chaos.no_busy,
        "signal_outcomes": outcomes, "cancel_landed": dist(landed["cancel"]),
        "terminate_landed": dist(landed["terminate"]), "cancel_query_went_on": dist(went_on),
        "terminated_exit": dist(exits_ok), "terminated_not_gone": exits_bad,
        "monitor": {"samples": monitor.samples, "budget_max": monitor.budget_max,
                    "over_window": monitor.over_window, "max_scans": monitor.max_scans,
                    "max_scans_per_pid": monitor.max_scans_per_pid,
                    "max_budget_rows": monitor.max_budget_rows,
                    "stale_scan_rows_long": monitor.stale_long,
                    "scan_waiting_for_samples": monitor.waiting_for},
        "end": {"budgets_in_flight_0_after_s": round(t_b, 2) if b_end else None,
                "budgets": [[names.get(r[0], r[0])] + [str(x) for x in r[1:]] for r in b_last],
                "nimble_scans_empty_after_s": round(t_s, 2) if scans_end else None,
                "nimble_scans_left": scans_last, "others_active": others_active,
                "workers_not_idle": workers_not_idle, "worker_backends_seen": workers_seen,
                "worker_backends_gone_after_close_s": round(t_gone, 2) if gone else None},
        "mocks": {m: {k: stats[m].get(k) for k in ("total", "progress", "details", "list",
                                                    "refused", "max_in_window", "unauthorized")}
                  for m in MOCKS},
        "refusal_analysis": refusal_analysis,
        "nimble_stats": nstats,
        "budget_rows": {"all": n_budgets, "shared": n_shared, "capacity": SHARED_BUDGETS},
        "server_log_crash_lines": crashes[:20], "server_log_fatal_terminate_lines": fatal_term,
        "keys_in_server_log": keys_in_log,
        "examples": [e for w in workers for e in w.examples][:30],
        "harness_errors": [("worker %d" % w.idx, w.harness_error) for w in workers if w.harness_error]
        + ([("chaos", chaos.error)] if chaos.error else [])
        + ([("monitor", monitor.error)] if monitor.error else []),
    })
    relib.log("%d queries in %.0f s (%.1f/s); errors %s; signals %s; outcomes %s"
              % (tot["run"], soak_s, res["qps"], errors, chaos.sent, outcomes))

    # --- checks ---
    print("# the soak", flush=True)
    c.ok(not res["harness_errors"] and not stuck,
         "every worker, the chaos and the monitor thread ran to their end",
         "%s; workers still running: %s" % (res["harness_errors"], stuck))
    c.ok(tot["run"] >= a.min_queries and all(by_kind.get(k, {}).get("ok") for k, _ in KINDS),
         "%d queries ran in %.0f s (%.1f/s; at least %d), every kind answered at least once: %s"
         % (tot["run"], soak_s, res["qps"], a.min_queries,
            ", ".join("%s %d/%d" % (k, v["ok"], v["run"]) for k, v in sorted(by_kind.items()))))
    min_sig = max(1, int(a.seconds / 8))
    c.ok(chaos.sent["cancel"] >= min_sig and chaos.sent["terminate"] >= min_sig
         and landed["cancel"] and landed["terminate"],
         "the chaos sent %d cancels and %d terminates (at least %d each) to busy backends "
         "(%d and %d ended a query); the scan was then waiting for: %s"
         % (chaos.sent["cancel"], chaos.sent["terminate"], min_sig, len(landed["cancel"]),
            len(landed["terminate"]),
            ", ".join("%s x%d" % kv for kv in sorted(chaos.waiting_for.items()))), outcomes)
    c.ok(tot["wrong"] == 0, "0 wrong answers in %d answers checked against the reference"
         % tot["ok"], "\n".join(e for e in res["examples"] if "WRONG" in e))
    c.ok(tot["unexpected"] == 0,
         "0 unexpected errors (errors by kind: %s)"
         % (", ".join("%s x%d" % kv for kv in sorted(errors.items())) or "none"),
         "\n".join(e for e in res["examples"] if "WRONG" not in e))
    c.ok(tot["connection_lost_unexplained"] == 0 and tot["connection_lost"] > 0,
         "%d connections lost, each one a terminated backend's (the worker reconnected)"
         % tot["connection_lost"])
    c.ok(not ignored and landed["cancel"] and max(landed["cancel"]) <= CANCEL_LAND_MAX_S,
         "every cancel that reached a running query ended it: 57014 %s after the signal "
         "(median %s s, max %s s; at most %.0f s), none went on past %.0f s"
         % ("x%d" % len(landed["cancel"]), res["cancel_landed"]["median_s"],
            res["cancel_landed"]["max_s"], CANCEL_LAND_MAX_S, CANCEL_LAND_MAX_S),
         "went on: %s" % [(s["pid"], round(s["delay"], 2), s["outcome"], s["waiting_for"])
                          for s in ignored])
    c.ok(not exits_bad and len(exits_ok) == chaos.sent["terminate"],
         "every terminated backend left pg_stat_activity and nimble_scans within %.0f s "
         "(%d; median %s s, max %s s)"
         % (EXIT_MAX_S, len(exits_ok), res["terminated_exit"]["median_s"],
            res["terminated_exit"]["max_s"]),
         "not gone: %s" % exits_bad)
    print("# during the soak (%d samples of the views)" % monitor.samples, flush=True)
    c.ok(monitor.samples > 10 and not monitor.over_window,
         "no budget ever had more requests in its window than its limit: %s"
         % "; ".join("%s %s/%s (in_flight up to %s)"
                     % (h, v["in_window"], v["limit_requests"], v["in_flight"])
                     for h, v in sorted(monitor.budget_max.items())),
         monitor.over_window)
    c.ok(monitor.max_scans <= a.workers and monitor.max_scans_per_pid <= 1 and not monitor.stale_long,
         "nimble_scans: at most %d rows (%d workers), one per backend, no row of a gone "
         "backend for more than %.0f s" % (monitor.max_scans, a.workers, STALE_SCAN_S),
         "per pid %d, stale %s" % (monitor.max_scans_per_pid, monitor.stale_long))
    print("# afterwards", flush=True)
    c.ok(b_end,
         "every budget's in_flight is 0 within %.0f s of the workers' stop (%s)"
         % (SETTLE_S, "%.2f s" % t_b if b_end else "not"), b_last)
    c.ok(scans_end, "nimble_scans is empty (%s)"
         % ("%.2f s" % t_s if scans_end else "not"), scans_last)
    c.ok(not others_active and not workers_not_idle and workers_seen == len(worker_pids),
         "no backend but this one is active; the %d workers' backends are idle" % len(worker_pids),
         "others %s; workers %s" % (others_active, workers_not_idle))
    for m, (key, (n, s), _) in MOCKS.items():
        st = stats[m]
        an = refusal_analysis.get(m) or {}
        lag = an.get("mock_read_lag_s")
        c.ok(st.get("refused") == 0,
             "mock %s (%s, %d/%s s): %s requests, refused %s%s"
             % (m, key, n, s, st.get("total"), st.get("refused"),
                "; the mock read arrivals %s ms after the wire (median), %s ms at most"
                % (round(lag["median"] * 1000, 1), round(lag["max"] * 1000)) if lag else ""),
             json.dumps(an, indent=1))
        c.ok(st.get("max_in_window") is not None and st["max_in_window"] <= n,
             "mock %s: max_in_window %s <= %d" % (m, st.get("max_in_window"), n))
        if sniffer:
            c.ok(an.get("max_on_wire_in_any_window", n + 1) <= n,
                 "mock %s: on the loopback wire, at most %s of its %s requests in any %s s "
                 "(<= %d)" % (m, an.get("max_on_wire_in_any_window"), an.get("requests_on_wire"),
                              s, n))
    hits = {s: nstats.get(s, {}).get("cache_hits") for s in SERVERS if s.endswith("2")}
    c.ok(all(v for v in hits.values()),
         "the shared cache answered on the cache_ttl servers: cache hits %s" % hits, nstats)
    c.ok(size0 and size1 == size0,
         "the size of 'nimble_fdw' in pg_shmem_allocations is unchanged (%s bytes)"
         % (size1 and size1[0]), "start %s, end %s" % (size0, size1))
    c.ok(n_budgets == n_shared == 4 and monitor.max_budget_rows <= 4,
         "nimble_rate_limits has the 4 shared budgets (3 keys under load, ref) of %d"
         % SHARED_BUDGETS, "%d rows, %d shared, at most %d seen" % (n_budgets, n_shared,
                                                               monitor.max_budget_rows))
    c.ok(not crashes and res["postmaster_alive"] and res["postmaster_same_pid"] and mocks_alive,
         "no crash: the server log has no crash line, the postmaster is alive with the same "
         "pid (%d FATAL 'terminating connection' lines, from pg_terminate_backend)" % fatal_term,
         "\n".join(crashes[:10]))
    c.ok(not keys_in_log, "the server log (%d bytes) holds none of the %d API keys"
         % (len(log), len(KEYS)), keys_in_log)

    for e in res["examples"]:
        print("#  ", e, flush=True)
    res["checks"] = c.lines
    res["failures"] = ["check %d: %s" % (x["n"], x["what"]) for x in c.lines if not x["ok"]]
    relib.finish(res, [], build, t_start, None)   # build_after, seconds
    res["ok"] = not c.failed
    relib.write_json(a.json, res)
    signal.alarm(0)
    relib.log("%.1f s in all" % res["seconds"])
    if c.failed:
        print("shared_soak: %d of %d checks FAILED: %s" % (len(c.failed), c.n, "; ".join(c.failed)))
        return 1
    print("shared_soak: %d checks passed" % c.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
