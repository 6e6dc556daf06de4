#!/usr/bin/env python3
"""leak.py - one backend, thousands of failing queries: does its memory
stay flat and do its file descriptors stay put?

One connection (one backend) runs --queries failing queries (default
10,000), the kinds taken in turn from a seeded shuffle:

  page3_not_json   a full batch_tasks scan (page_size 5, max_concurrency 8)
                   whose third list page is not JSON (fault=not_json/on=list/
                   after=2; the mock's counters are reset before each query):
                   two pages decoded, detail requests in flight -> HV00A
  page3_batches    the same for the batches table (list rows) -> HV00A
  row500_domain    batch 3 (1,000 tasks) through a hand-written table whose
                   column k is a domain "integer CHECK (VALUE < 500)" fed by
                   the field _query.k (= k for even k): 249 rows convert, row
                   500 fails -> 23514 check_violation
  row1_integer     the brief's table (batch_id text, state integer) on batch 3:
                   'pending' does not fit integer, the first row fails -> 22P02
  timeout_stall    statement_timeout 20 ms while the request stalls
                   (fault=stall_headers) -> 57014
  http500          HTTP 500 with max_retries 1 (retry-after-ms 1): two tries,
                   then 58000
  refused          connection refused (127.0.0.1:1) -> HV00N
  truncate_window  a full batch_tasks scan whose 4th detail request is cut
                   short (fault=truncate/on=details/after=3) -> 08006, with
                   other detail requests of the window in flight
  too_big          a 3 MB body with max_response_bytes 1 MB -> 54000
  deep_nesting     a body nested 20,000 levels deep -> 08P01
  invalid_utf8     bytes \xff\xfe in the 1st of two keyed responses -> HV00A
  tcp_reset        the 3rd /progress request of a list scan is answered
                   with a TCP RST (fault=reset/on=progress/after=2) -> 08006
  redirect         an HTTP 302 (never followed) -> HV00N
  subxact          one of the kinds above run inside a PL/pgSQL block that
                   catches the error (cleanup at subtransaction abort, not at
                   transaction abort)

VmRSS / VmHWM / VmData of the backend (/proc/PID/status), the total of
pg_backend_memory_contexts and the backend's file descriptors
(/proc/PID/fd, by kind) are read after the warm-up (--warmup, 500 queries)
and every --sample queries, and at the end.

Claims (exit status 1 if one fails):
  - every query failed, with its kind's SQLSTATE;
  - VmRSS grew by less than --rss-tolerance-kb (5,120 kB) from the warm-up
    to the end.  Why 5 MB: glibc's heap and PostgreSQL's caches move VmRSS
    by up to ~1 MB on their own; 5 MB over 9,500 queries catches a leak that
    averages more than ~550 bytes per query (see --self-test-leak).  Smaller
    leaks, or leaks in one kind only, are the job of valgrind.sh, whose extra
    pass runs every kind here under memcheck;
  - the memory contexts' total grew by less than --ctx-tolerance-kb (1,024 kB);
  - file descriptors: no more epoll fds and no more non-TCP sockets (the
    client connection, curl's internal socket pair) at the end than after the
    warm-up; every TCP socket left is an ESTABLISHED keep-alive connection of
    curl's cache (none in CLOSE_WAIT or another state, which a leaked
    descriptor would be), and at most 9 of them (max_concurrency 8 + one list
    request: what one scan can have open at once).

Informational, not part of the claim: the rescan probe runs one query whose
parameterized foreign scan is rescanned --rescans times (a LATERAL subquery
over a local table of '' keys, which need no request) and reports how much
the backend's peak memory (VmHWM) grew during that one query.  The big-body
probe reads one valid 50 MB list response (a long string the scan does not
use, then the normal page) in a fresh backend and reports its peak memory.

Self-test of the harness: --self-test-leak BYTES runs the same with postgres
started under an LD_PRELOAD wrapper of curl_multi_add_handle() that leaks
BYTES per HTTP request (in the harness's private cluster only); the claim
must then fail, which shows that the tolerance catches a leak of that size.

Usage: leak.py [--queries 10000] [--warmup 500] [--json FILE] [--no-build]
               [--self-test-leak BYTES]
"""
import argparse
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # nothing written next to the scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402
from ids import batch_id  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402

B1 = batch_id(1)
B3 = batch_id(3)

SERVERS = {
    "clean": ("", {"max_retries": 0, "page_size": 5}),
    "pg3": ("fault=not_json/on=list/after=2", {"max_retries": 0, "page_size": 5,
                                               "max_concurrency": 8}),
    "stall": ("fault=stall_headers/stall=60", {"max_retries": 0, "timeout_ms": 60000}),
    "e500": ("fault=status/status=500/retry_after_ms=1", {"max_retries": 1}),
    "refused": ("http://127.0.0.1:1/v1", {"max_retries": 0, "connect_timeout_ms": 2000}),
    "trunc": ("fault=truncate/on=details/after=3", {"max_retries": 0, "page_size": 5,
                                                    "max_concurrency": 8}),
    "huge": ("fault=huge/size=3000000", {"max_retries": 0, "max_response_bytes": 1048576}),
    "deep": ("fault=deep_nesting/depth=20000", {"max_retries": 0}),
    "badutf8": ("fault=invalid_utf8/on=details", {"max_retries": 0}),
    "rst": ("fault=reset/on=progress/after=2", {"max_retries": 0, "page_size": 5}),
    "redir": ("fault=redirect", {"max_retries": 0}),
    # for the informational big-body probe only
    "big": ("fault=huge/size=50000000/on=list", {"max_retries": 0, "timeout_ms": 120000}),
}

TABLES = [
    "CREATE DOMAIN k_below_500 AS integer CHECK (VALUE < 500)",
    "CREATE FOREIGN TABLE public.t500 (batch_id text, task_id text, "
    "k k_below_500 OPTIONS (field '_query.k')) SERVER clean OPTIONS (resource 'batch_tasks')",
    "CREATE FOREIGN TABLE public.t (batch_id text, state integer) "
    "SERVER clean OPTIONS (resource 'batch_tasks')",
    """CREATE FUNCTION sqlstate_of(query text) RETURNS text LANGUAGE plpgsql AS $$
       BEGIN EXECUTE query; RETURN 'ok';
       EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$""",
]

# kind: (sql, expected SQLSTATE, reset the mock first, statement_timeout ms)
KINDS = {
    "page3_not_json": ("SELECT * FROM pg3.batch_tasks", "HV00A", True, 0),
    "page3_batches": ("SELECT * FROM pg3.batches", "HV00A", True, 0),
    "row500_domain": ("SELECT * FROM public.t500 WHERE batch_id = '%s'" % B3, "23514", False, 0),
    "row1_integer": ("SELECT * FROM public.t WHERE batch_id = '%s'" % B3, "22P02", False, 0),
    "timeout_stall": ("SELECT * FROM stall.batches", "57014", False, 20),
    "http500": ("SELECT * FROM e500.batches", "58000", False, 0),
    "refused": ("SELECT * FROM refused.batches", "HV00N", False, 0),
    "truncate_window": ("SELECT * FROM trunc.batch_tasks", "08006", True, 0),
    "too_big": ("SELECT * FROM huge.batches", "54000", False, 0),
    "deep_nesting": ("SELECT * FROM deep.batch_tasks WHERE batch_id = '%s'" % B1, "08P01", False, 0),
    "invalid_utf8": ("SELECT * FROM badutf8.batch_tasks WHERE batch_id IN ('%s', '%s')"
                     % (B1, B3), "HV00A", False, 0),
    "tcp_reset": ("SELECT * FROM rst.batch_progress", "08006", True, 0),
    "redirect": ("SELECT * FROM redir.batches", "HV00N", False, 0),
}
# curl's connection cache: at most max_concurrency (8) detail requests and
# one list request of a scan are in flight at once, all to the same host
MAX_KEEPALIVE = 9
SUBXACT_OF = ["page3_not_json", "row500_domain", "http500", "truncate_window", "refused",
              "too_big", "deep_nesting", "tcp_reset"]


def sample(conn, pid, n):
    cur = conn.cursor()
    cur.execute("SELECT sum(total_bytes), count(*) FROM pg_backend_memory_contexts")
    ctx_bytes, ctx_n = cur.fetchone()
    cur.close()
    return {"queries": n, "rss_kb": relib.rss_kb(pid), "hwm_kb": relib.proc_status(pid, "VmHWM"),
            "data_kb": relib.proc_status(pid, "VmData"), "ctx_bytes": int(ctx_bytes),
            "ctx_count": ctx_n, "fds": relib.fd_census(pid), "tcp": relib.tcp_conns_of(pid),
            "t": time.time()}


def rescan_probe(cur, pid, n):
    """One query, n rescans of a parameterized foreign scan whose key ('')
    needs no request: how much does the backend's peak memory grow?"""
    cur.execute("SET enable_hashjoin = off; SET enable_mergejoin = off; "
                "SET enable_material = off; SET enable_memoize = off")
    cur.execute("CREATE TEMP TABLE rescan_keys AS SELECT ''::text AS id "
                "FROM generate_series(1, %d); ANALYZE rescan_keys" % n)
    sql = ("SELECT count(*) FROM rescan_keys k CROSS JOIN LATERAL "
           "(SELECT * FROM clean.batch_progress p WHERE p.batch_id = k.id OFFSET 0) x")
    out = {"rescans": n, "sql": sql}
    out["hwm_before_kb"] = relib.proc_status(pid, "VmHWM")
    out["rss_before_kb"] = relib.rss_kb(pid)
    t0 = time.time()
    cur.execute(sql)
    cur.fetchall()
    out["seconds"] = round(time.time() - t0, 2)
    out["hwm_after_kb"] = relib.proc_status(pid, "VmHWM")
    out["rss_after_kb"] = relib.rss_kb(pid)
    out["peak_growth_kb"] = out["hwm_after_kb"] - out["hwm_before_kb"]
    out["bytes_per_rescan"] = round(out["peak_growth_kb"] * 1024.0 / n, 1)
    cur.execute("DROP TABLE rescan_keys; RESET enable_hashjoin; RESET enable_mergejoin; "
                "RESET enable_material; RESET enable_memoize")
    return out


def big_body_probe(cur, pid, size=50000000):
    """One valid list response of `size` bytes (a long string the scan does
    not read, then the normal body): the backend's peak memory for it."""
    cur.execute("SELECT 1")
    out = {"body_bytes": size, "hwm_before_kb": relib.proc_status(pid, "VmHWM")}
    cur.execute("SELECT count(*) FROM big.batches")
    out["rows"] = cur.fetchone()[0]
    out["hwm_after_kb"] = relib.proc_status(pid, "VmHWM")
    out["rss_after_kb"] = relib.rss_kb(pid)
    out["peak_growth_kb"] = out["hwm_after_kb"] - out["hwm_before_kb"]
    out["peak_per_body_byte"] = round(out["peak_growth_kb"] * 1024.0 / size, 2)
    return out


LEAKY_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
/* harness self-test: every request leaks LEAK bytes (touched, so in RSS) */
int curl_multi_add_handle(void *multi, void *easy)
{
	static int (*real) (void *, void *) = NULL;
	char	   *p = malloc(LEAK);

	if (p)
		memset(p, 0x5a, LEAK);
	if (real == NULL)
		real = (int (*) (void *, void *)) dlsym(RTLD_NEXT, "curl_multi_add_handle");
	return real(multi, easy);
}
"""


def build_leaky_preload(nbytes):
    import tempfile
    d = tempfile.mkdtemp(prefix="nimble_rel_leaky_", dir="/tmp")
    os.chmod(d, 0o755)
    src, so = os.path.join(d, "leaky.c"), os.path.join(d, "leaky.so")
    with open(src, "w") as f:
        f.write(LEAKY_C)
    import subprocess
    subprocess.check_call(["gcc", "-shared", "-fPIC", "-O1", "-DLEAK=%d" % nbytes, "-o", so, src,
                           "-ldl"])
    os.chmod(so, 0o755)
    return so


def slope(points):
    """Least-squares slope of (x, y)."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--rss-tolerance-kb", type=int, default=5120)
    ap.add_argument("--ctx-tolerance-kb", type=int, default=1024)
    ap.add_argument("--rescans", type=int, default=500000,
                    help="rescans of the informational rescan probe")
    ap.add_argument("--self-test-leak", type=int, default=0, metavar="BYTES",
                    help="harness self-test: run postgres with an LD_PRELOAD wrapper of "
                         "curl_multi_add_handle() that leaks BYTES per request; the claim "
                         "must then fail")
    ap.add_argument("--json")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    t_start = time.time()
    build = relib.build_install(a.no_build)
    kinds = list(KINDS) + ["subxact"]
    res = {"script": "leak.py", "build": build, "machine": relib.machine(),
           "queries": a.queries, "warmup": a.warmup, "kinds": {}, "samples": [],
           "failures": []}
    failures = res["failures"]
    wrapper = ()
    if a.self_test_leak:
        wrapper = ("env", "LD_PRELOAD=" + build_leaky_preload(a.self_test_leak))
        res["self_test_leak_bytes_per_request"] = a.self_test_leak
    try:
        return run(a, res, failures, build, kinds, rnd, wrapper, t_start)
    finally:
        if wrapper:
            import shutil
            shutil.rmtree(os.path.dirname(wrapper[1].split("=", 1)[1]), ignore_errors=True)


def run(a, res, failures, build, kinds, rnd, wrapper, t_start):
    with relib.harness("leak", wrapper=wrapper) as (cluster, mock):
        conn = cluster.connect()
        relib.sql_setup(conn, mock, SERVERS, TABLES)
        pid = conn.get_backend_pid()
        res["pid"] = pid
        cur = conn.cursor()
        stats = {k: {"run": 0, "codes": {}} for k in kinds}
        order = []
        set_retries = 0
        t_loop = time.time()
        for i in range(a.queries):
            if not order:
                order = kinds[:]
                rnd.shuffle(order)
            kind = order.pop()
            if kind == "subxact":
                inner = rnd.choice(SUBXACT_OF)
                sql, want, reset, _ = KINDS[inner]
                if reset:
                    mock.reset()
                cur.execute("SELECT sqlstate_of(%s)", (sql,))
                code = cur.fetchone()[0]
                want_code = want
            else:
                sql, want_code, reset, st = KINDS[kind]
                if reset:
                    mock.reset()
                if st:
                    cur.execute("SET statement_timeout = %d" % st)
                try:
                    cur.execute(sql)
                    cur.fetchall()
                    code = "ok"
                except psycopg2.Error as e:
                    code = e.pgcode or "connection: %s" % str(e).strip()
                    if conn.closed:
                        failures.append("query %d (%s): the connection was lost: %s" % (i, kind, e))
                        break
                if st:
                    set_retries += relib.set_statement_timeout(cur, 0)
            s = stats[kind]
            s["run"] += 1
            s["codes"][code] = s["codes"].get(code, 0) + 1
            if code != want_code:
                s.setdefault("unexpected", 0)
                s["unexpected"] += 1
                if s["unexpected"] <= 3:
                    failures.append("query %d (%s): SQLSTATE %s, expected %s" % (i, kind, code, want_code))
            n = i + 1
            if n == a.warmup or (n > a.warmup and (n - a.warmup) % a.sample == 0) or n == a.queries:
                smp = sample(conn, pid, n)
                res["samples"].append(smp)
                relib.log("after %5d queries: VmRSS %d kB, contexts %d kB (%d), fds %s, %.0f q/s"
                          % (n, smp["rss_kb"], smp["ctx_bytes"] // 1024, smp["ctx_count"],
                             smp["fds"], n / (time.time() - t_loop)))
        res["kinds"] = stats
        res["set_timeout_retries"] = set_retries
        res["queries_run"] = sum(s["run"] for s in stats.values())
        res["row500_check"] = None
        # the domain kind fails at row 500 exactly: show it once
        try:
            cur.execute(KINDS["row500_domain"][0])
        except psycopg2.Error as e:
            res["row500_check"] = {"sqlstate": e.pgcode, "message": e.pgerror.strip().splitlines()[0],
                                   "context": (e.diag.context or "").strip().splitlines()[:1]}
        # informational, not part of the claim (skipped in the self-test)
        if not a.self_test_leak:
            probes(res, cluster, a)
        crashes = cluster.crash_lines()
        res["server_log_crash_lines"] = crashes
        if crashes:
            failures.append("server log: %s" % crashes[0])
        res["postmaster_alive"] = cluster.postmaster_alive()
        res["mock_requests"] = mock.count()
        conn.close()
    finish(res, a, build, failures, t_start)
    return 0 if not failures else 1


def probes(res, cluster, a):
    """The informational probes, each in a fresh backend."""
    pconn = cluster.connect()
    res["rescan_probe"] = rescan_probe(pconn.cursor(), pconn.get_backend_pid(), a.rescans)
    pconn.close()
    relib.log("rescan probe: %s" % res["rescan_probe"])
    pconn = cluster.connect()
    res["big_body_probe"] = big_body_probe(pconn.cursor(), pconn.get_backend_pid())
    pconn.close()
    relib.log("big body probe: %s" % res["big_body_probe"])


def finish(res, a, build, failures, t_start):
    smps = res["samples"]
    if len(smps) >= 2:
        w, e = smps[0], smps[-1]
        res["rss_warm_kb"], res["rss_end_kb"] = w["rss_kb"], e["rss_kb"]
        res["rss_growth_kb"] = e["rss_kb"] - w["rss_kb"]
        res["ctx_warm_bytes"], res["ctx_end_bytes"] = w["ctx_bytes"], e["ctx_bytes"]
        res["ctx_growth_bytes"] = e["ctx_bytes"] - w["ctx_bytes"]
        res["fds_warm"], res["fds_end"] = w["fds"], e["fds"]
        res["rss_slope_bytes_per_query"] = slope([(s["queries"], s["rss_kb"] * 1024) for s in smps])
        res["ctx_slope_bytes_per_query"] = slope([(s["queries"], s["ctx_bytes"]) for s in smps])
        if res["rss_growth_kb"] >= a.rss_tolerance_kb:
            failures.append("VmRSS grew %d kB (%d -> %d), tolerance %d kB"
                            % (res["rss_growth_kb"], w["rss_kb"], e["rss_kb"], a.rss_tolerance_kb))
        if res["ctx_growth_bytes"] >= a.ctx_tolerance_kb * 1024:
            failures.append("memory contexts grew %d bytes, tolerance %d kB"
                            % (res["ctx_growth_bytes"], a.ctx_tolerance_kb))
        if e["fds"].get("eventpoll", 0) > w["fds"].get("eventpoll", 0):
            failures.append("epoll fds grew %d -> %d" % (w["fds"].get("eventpoll", 0),
                                                         e["fds"].get("eventpoll", 0)))
        for smp in (w, e):
            smp["tcp_sockets"] = sum(smp["tcp"].values())
            smp["other_sockets"] = smp["fds"].get("socket", 0) - smp["tcp_sockets"]
        res["sockets"] = {"warm": {"tcp": w["tcp"], "other": w["other_sockets"]},
                          "end": {"tcp": e["tcp"], "other": e["other_sockets"]}}
        if e["other_sockets"] > w["other_sockets"]:
            failures.append("non-TCP sockets grew %d -> %d" % (w["other_sockets"], e["other_sockets"]))
        bad = {k: v for k, v in e["tcp"].items() if k != "ESTABLISHED"}
        if bad:
            failures.append("TCP sockets left in %s at the end" % bad)
        if e["tcp_sockets"] > MAX_KEEPALIVE:
            failures.append("%d TCP connections kept at the end (at most %d expected)"
                            % (e["tcp_sockets"], MAX_KEEPALIVE))
    else:
        failures.append("fewer than 2 samples: the run stopped early")
    if res["queries_run"] < a.queries:
        failures.append("only %d of %d queries ran" % (res["queries_run"], a.queries))
    res["tolerances"] = {"rss_kb": a.rss_tolerance_kb, "ctx_kb": a.ctx_tolerance_kb}
    verdict = relib.finish(res, failures, build, t_start, a.json)
    print("leak.py: %s (%d queries, VmRSS %s -> %s kB, %.0f s)"
          % (verdict, res.get("queries_run", 0),
             res.get("rss_warm_kb"), res.get("rss_end_kb"), res["seconds"]))


if __name__ == "__main__":
    sys.exit(main())
