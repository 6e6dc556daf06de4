#!/usr/bin/env python3
"""cron_test.py - the pg_cron recipes of README.md section 9, run by a real pg_cron.

A private PostgreSQL cluster (test/lib/relib.py) with
shared_preload_libraries = 'pg_cron', cron.database_name = nimble_app and
cron.use_background_workers = on, and the mock API (test/mock_nimble.py).
The SQL blocks of README.md (those after a "<!-- cron-test: NAME -->"
line) are run as they are written; only 'YOUR_API_KEY' is replaced.
The jobs are scheduled by, and run as, the non-superuser nimble_cron: the
superuser has no user mapping, so every API call goes through nimble_cron's.

  1. setup as the superuser; the recipes as nimble_cron; the first sync by
     hand: task_state must equal batch_tasks, a history row per task;
  2. a second sync by hand changes nothing, and reads only the batches that
     are not complete (counted by the mock);
  3. the jobs are scheduled; the mock's data changes (a task of an open
     batch completes it, a task of a completed batch reopens it); we wait
     for the next minute's runs (at most WAIT_S), and check that they
     succeeded, that task_state, its history and the materialized view show
     the change, and that the jobs ran as nimble_cron with the role's
     statement_timeout.

Exit status 0 when every check passes; the last line is
"cron: N checks passed".  Everything started is stopped, by pid.
Usage: cron_test.py [--build] [--keep]
  --build  make install the extension first (under /tmp/nimble_build.lock)
  --keep   keep the cluster directory (its server.log) for inspection
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402
from ids import batch_id, task_id  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402

# the recipes' SQL is README.md's: what users copy is what is tested
README = HERE.parent.parent / "README.md"
DB = "nimble_app"
ROLE = "nimble_cron"
API_KEY = "test-key"
WAIT_S = 150            # pg_cron 1.4 runs at minute granularity
TOTAL_S = 280           # the whole test, cleanup included, stays under 5 min
BLOCKS = ("setup", "mv", "sync-create", "sync-first", "sync-schedule")
JOBS = ("nimble-batch-progress", "nimble-task-sync", "test-probe")
TASK_COLS = "task_id, batch_id, state, status_code, error_type, error, modified_at"
PROGRESS_COLS = "batch_id, completed, completed_count, progress, completed_at"

# the mock's data set (test/mock_nimble.py): batch 9 [success, error,
# in_progress]: its last task succeeds, so it completes
CLOSE = (batch_id(9), task_id(9, 3), "in_progress", "success")
# batch 1 [success x3], completed: a task goes back to in_progress
REOPEN = (batch_id(1), task_id(1, 2), "success", "in_progress")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def ok(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            relib.log("ok   ", what)
        else:
            self.failed.append(what)
            relib.log("FAIL ", what, ("\n      " + str(detail)) if detail != "" else "")
        return cond


def recipe_blocks():
    """{name: sql} for each ```sql block after a <!-- cron-test: NAME --> line."""
    src = README
    text = src.read_text()
    blocks = dict(re.findall(r"<!-- cron-test: ([\w-]+) -->\n```sql\n(.*?)```", text, re.S))
    missing = [b for b in BLOCKS if b not in blocks]
    if missing:
        sys.exit("%s has no block for: %s" % (src, ", ".join(missing)))
    relib.log("recipes from", src.relative_to(HERE.parent.parent))
    return blocks


def statements(block):
    """A block's statements, for a block without dollar quotes (psycopg2
    returns the result of the last statement of a string only)."""
    assert "$$" not in block
    return [s for s in block.split(";\n") if s.strip()]


def mock_post(mock, path, obj):
    req = urllib.request.Request(mock.base + path, data=json.dumps(obj).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def rows(cur, sql, *args):
    cur.execute(sql, args or None)
    return cur.fetchall()


def one(cur, sql, *args):
    cur.execute(sql, args or None)
    return cur.fetchone()[0]


def set_diff(a, b, limit=5):
    a, b = set(a), set(b)
    return "only left: %s; only right: %s" % (sorted(a - b, key=str)[:limit],
                                               sorted(b - a, key=str)[:limit])


def run_details(cur, since=None):
    cur.execute("""
        SELECT j.jobname, d.runid, d.status, d.return_message, d.start_time, d.end_time,
               d.username, d.database
          FROM cron.job_run_details d JOIN cron.job j USING (jobid)
         WHERE %s::timestamptz IS NULL OR d.start_time >= %s::timestamptz
         ORDER BY d.runid""", (since, since))
    return cur.fetchall()


def wait_for_runs(cur, since, jobs, deadline):
    """Wait until each job has a finished run that started at or after since."""
    while True:
        finished = {}
        for r in run_details(cur, since):
            if r[2] in ("succeeded", "failed"):
                finished.setdefault(r[0], r)
        if all(j in finished for j in jobs) or time.monotonic() > deadline:
            return finished
        time.sleep(1)


def main():
    build = "--build" in sys.argv
    keep = "--keep" in sys.argv
    t0 = time.monotonic()

    def on_signal(signum, frame):
        raise SystemExit("cron: stopped by signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    def on_alarm(signum, frame):
        raise TimeoutError("cron: the test took more than %d s" % TOTAL_S)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_S)

    info = relib.build_install(skip=not build)
    if not os.path.exists(info["so"]):
        sys.exit("nimble_fdw is not installed (%s): make install first, or pass --build"
                 % info["so"])
    cron_so = os.path.join(relib.pg_pkglibdir(), "pg_cron.so")
    if not os.path.exists(cron_so):
        sys.exit("pg_cron is not installed: test/cron/run.sh installs postgresql-%s-cron"
                 % relib.pg_major())
    cron_name = "postgresql-%s-cron" % relib.pg_major()
    cron_pkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", cron_name],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    relib.log(cron_name, cron_pkg, "| nimble_fdw.so", info["md5"][:12], info["repo"])

    blocks = recipe_blocks()
    c = Checks()
    conf = {
        "shared_preload_libraries": "'pg_cron'",
        "cron.database_name": "'%s'" % DB,
        "cron.use_background_workers": "on",
        "max_worker_processes": "16",
        # set below with ALTER DATABASE, as README.md says, not here
        "nimble_fdw.allowed_hosts": None,
    }
    with relib.harness("cron", conf=conf, keep=keep) as (cluster, mock):
        if keep:
            relib.log("cluster directory:", cluster.dir)
        su = cluster.connect()
        su.cursor().execute("CREATE DATABASE %s" % DB)
        su.close()
        su = cluster.connect(dbname=DB)
        scur = su.cursor()

        # the Quick start, as the superuser, with the mock's url; no user
        # mapping for the superuser: the jobs' role brings its own
        scur.execute("ALTER DATABASE %s SET nimble_fdw.allowed_hosts = '127.0.0.1:*'" % DB)
        su.close()
        su = cluster.connect(dbname=DB)         # a session that has the setting
        scur = su.cursor()
        scur.execute("CREATE EXTENSION nimble_fdw")
        scur.execute("CREATE SERVER nimble FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url %s)"
                     % relib.quote_lit(mock.url()))
        scur.execute("CREATE SCHEMA nimble")
        scur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER nimble INTO nimble")
        scur.execute(blocks["setup"].replace("'YOUR_API_KEY'", relib.quote_lit(API_KEY)))
        c.ok(one(scur, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
             is not None, "CREATE EXTENSION pg_cron in cron.database_name")
        cron_ext = one(scur, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
        try:
            scur.execute("SELECT count(*) FROM nimble.batch_progress")
            c.ok(False, "the superuser, without a user mapping, cannot read the API")
        except psycopg2.Error as e:
            c.ok(e.pgcode == "42704",
                 "the superuser, without a user mapping, cannot read the API (42704)",
                 "%s %s" % (e.pgcode, e.pgerror))

        # the recipes, as nimble_cron
        conn = psycopg2.connect(cluster.dsn(DB).replace("user=postgres", "user=" + ROLE))
        conn.autocommit = True
        cur = conn.cursor()
        c.ok(one(cur, "SHOW statement_timeout") == "50s",
             "nimble_cron's sessions get statement_timeout 50s from ALTER ROLE")
        remote_progress0 = rows(cur, "SELECT %s FROM nimble.batch_progress" % PROGRESS_COLS)
        cur.execute(blocks["mv"])
        mv0 = rows(cur, "SELECT %s FROM nimble_local.batch_progress_mv" % PROGRESS_COLS)
        c.ok(sorted(mv0) == sorted(remote_progress0) and len(mv0) == 12,
             "the materialized view holds batch_progress (%d rows)" % len(mv0),
             set_diff(mv0, remote_progress0))

        cur.execute(blocks["sync-create"])
        first = None
        for stmt in statements(blocks["sync-first"]):
            cur.execute(stmt)
            if stmt.lstrip().upper().startswith("SELECT"):
                first = cur.fetchone()[0]
        local = rows(cur, "SELECT %s FROM nimble_local.task_state" % TASK_COLS)
        remote = rows(cur, "SELECT %s FROM nimble.batch_tasks" % TASK_COLS)
        c.ok(sorted(local) == sorted(remote) and len(local) > 1000,
             "first sync: task_state equals batch_tasks (%d rows)" % len(local),
             set_diff(local, remote))
        hist = one(cur, "SELECT count(*) FROM nimble_local.task_state_history "
                        "WHERE old_state IS NULL AND new_state IS NOT NULL")
        c.ok(hist == len(remote) == one(cur, "SELECT count(*) FROM nimble_local.task_state_history"),
             "first sync: one history row per task, old_state NULL (%d)" % hist)
        c.ok(one(cur, "SHOW statement_timeout") == "50s",
             "the sync-first block leaves the session's statement_timeout as it was")

        # a second run: nothing changes, only open batches are read
        n_open = one(cur, "SELECT count(*) FROM nimble.batches WHERE completed IS NOT TRUE")
        before = mock.stats()
        changes = one(cur, "SELECT nimble_local.sync_task_states()")
        after = mock.stats()
        c.ok(first == len(remote) and changes == 0,
             "the sync returns its history rows: %s, then 0 on a second run (got %s)"
             % (first, changes))
        c.ok(one(cur, "SELECT count(*) FROM nimble_local.task_state_history") == hist
             and sorted(rows(cur, "SELECT %s FROM nimble_local.task_state" % TASK_COLS)) == sorted(local),
             "a second run writes nothing (idempotent)")
        details = after["details"] - before["details"]
        c.ok(details == n_open and 0 < n_open < 12 and after["progress"] == before["progress"],
             "a second run reads only the %d open batches (details requests: %d, "
             "progress requests: %d)" % (n_open, details, after["progress"] - before["progress"]))

        # the advisory lock: a second caller waits for the running one
        other = psycopg2.connect(cluster.dsn(DB).replace("user=postgres", "user=" + ROLE))
        ocur = other.cursor()                   # not autocommit: holds the lock
        ocur.execute("SELECT nimble_local.sync_task_states()")
        cur.execute("SET lock_timeout = '300ms'")
        try:
            cur.execute("SELECT nimble_local.sync_task_states()")
            c.ok(False, "a run waits for a run in progress (advisory lock)")
        except psycopg2.Error as e:
            c.ok(e.pgcode == "55P03", "a run waits for a run in progress (advisory lock)",
                 "%s %s" % (e.pgcode, e.pgerror))
        other.rollback()
        other.close()
        cur.execute("RESET lock_timeout")

        # schedule the jobs, and a probe that records who a job runs as
        cur.execute("CREATE TABLE nimble_local.test_probe (usr text, stmt_timeout text, "
                    "allowed_hosts text, at timestamptz DEFAULT clock_timestamp())")
        cur.execute(blocks["sync-schedule"])
        cur.execute("SELECT cron.schedule('test-probe', '* * * * *', $$INSERT INTO "
                    "nimble_local.test_probe SELECT current_user, "
                    "current_setting('statement_timeout'), "
                    "current_setting('nimble_fdw.allowed_hosts', true)$$)")
        jobs = dict(rows(scur, "SELECT jobname, username FROM cron.job"))
        c.ok(sorted(jobs) == sorted(JOBS) and set(jobs.values()) == {ROLE},
             "three jobs scheduled, owned by %s" % ROLE, jobs)

        # change the mock's data, then wait for the next scheduled runs
        for bid, tid, old, new in (CLOSE, REOPEN):
            st = one(cur, "SELECT state FROM nimble_local.task_state WHERE task_id = %s", tid)
            c.ok(st == old, "before: task %s is %s" % (tid[-4:], old), st)
            mock_post(mock, "/_mock/task_state", {"batch_id": bid, "task_id": tid, "state": new})
        changed_at = one(scur, "SELECT clock_timestamp()")
        relib.log("mock changed at %s; waiting for the next minute's runs (at most %d s)"
                  % (changed_at.strftime("%H:%M:%S"), WAIT_S))
        t_wait = time.monotonic()
        runs = wait_for_runs(scur, changed_at, JOBS, time.monotonic() + WAIT_S)
        waited = time.monotonic() - t_wait
        for j in JOBS:
            r = runs.get(j)
            if r is None:
                c.ok(False, "job %s ran within %d s of the change" % (j, WAIT_S),
                     run_details(scur))
                continue
            c.ok(r[2] == "succeeded" and r[6] == ROLE and r[7] == DB,
                 "job %s: run %d %s as %s in %s (%s)" % (j, r[1], r[2], r[6], r[7], r[3]),
                 "return_message: %s" % r[3])
        relib.log("the runs came %.0f s after the change" % waited)

        # what the runs brought in
        local = rows(cur, "SELECT %s FROM nimble_local.task_state" % TASK_COLS)
        remote = rows(cur, "SELECT %s FROM nimble.batch_tasks" % TASK_COLS)
        c.ok(sorted(local) == sorted(remote), "after the job: task_state equals batch_tasks",
             set_diff(local, remote))
        for bid, tid, old, new in (CLOSE, REOPEN):
            c.ok(one(cur, "SELECT state FROM nimble_local.task_state WHERE task_id = %s", tid) == new,
                 "after the job: task %s of batch %s is %s" % (tid[-4:], bid[-2:], new))
        h = rows(cur, """SELECT task_id, old_state, new_state, modified_at = '2026-06-01T12:00:00Z'
                           FROM nimble_local.task_state_history
                          WHERE old_state IS NOT NULL ORDER BY task_id""")
        want = sorted((tid, old, new, True) for _, tid, old, new in (CLOSE, REOPEN))
        c.ok(h == want, "after the job: the history holds exactly the two changes of state",
             "got %s, want %s" % (h, want))
        sync_run = runs.get("nimble-task-sync")
        seen = rows(cur, "SELECT DISTINCT seen_at FROM nimble_local.task_state_history "
                         "WHERE old_state IS NOT NULL")
        c.ok(sync_run is not None and len(seen) == 1
             and sync_run[4] <= seen[0][0] <= sync_run[5],
             "the changes' seen_at lies within the sync job's run",
             "seen_at %s, run %s" % (seen, sync_run and sync_run[4:6]))
        bs = dict(rows(cur, "SELECT batch_id, completed FROM nimble_local.batch_sync "
                            "WHERE batch_id IN (%s, %s)", CLOSE[0], REOPEN[0]))
        c.ok(bs == {CLOSE[0]: True, REOPEN[0]: False},
             "batch_sync: batch 9 now complete, batch 1 open again", bs)

        mv = rows(cur, "SELECT %s FROM nimble_local.batch_progress_mv" % PROGRESS_COLS)
        remote_progress = rows(cur, "SELECT %s FROM nimble.batch_progress" % PROGRESS_COLS)
        c.ok(sorted(mv) == sorted(remote_progress) and sorted(mv) != sorted(mv0),
             "after the job: the materialized view was refreshed and equals batch_progress",
             set_diff(mv, remote_progress))
        p = dict((r[0], (r[1], float(r[3]))) for r in mv)
        c.ok(p[CLOSE[0]] == (True, 1.0) and p[REOPEN[0]] == (False, 0.667),
             "the view shows batch 9 complete (progress 1) and batch 1 at 0.667",
             {k: p[k] for k in (CLOSE[0], REOPEN[0])})

        probe = rows(cur, "SELECT usr, stmt_timeout, allowed_hosts FROM nimble_local.test_probe "
                          "WHERE at >= %s", changed_at)
        c.ok(probe[:1] == [(ROLE, "50s", "127.0.0.1:*")],
             "a job runs as %s, with the role's statement_timeout and the database's "
             "nimble_fdw.allowed_hosts" % ROLE, probe)

        failed = [r for r in run_details(scur) if r[2] == "failed"]
        c.ok(not failed, "no run of any job failed (%d runs in all)" % len(run_details(scur)),
             "\n      ".join("%s run %d: %s" % (r[0], r[1], r[3]) for r in failed))
        # the launcher exits once at start, before the test creates its
        # database: look at the log from "pg_cron scheduler started" on
        log = cluster.log_text()
        at = log.find("pg_cron scheduler started")
        pat = re.compile("|".join(cluster.CRASH_PATTERNS))
        crashes = [l for l in log[at:].splitlines() if pat.search(l)] if at >= 0 else []
        c.ok(at >= 0 and not crashes, "the pg_cron scheduler started; no crash in the server log",
             crashes[:5] or log[-2000:])

        # the nightly ANALYZE, scheduled by the tables' owner, who needs a
        # user mapping of its own for it (the Quick start's user has one);
        # its command is run here rather than waited for until 03:30
        scur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER nimble OPTIONS (api_key %s)"
                     % relib.quote_lit(API_KEY))
        scur.execute(blocks["analyze"])
        job = rows(scur, "SELECT schedule, command, username FROM cron.job "
                         "WHERE jobname = 'nimble-analyze'")
        c.ok(len(job) == 1 and job[0][0] == "30 3 * * *" and job[0][2] == "postgres",
             "the nightly ANALYZE is scheduled (30 3 * * *) by the tables' owner", job)
        mock.reset()
        scur.execute(job[0][1])
        requests = mock.count()
        stats = dict(rows(scur, "SELECT relname, reltuples FROM pg_class "
                                "WHERE relnamespace = 'nimble'::regnamespace AND relkind = 'f'"))
        ntasks = one(cur, "SELECT count(*) FROM nimble.batch_tasks")
        c.ok(stats.get("batch_progress") == 12 and stats.get("batches") == 12
             and stats.get("batch_tasks") == ntasks and stats.get("tasks") == ntasks,
             "the job's ANALYZE stores the account's size (12 batches, %d tasks)" % ntasks, stats)
        c.ok(0 < requests <= 4 * 100, "the job's ANALYZE made %d requests, at most 100 a table"
             % requests)
        scur.execute("SELECT cron.unschedule('nimble-analyze')")

        for j in JOBS:
            scur.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (j,))
        cur.close()
        conn.close()
        su.close()

    signal.alarm(0)
    relib.log("pg_cron %s (%s %s); %.0f s in all"
              % (cron_ext, cron_name, cron_pkg, time.monotonic() - t0))
    if c.failed:
        print("cron: %d of %d checks FAILED: %s" % (len(c.failed), len(c.failed) + c.passed,
                                                    "; ".join(c.failed)))
        return 1
    print("cron: %d checks passed" % c.passed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
