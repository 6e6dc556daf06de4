#!/usr/bin/env python3
"""shared_test.py - nimble_fdw's request budgets in shared memory, across backends.

A private PostgreSQL cluster (test/lib/relib.py) with
shared_preload_libraries = 'nimble_fdw' and nimble_fdw.allowed_hosts =
'127.0.0.1:*', and five mock APIs (test/mock_nimble.py), each on a port
of its own, so that each check has a host, hence a budget, of its own
(a budget is per API key and host: src/throttle.c):

  main  the default data set          check 1 (and the reference rows of 4)
  ref   --batches 480 (no limit)      the single-session answers of check 2
  soak  the same data, --window-limit 100/2 --latency-ms 20    check 2
  term  the default data set          check 3 (fault=stall_headers)
  hold  the default data set          check 4 (rl_remaining=0/rl_reset=4)

  1. two sessions' queries show one budget for main's host, shared, that
     counts both sessions' requests; pg_shmem_allocations has 'nimble_fdw';
     a second key ('other-key', 401 -> 28000) is a second row;
  2. soak: 16 sessions released together, 30 ids each (480 requests): the
     mock refuses none, never sees more than 100 in a window, every
     session gets the single-session rows, and the elapsed time is at least
     the window's floor ((480-100)/100*2 s) and at most 1.6 times it; run
     twice (the second time the budget knows the policy already);
  3. a session hanging on a stalled request (in_flight >= 1) is
     pg_terminate_backend'ed, another pg_cancel_backend'ed: in_flight is
     back to 0 within 3 s each time, and the host then answers a query;
  4. session A's answer (ratelimit-remaining 0, ratelimit-reset 4) holds
     the budget; session B (another backend, same host) waits, with
     wait_event 'NimbleRateLimit' (PostgreSQL 17+; 'Extension' before), and
     gets its rows after the hold; session C, statement_timeout 1s, fails
     at once with 53400;
  5. the size of 'nimble_fdw' in pg_shmem_allocations is unchanged, no
     budget has a request in flight, and the server log has no crash, and
     no API key.

Prints one "ok N - ..." or "not ok N - ..." line per check (details of a
failure on "#" lines after it); the last line is "shared: N checks
passed" (exit 0) or "shared: K of N checks FAILED: ..." (exit 1).
Progress goes to stderr.  Everything started is stopped, by pid.

PostgreSQL: PG_CONFIG, else PG_MAJOR's /usr/lib/postgresql/NN/bin/pg_config,
else the newest under /usr/lib/postgresql, else pg_config from PATH
(--pg-config PATH sets PG_CONFIG).  15 or later (the shmem_request hook).

Usage: shared_test.py [--build | --no-build] [--keep] [--pg-config PATH]
  --build     make install the extension first (under /tmp/nimble_build.lock)
  --no-build  use the installed extension as it is (the default)
  --keep      keep the cluster directory (server.log, the mocks' logs)
"""
import argparse
import os
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))


def _choose_pg_config(argv):
    """--pg-config, PG_CONFIG, PG_MAJOR and Debian's layout are relib's
    rules; without any of them, pg_config from PATH."""
    for i, a in enumerate(argv):
        if a == "--pg-config" and i + 1 < len(argv):
            os.environ["PG_CONFIG"] = argv[i + 1]
        elif a.startswith("--pg-config="):
            os.environ["PG_CONFIG"] = a.split("=", 1)[1]
    if os.environ.get("PG_CONFIG") or os.environ.get("PG_MAJOR"):
        return
    debian = os.path.isdir("/usr/lib/postgresql") and any(
        v.isdigit() for v in os.listdir("/usr/lib/postgresql"))
    if not debian and shutil.which("pg_config"):
        os.environ["PG_CONFIG"] = shutil.which("pg_config")


_choose_pg_config(sys.argv)
import relib  # noqa: E402
from ids import batch_id  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402

TOTAL_S = 150               # the whole test stops itself after this
SESSIONS = 16
IDS_PER_SESSION = 30
WINDOW_N, WINDOW_S = 100, 2
SOAK_BATCHES = SESSIONS * IDS_PER_SESSION           # every id once
FLOOR_S = (SOAK_BATCHES - WINDOW_N) / WINDOW_N * WINDOW_S
RATIO_MAX = 1.6             # target 1.2; room for a loaded 2-core machine
HOLD_S = 4
STALL_S = 30
KEYS = ("test-key", "other-key")
QUERY = "SELECT batch_id, completed FROM %s.batch_progress WHERE batch_id = ANY(%%s)"


class Checks:
    def __init__(self):
        self.n = 0
        self.failed = []

    def ok(self, cond, what, detail=""):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, what), flush=True)
        else:
            self.failed.append(what)
            print("not ok %d - %s" % (self.n, what), flush=True)
            if detail != "":
                for line in str(detail).splitlines():
                    print("#   " + line, flush=True)
        return bool(cond)


def one(cur, sql, *args):
    cur.execute(sql, args or None)
    return cur.fetchone()[0]


def rows(cur, sql, *args):
    cur.execute(sql, args or None)
    return cur.fetchall()


def budgets(cur, host):
    cur.execute("SELECT host, shared, limit_requests, window_seconds, in_window, in_flight, "
                "held_until, from_api, answered FROM nimble_rate_limits WHERE host = %s "
                "ORDER BY last_used", (host,))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def shmem_size(cur):
    r = rows(cur, "SELECT size, allocated_size FROM pg_shmem_allocations WHERE name = 'nimble_fdw'")
    return r[0] if r else None


def poll(fn, timeout, step=0.02):
    """fn() until it returns something true, or timeout; (value, seconds)."""
    t0 = time.monotonic()
    while True:
        v = fn()
        if v or time.monotonic() - t0 >= timeout:
            return v, time.monotonic() - t0
        time.sleep(step)


class Query(threading.Thread):
    """A query on a connection of its own, in a thread: its rows or its
    error, and how long it took (from after the barrier, if any)."""

    def __init__(self, cluster, sql, args=None, barrier=None, setup=()):
        super().__init__(daemon=True)
        self.conn = cluster.connect()
        self.cur = self.conn.cursor()
        for s in setup:
            self.cur.execute(s)
        self.pid = one(self.cur, "SELECT pg_backend_pid()")
        self.sql, self.args, self.barrier = sql, args, barrier
        self.rows = self.error = None
        self.t0 = self.t1 = None

    def run(self):
        if self.barrier:
            self.barrier.wait()
        self.t0 = time.monotonic()
        try:
            self.cur.execute(self.sql, self.args)
            self.rows = sorted(self.cur.fetchall())
        except psycopg2.Error as e:
            self.error = e
        self.t1 = time.monotonic()

    @property
    def elapsed(self):
        return self.t1 - self.t0

    def close(self):
        try:
            self.conn.close()
        except psycopg2.Error:
            pass


def err(e):
    if e is None:
        return "no error"
    return "%s %s" % (getattr(e, "pgcode", None), str(e).strip().splitlines()[0] if str(e).strip() else "")


def setup_servers(cur, mocks):
    cur.execute("CREATE EXTENSION nimble_fdw")
    servers = {
        "main": (mocks["main"].url(), {}, "test-key"),
        "other": (mocks["main"].url(), {}, "other-key"),
        "ref": (mocks["ref"].url(), {}, "test-key"),
        "soak": (mocks["soak"].url(), {}, "test-key"),
        "stall": (mocks["term"].url("fault=stall_headers/stall=%d" % STALL_S),
                  {"max_retries": "0"}, "test-key"),
        "termplain": (mocks["term"].url(), {}, "test-key"),
        "spent": (mocks["hold"].url("rl_remaining=0/rl_reset=%d" % HOLD_S), {}, "test-key"),
        "holdplain": (mocks["hold"].url(), {}, "test-key"),
    }
    for name, (url, opts, key) in servers.items():
        o = {"url": url}
        o.update(opts)
        cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (%s)"
                    % (name, ", ".join("%s %s" % (k, relib.quote_lit(v)) for k, v in o.items())))
        cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key %s)"
                    % (name, relib.quote_lit(key)))
        cur.execute("CREATE SCHEMA %s" % name)
        cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))


# ----------------------------------------------------------------------
# 1. one shared budget for two sessions; a second key, a second budget
# ----------------------------------------------------------------------

def check_one_budget(c, cluster, mock, su):
    host = mock.base
    mock.reset()
    s1, s2 = cluster.connect(), cluster.connect()
    c1, c2 = s1.cursor(), s2.cursor()
    before = budgets(c1, host)
    c.ok(before == [], "no budget for %s before the two sessions' queries" % host, before)
    r1 = rows(c1, QUERY % "main", [batch_id(n) for n in (1, 2, 3)])
    r2 = rows(c2, QUERY % "main", [batch_id(n) for n in (4, 5, 6, 7)])
    sent = mock.count()
    b1, b2 = budgets(c1, host), budgets(c2, host)
    own = one(c1, "SELECT count(*) FROM nimble_rate_limits WHERE NOT shared") + \
        one(c2, "SELECT count(*) FROM nimble_rate_limits WHERE NOT shared")
    c.ok(len(r1) == 3 and len(r2) == 4 and len(b1) == 1 and b1 == b2 and b1[0]["shared"]
         and own == 0,
         "two sessions' queries: one budget row for %s, shared = true, the same in both "
         "sessions, none of a backend's own" % host,
         "rows %d/%d; session 1 sees %s; session 2 sees %s; non-shared rows %d"
         % (len(r1), len(r2), b1, b2, own))
    c.ok(b1 and b1[0]["in_window"] == sent == 7 and b1[0]["in_flight"] == 0
         and b1[0]["answered"] and b1[0]["limit_requests"] == 5000,
         "the budget counts both sessions' requests: in_window %s = the mock's %d (3 + 4), "
         "in_flight 0, the documented limit %s/%s s"
         % (b1 and b1[0]["in_window"], sent, b1 and b1[0]["limit_requests"],
            b1 and b1[0]["window_seconds"]), b1)
    size = shmem_size(c1)
    c.ok(size is not None and size[0] > 0,
         "pg_shmem_allocations has 'nimble_fdw': size %s bytes (allocated %s)"
         % (size and size[0], size and size[1]))

    try:
        rows(c2, QUERY % "other", [batch_id(1)])
        e = None
    except psycopg2.Error as ex:
        e = ex
    after = budgets(c1, host)
    c.ok(e is not None and e.pgcode == "28000",
         "a second key ('other-key' on a second server, same url): its query fails 28000 (401)",
         err(e))
    c.ok(len(after) == 2 and all(b["shared"] for b in after)
         and after[0]["in_window"] == b1[0]["in_window"],
         "the second key adds a second shared row for the host (test-key's unchanged)", after)
    s1.close()
    s2.close()
    return size


# ----------------------------------------------------------------------
# 2. the soak: 16 sessions against one window
# ----------------------------------------------------------------------

def session_ids(i):
    return [batch_id(i * IDS_PER_SESSION + j + 1) for j in range(IDS_PER_SESSION)]


def reference_rows(cur):
    """Each session's query, run by one session on the unlimited mock of
    the same data set."""
    return [sorted(rows(cur, QUERY % "ref", session_ids(i))) for i in range(SESSIONS)]


def soak_run(c, cluster, mock, su, ref, label):
    mock.reset()
    barrier = threading.Barrier(SESSIONS)
    qs = [Query(cluster, QUERY % "soak", (session_ids(i),), barrier) for i in range(SESSIONS)]
    for q in qs:
        q.start()
    for q in qs:
        q.join(120)
    st = mock.stats()
    for q in qs:
        q.close()
    done = [q for q in qs if q.t1 is not None]
    elapsed = (max(q.t1 for q in done) - min(q.t0 for q in done)) if done else float("nan")
    errors = [err(q.error) for q in qs if q.error is not None]
    wrong = [i for i, q in enumerate(qs) if q.rows != ref[i]]
    ratio = elapsed / FLOOR_S
    b = budgets(su.cursor(), mock.base)
    relib.log("soak %s: %.2f s, %s requests, refused %s, max_in_window %s; budget %s"
              % (label, elapsed, st.get("total"), st.get("refused"), st.get("max_in_window"), b))
    c.ok(not errors and st.get("total") == SOAK_BATCHES and st.get("refused") == 0,
         "soak %s: %d sessions x %d ids, %s requests, the mock refused %s"
         % (label, SESSIONS, IDS_PER_SESSION, st.get("total"), st.get("refused")),
         "errors: %s; stats %s" % (errors[:3], {k: st.get(k) for k in ("total", "refused", "max_in_window")}))
    c.ok(st.get("max_in_window") is not None and st["max_in_window"] <= WINDOW_N,
         "soak %s: max_in_window %s <= %d" % (label, st.get("max_in_window"), WINDOW_N))
    c.ok(not wrong and len(done) == SESSIONS,
         "soak %s: every session's rows equal the single-session answer (%d rows each)"
         % (label, IDS_PER_SESSION),
         "sessions with other rows: %s; first: %s" % (wrong, wrong and (qs[wrong[0]].rows or [])[:3]))
    c.ok(elapsed >= FLOOR_S and ratio <= RATIO_MAX,
         "soak %s: %.2f s, the window's floor %.1f s, ratio %.3f (target <= 1.2, check <= %.1f)"
         % (label, elapsed, FLOOR_S, ratio, RATIO_MAX))
    c.ok(len(b) == 1 and b[0]["shared"] and b[0]["from_api"] and b[0]["limit_requests"] == WINDOW_N
         and b[0]["window_seconds"] == WINDOW_S and b[0]["in_flight"] == 0,
         "soak %s: the shared budget follows the API's policy (%s;w=%s), in_flight 0"
         % (label, b and b[0]["limit_requests"], b and b[0]["window_seconds"]), b)
    return elapsed


def check_soak(c, cluster, mock, su, ref):
    scur = su.cursor()
    b0 = budgets(scur, mock.base)
    c.ok(b0 == [], "soak: no budget for the soak host before the first run", b0)
    soak_run(c, cluster, mock, su, ref, "run 1")
    # the second run starts on an empty window (the budget's, so the
    # mock's too), with the policy known
    b, waited = poll(lambda: budgets(scur, mock.base)[0]["in_window"] == 0, 6, 0.05)
    relib.log("the budget's window emptied %.2f s after run 1" % waited)
    soak_run(c, cluster, mock, su, ref, "run 2")


# ----------------------------------------------------------------------
# 3. pg_terminate_backend / pg_cancel_backend with requests in flight
# ----------------------------------------------------------------------

def scans_of(cur, pid):
    """pid's rows of nimble_scans, as dicts."""
    cur.execute("SELECT * FROM nimble_scans WHERE pid = %s", (pid,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def check_terminate(c, cluster, mock, su, ref_rows):
    host = mock.base
    scur = su.cursor()
    scur.execute("CREATE ROLE nimble_onlooker LOGIN")
    onlooker = cluster.connect(user="nimble_onlooker")
    ocur = onlooker.cursor()

    def in_flight():
        b = budgets(scur, host)
        return b[0]["in_flight"] if b else None

    for how in ("pg_terminate_backend", "pg_cancel_backend"):
        q = Query(cluster, QUERY % "stall", ([batch_id(1)],))
        q.start()
        n, t_up = poll(lambda: (in_flight() or 0) >= 1, 10)
        hung = q.is_alive()
        if how == "pg_terminate_backend":
            # nimble_scans: another backend's scan, as it waits for the API
            seen, _ = poll(lambda: [x for x in scans_of(scur, q.pid)
                                    if x["waiting_for"] == "api" and x["requests_done"] >= 1], 3)
            x = seen[0] if seen else (scans_of(scur, q.pid) or [None])[0]
            c.ok(bool(seen) and x["server"] == "stall" and x["resource"] == "batch_progress"
                 and x["requests_expected"] == 1 and x["rows"] == 0,
                 "nimble_scans shows the hung scan of another backend: server %s, %s, "
                 "requests %s of %s, waiting for %s"
                 % (x and x["server"], x and x["resource"], x and x["requests_done"],
                    x and x["requests_expected"], x and x["waiting_for"]), x)
            o = scans_of(ocur, q.pid)
            c.ok(len(o) == 1 and o[0]["role"] == "postgres" and o[0]["server"] is None
                 and o[0]["requests_done"] is None,
                 "a role without the scan's privileges sees its pid and role only", o)
        signalled = one(scur, "SELECT %s(%%s)" % how, q.pid)
        zero, t_down = poll(lambda: in_flight() == 0, 3)
        q.join(10)
        if how == "pg_terminate_backend":
            gone, t_gone = poll(lambda: scans_of(scur, q.pid) == [], 3)
            c.ok(gone,
                 "the terminated backend's scan leaves nimble_scans (in %.2f s)" % t_gone,
                 scans_of(scur, q.pid))
        left = in_flight()
        expect = "57P01" if how == "pg_terminate_backend" else "57014"
        got = getattr(q.error, "pgcode", None)
        c.ok(n and hung and signalled and zero,
             "%s of a session with a request in flight (in_flight %s after %.2f s): "
             "in_flight back to 0 in %.2f s (at most 3)"
             % (how, "1" if n else in_flight(), t_up, t_down),
             "hung %s, signalled %s, in_flight now %s, error %s" % (hung, signalled, left, err(q.error)))
        if how == "pg_terminate_backend":
            # psycopg2 may see the FATAL (57P01) or only the closed socket
            c.ok(q.error is not None and (got in (expect, None))
                 and isinstance(q.error, psycopg2.OperationalError),
                 "the terminated session's query ends with the connection (%s)" % err(q.error))
        else:
            alive = None
            try:
                alive = one(q.cur, "SELECT 1")
            except psycopg2.Error as e:
                alive = e
            c.ok(got == expect and alive == 1,
                 "the cancelled session's query fails 57014, and the session goes on",
                 "%s; then %s" % (err(q.error), alive))
        q.close()
        relib.log("%s: signalled %.2f s after the start, in_flight 0 %.3f s later"
                  % (how, t_up, t_down))
    onlooker.close()
    s = cluster.connect()
    try:
        r = sorted(rows(s.cursor(), QUERY % "termplain", [batch_id(1)]))
        e = None
    except psycopg2.Error as ex:
        r, e = None, ex
    b = budgets(scur, host)
    c.ok(r == ref_rows and b and b[0]["in_flight"] == 0 and b[0]["answered"],
         "then a query on the host works: %s, in_flight 0" % (r,), "%s; budget %s" % (err(e), b))
    s.close()


# ----------------------------------------------------------------------
# 4. a hold set by one backend, the wait of another, statement_timeout
# ----------------------------------------------------------------------

def check_hold(c, cluster, mock, su, ref_rows):
    host = mock.base
    scur = su.cursor()
    v17 = int(one(scur, "SHOW server_version_num")) >= 170000
    want_event = ("Extension", "NimbleRateLimit" if v17 else "Extension")
    ids = [batch_id(n) for n in (1, 2, 3)]

    a = cluster.connect()
    ra = rows(a.cursor(), QUERY % "spent", [batch_id(1)])
    t_answer = time.monotonic()
    b = budgets(scur, host)
    c.ok(len(ra) == 1 and len(b) == 1 and b[0]["shared"] and b[0]["held_until"] is not None,
         "session A's answer (ratelimit-remaining 0, ratelimit-reset %d) holds the shared "
         "budget (held_until %s)" % (HOLD_S, b and b[0]["held_until"]), b)

    # B: no timeout of its own would be needed; 20 s only bounds the test
    # should the budget wait far longer than the hold
    qb = Query(cluster, QUERY % "holdplain", (ids,), setup=("SET statement_timeout = '20s'",))
    qc_conn = cluster.connect()
    qc = qc_conn.cursor()
    qc.execute("SET statement_timeout = '1s'")
    qb.start()

    def event():
        r = rows(scur, "SELECT wait_event_type, wait_event, state FROM pg_stat_activity "
                       "WHERE pid = %s", qb.pid)
        return r[0] if r and tuple(r[0][:2]) == want_event else None
    seen, t_seen = poll(event, 3, 0.01)
    last = rows(scur, "SELECT wait_event_type, wait_event, state FROM pg_stat_activity "
                      "WHERE pid = %s", qb.pid)
    c.ok(seen is not None and qb.is_alive(),
         "session B (same host, another backend) waits: pg_stat_activity shows %s/%s "
         "(server_version_num %s 170000)" % (want_event + (">=" if v17 else "<",)),
         "last seen %s, B alive %s, B error %s" % (last, qb.is_alive(), err(qb.error)))
    sb = scans_of(scur, qb.pid)
    c.ok(len(sb) == 1 and sb[0]["waiting_for"] == "rate limit" and sb[0]["requests_expected"] == 3
         and sb[0]["requests_done"] == 0,
         "nimble_scans shows B waiting for the rate limit, 0 of 3 requests done",
         sb)

    t0 = time.monotonic()
    try:
        qc.execute(QUERY % "holdplain", ([batch_id(4)],))
        ec = None
    except psycopg2.Error as e:
        ec = e
    tc = time.monotonic() - t0
    c.ok(ec is not None and ec.pgcode == "53400" and tc < 0.5,
         "session C (statement_timeout 1s) during the hold fails 53400 in %.3f s" % tc, err(ec))
    relib.log("C: %s" % err(ec))

    qb.join(30)
    since_answer = qb.t1 - t_answer if qb.t1 else float("nan")
    c.ok(qb.error is None and qb.rows == ref_rows and since_answer >= HOLD_S - 0.5
         and qb.elapsed <= HOLD_S + 2.5,
         "session B finishes after the hold: %.2f s (%.2f s after A's answer; hold %d s), "
         "the right %d rows" % (qb.elapsed, since_answer, HOLD_S, len(ref_rows)),
         "B: %s; rows %s; budget now %s" % (err(qb.error), qb.rows, budgets(scur, host)))
    qb.close()
    qc_conn.close()
    a.close()


# ----------------------------------------------------------------------
# 5. afterwards
# ----------------------------------------------------------------------

def check_after(c, cluster, su, size0):
    scur = su.cursor()
    size = shmem_size(scur)
    c.ok(size == size0, "the size of 'nimble_fdw' in pg_shmem_allocations is unchanged (%s)"
         % (size and size[0]), "before %s, after %s" % (size0, size))
    busy = rows(scur, "SELECT host, in_flight FROM nimble_rate_limits WHERE in_flight <> 0")
    c.ok(not busy, "no budget has a request in flight at the end", busy)
    log = cluster.log_text()
    crashes = cluster.crash_lines()
    fatal = [l for l in log.splitlines()
             if "FATAL:  terminating connection due to administrator command" in l]
    c.ok(not crashes and len(fatal) >= 1,
         "the server log has no crash (PANIC, a process terminated by signal, a restart); "
         "%d FATAL 'terminating connection' line(s), from pg_terminate_backend" % len(fatal),
         "\n".join(crashes[:10]))
    found = [k for k in KEYS if k in log]
    c.ok(not found, "the server log (%d bytes) holds neither API key" % len(log),
         "found %s" % found)


# ----------------------------------------------------------------------
# 6. the cluster's counters (nimble_stats) and learned figures
# ----------------------------------------------------------------------

def plan_rows(cur, sql):
    cur.execute("EXPLAIN (FORMAT JSON) " + sql)
    return cur.fetchone()[0][0]["Plan"]["Plan Rows"]


def stats_of(cur, server):
    r = rows(cur, "SELECT requests, scans FROM nimble_stats WHERE server = %s", server)
    return tuple(r[0]) if r else None


def check_cluster_figures(c, cluster, mocks, su):
    scur = su.cursor()
    scur.execute("SELECT nimble_stats_reset()")
    a = cluster.connect()
    n_a = len(rows(a.cursor(), QUERY % "ref", [batch_id(n) for n in (1, 2, 3)]))
    a.close()
    b = cluster.connect()
    bcur = b.cursor()
    got = stats_of(bcur, "ref")
    c.ok(n_a == 3 and got == (3, 1),
         "another backend's scan is in nimble_stats of a new backend: requests, scans %s "
         "(one scan of 3 keys)" % (got,))
    # what one backend's walk learned, the next plans with
    guess = plan_rows(bcur, "SELECT * FROM ref.batches")
    b.close()
    a = cluster.connect()
    walked = len(rows(a.cursor(), "SELECT batch_id FROM ref.batches"))
    a.close()
    b = cluster.connect()
    bcur = b.cursor()
    learned = plan_rows(bcur, "SELECT * FROM ref.batches")
    c.ok(walked == SOAK_BATCHES and learned == SOAK_BATCHES and guess != SOAK_BATCHES,
         "a new backend plans with the list total another backend's walk saw: "
         "%s rows (before the walk: %s)" % (learned, guess))
    # an ALTER SERVER (its url may now lead elsewhere) forgets it everywhere
    scur.execute("ALTER SERVER ref OPTIONS (ADD timeout_ms '20000')")
    after = plan_rows(bcur, "SELECT * FROM ref.batches")
    c.ok(after == guess,
         "after ALTER SERVER the learned total is forgotten by every backend: %s rows" % after)
    b.close()
    # the reset is the cluster's, and is not for everyone
    scur.execute("CREATE ROLE nimble_plain LOGIN")
    p = cluster.connect(user="nimble_plain")
    try:
        p.cursor().execute("SELECT nimble_stats_reset()")
        e = None
    except psycopg2.Error as ex:
        e = ex
    c.ok(e is not None and e.pgcode == "42501",
         "nimble_stats_reset() is refused to a plain role (42501)", err(e))
    p.close()
    scur.execute("SELECT nimble_stats_reset()")
    b = cluster.connect()
    got = stats_of(b.cursor(), "ref")
    c.ok(got == (0, 0), "after nimble_stats_reset() another backend sees 0 requests: %s" % (got,))
    b.close()
    # a dropped server's counters go with it
    scur.execute("CREATE SERVER gone FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url %s)"
                 % relib.quote_lit(mocks["ref"].url()))
    scur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER gone OPTIONS (api_key 'test-key')")
    scur.execute("CREATE FOREIGN TABLE gone_progress (batch_id text, completed boolean) "
                 "SERVER gone OPTIONS (resource 'batch_progress')")
    rows(scur, "SELECT * FROM gone_progress WHERE batch_id = %s", batch_id(1))
    before = stats_of(scur, "gone")
    scur.execute("DROP SERVER gone CASCADE")
    b = cluster.connect()
    left = rows(b.cursor(), "SELECT server FROM nimble_stats WHERE server = 'gone'")
    b.close()
    c.ok(before == (1, 1) and left == [],
         "DROP SERVER takes its counters out of nimble_stats (before: %s)" % (before,), left)


# ----------------------------------------------------------------------
# the cluster's response cache
# ----------------------------------------------------------------------

def check_shared_cache(c, cluster, mocks, su):
    scur = su.cursor()
    mock = mocks["ref"]
    scur.execute("CREATE SERVER cachesrv FOREIGN DATA WRAPPER nimble_fdw "
                 "OPTIONS (url %s, cache_ttl '60')" % relib.quote_lit(mock.url()))
    scur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER cachesrv OPTIONS (api_key 'test-key')")
    scur.execute("CREATE USER MAPPING FOR nimble_plain SERVER cachesrv OPTIONS (api_key 'other-key')")
    scur.execute("GRANT USAGE ON FOREIGN SERVER cachesrv TO nimble_plain")
    scur.execute("CREATE FOREIGN TABLE cache_progress (batch_id text, completed boolean) "
                 "SERVER cachesrv OPTIONS (resource 'batch_progress')")
    scur.execute("GRANT SELECT ON cache_progress TO nimble_plain")
    q = "SELECT batch_id, completed FROM cache_progress WHERE batch_id = ANY(%s)"
    ids = [batch_id(n) for n in (1, 2, 3)]
    scur.execute("SELECT nimble_cache_clear()")
    mock.reset()
    a = cluster.connect()
    ra = sorted(rows(a.cursor(), q, ids))
    a.close()
    n_a = mock.count()
    b = cluster.connect()
    bcur = b.cursor()
    rb = sorted(rows(bcur, q, ids))
    n_b = mock.count() - n_a
    hits = one(bcur, "SELECT cache_hits FROM nimble_stats WHERE server = 'cachesrv'")
    b.close()
    c.ok(len(ra) == 3 and rb == ra and n_a == 3 and n_b == 0,
         "a response one backend cached answers another with 0 requests "
         "(first %d requests, then %d; %s cache hits counted)" % (n_a, n_b, hits))
    p = cluster.connect(user="nimble_plain")
    try:
        rp = rows(p.cursor(), q, ids)
        e = None
    except psycopg2.Error as ex:
        rp, e = None, ex
    n_p = mock.count() - n_a - n_b
    c.ok(e is not None and e.pgcode == "28000" and n_p >= 1,
         "a session with another key gets its own answer (the API's 401, %s), "
         "not the cached rows" % err(e), rp)
    try:
        p.cursor().execute("SELECT nimble_cache_clear()")
        e = None
    except psycopg2.Error as ex:
        e = ex
    c.ok(e is not None and e.pgcode == "42501",
         "nimble_cache_clear() is refused to a plain role (42501)", err(e))
    p.close()
    cleared = one(scur, "SELECT nimble_cache_clear()")
    before = mock.count()
    b = cluster.connect()
    rb2 = sorted(rows(b.cursor(), q, ids))
    b.close()
    c.ok(cleared >= 3 and rb2 == ra and mock.count() - before == 3,
         "nimble_cache_clear() clears it for every backend: %d dropped, the next "
         "backend asks again (%d requests)" % (cleared, mock.count() - before))


def check_cache_pressure(c):
    """A cluster whose shared cache is 4 blocks (nimble_fdw.cache_size
    32kB): multi-block entries, eviction of the least recently used, a
    body too big to keep, TTL; every answer right."""
    conf = {"shared_preload_libraries": "'nimble_fdw'",
            "nimble_fdw.allowed_hosts": "'127.0.0.1:*'",
            "nimble_fdw.cache_size": "'32kB'"}
    cl = relib.Cluster("shared_cache", conf)
    d = os.path.join(cl.dir, "mock_pressure")
    os.mkdir(d)
    # 40 batches of 30 tasks: a details body is ~20 kB, three blocks
    mock = relib.Mock(d, "--batches", "40", "--tasks-per-batch", "30")
    try:
        cl.start()
        su = cl.connect()
        cur = su.cursor()
        cur.execute("CREATE EXTENSION nimble_fdw")
        cur.execute("CREATE SERVER p FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url %s, cache_ttl '60')"
                    % relib.quote_lit(mock.url()))
        cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER p OPTIONS (api_key 'test-key')")
        cur.execute("CREATE SCHEMA p")
        cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER p INTO p")
        q = "SELECT batch_id, task_id, state FROM p.batch_tasks WHERE batch_id = %s ORDER BY task_id"
        ref = {}
        for n in range(1, 11):
            ref[n] = rows(cur, q, batch_id(n))
        mock.reset()
        # only the last (3 blocks of 4) is kept; the older ones were evicted
        again = {}
        for n in (10, 9, 1):
            conn = cl.connect()
            again[n] = rows(conn.cursor(), q, batch_id(n))
            conn.close()
        asked = mock.count()
        c.ok(all(again[n] == ref[n] and len(ref[n]) == 30 for n in again) and asked == 2,
             "a 4-block shared cache keeps the newest 3-block answer and evicts the older: "
             "batch 10 from the cache, 9 and 1 asked again (%d requests), every answer right"
             % asked)
        u = rows(cur, "SELECT nimble_cache_clear()")[0][0]
        c.ok(u == 1, "the cache held 1 entry at the end (each new one evicted the last): %s" % u)
        # a body larger than the whole cache (the list: ~50 kB) is not kept
        mock.reset()
        cur.execute("ALTER SERVER p OPTIONS (ADD page_size '1000')")
        n_list = len(rows(cur, "SELECT batch_id FROM p.batches"))
        n_list2 = len(rows(cur, "SELECT batch_id FROM p.batches"))
        c.ok(n_list == 40 and n_list2 == 40 and mock.count("list") == 2,
             "a response larger than the cache is answered and not kept (list asked %d times)"
             % mock.count("list"))
        # the TTL holds in the shared cache too
        cur.execute("ALTER SERVER p OPTIONS (SET cache_ttl '1')")
        rows(cur, q, batch_id(5))
        mock.reset()
        rows(cur, q, batch_id(5))
        fresh = mock.count()
        time.sleep(1.1)
        rows(cur, q, batch_id(5))
        stale = mock.count() - fresh
        c.ok(fresh == 0 and stale == 1,
             "within cache_ttl the shared answer is used (%d requests), after it asked again "
             "(%d)" % (fresh, stale))
        crash = cl.crash_lines()
        c.ok(not crash, "no crash in the small cache's cluster", crash)
        su.close()
    finally:
        mock.stop()
        cl.stop()
        cl.remove()


def main():
    ap = argparse.ArgumentParser(description="shared-memory request budgets of nimble_fdw")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--build", action="store_true", help="make install the extension first")
    g.add_argument("--no-build", action="store_true", help="use the installed extension (default)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    ap.add_argument("--pg-config", help="pg_config of the PostgreSQL to test")
    args = ap.parse_args()
    t_start = time.monotonic()

    def on_signal(signum, frame):
        raise SystemExit("shared: stopped by signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    def on_alarm(signum, frame):
        raise TimeoutError("shared: the test took more than %d s" % TOTAL_S)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_S)

    info = relib.build_install(skip=not args.build)
    if not os.path.exists(info["so"]):
        sys.exit("nimble_fdw is not installed (%s): make install first, or pass --build" % info["so"])
    if int(relib.pg_major()) < 15:
        sys.exit("shared budgets need PostgreSQL 15 or later (%s is %s)"
                 % (relib.PG_CONFIG, relib.pg_major()))
    relib.log("PostgreSQL %s (%s) | nimble_fdw.so %s | %s"
              % (relib.pg_major(), relib.PG_CONFIG, info["md5"][:12], info["repo"]))

    c = Checks()
    conf = {
        "shared_preload_libraries": "'nimble_fdw'",
        "nimble_fdw.allowed_hosts": "'127.0.0.1:*'",
        "max_connections": "40",
    }
    cluster = relib.Cluster("shared", conf)
    if args.keep:
        relib.log("cluster directory:", cluster.dir)
    mocks = {}
    mock_args = {
        "main": (),
        "ref": ("--batches", str(SOAK_BATCHES), "--tasks-per-batch", "2"),
        "soak": ("--batches", str(SOAK_BATCHES), "--tasks-per-batch", "2",
                 "--window-limit", "%d/%d" % (WINDOW_N, WINDOW_S), "--latency-ms", "20"),
        "term": (),
        "hold": (),
    }
    try:
        for name, margs in mock_args.items():
            d = os.path.join(cluster.dir, "mock_" + name)
            os.mkdir(d)
            mocks[name] = relib.Mock(d, *margs)
        cluster.start()
        su = cluster.connect()
        scur = su.cursor()
        c.ok(one(scur, "SHOW shared_preload_libraries") == "nimble_fdw",
             "the cluster preloads nimble_fdw (PostgreSQL %s)" % one(scur, "SHOW server_version"))
        setup_servers(scur, mocks)
        ref = reference_rows(scur)
        relib.log("setup and reference rows: %.1f s" % (time.monotonic() - t_start))
        refs = {}

        def main_refs():
            # after check 1, whose two sessions are the first on main's host
            refs["main"] = sorted(rows(scur, QUERY % "main", [batch_id(n) for n in (1, 2, 3)]))
            refs["one"] = [r for r in refs["main"] if r[0] == batch_id(1)]

        sections = [
            ("1. one shared budget", lambda: check_one_budget(c, cluster, mocks["main"], su)),
            ("reference rows", main_refs),
            ("2. soak", lambda: check_soak(c, cluster, mocks["soak"], su, ref)),
            ("3. terminate and cancel", lambda: check_terminate(c, cluster, mocks["term"], su, refs["one"])),
            ("4. hold across backends", lambda: check_hold(c, cluster, mocks["hold"], su, refs["main"])),
            ("5. the cluster's counters and learned figures",
             lambda: check_cluster_figures(c, cluster, mocks, su)),
            ("5b. the cluster's response cache",
             lambda: check_shared_cache(c, cluster, mocks, su)),
            ("5c. a small shared cache under pressure", lambda: check_cache_pressure(c)),
        ]
        size0 = None
        for title, fn in sections:
            t = time.monotonic()
            if title[0].isdigit():
                print("# %s" % title, flush=True)
            try:
                r = fn()
            except (psycopg2.Error, RuntimeError, AssertionError, KeyError, IndexError) as e:
                c.ok(False, "%s ran to its end" % title, "%s: %s" % (type(e).__name__, e))
                r = None
            if title.startswith("1."):
                size0 = r
            if title[0].isdigit():
                relib.log("%s: %.1f s" % (title, time.monotonic() - t))
        print("# 6. afterwards", flush=True)
        check_after(c, cluster, su, size0)
        su.close()
    finally:
        for m in mocks.values():
            m.stop()
        cluster.stop()
        if not args.keep:
            cluster.remove()
    signal.alarm(0)
    relib.log("%.1f s in all" % (time.monotonic() - t_start))
    if c.failed:
        print("shared: %d of %d checks FAILED: %s" % (len(c.failed), c.n, "; ".join(c.failed)))
        return 1
    print("shared: %d checks passed" % c.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
