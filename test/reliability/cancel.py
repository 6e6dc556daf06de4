#!/usr/bin/env python3
"""cancel.py - how fast does a backend whose query hangs in an HTTP request
come back when it is cancelled, timed out or terminated?

For each fault of the mock API that holds a query in a request
(stall_headers: the request is read and nothing is answered; stall_body: the
headers and half the body come, then nothing; slow_body: the body trickles
in, 64 bytes every 20 ms, so the socket keeps waking the backend;
retry_backoff: HTTP 503 with Retry-After: 30 and max_retries 2, so the scan
sleeps in its retry backoff) and each way of interrupting it:

  cancel     SELECT pg_cancel_backend(pid) from a second session
  timeout    SET statement_timeout, then the hanging query
  terminate  SELECT pg_terminate_backend(pid) from a second session

the script runs the hanging query --runs times (three query shapes in turn:
the list request hangs; one keyed request hangs; a full batch_tasks scan
whose list pages come back and whose max_concurrency=8 detail requests all
hang) and measures, end to end, the time from the signal to the client
seeing the error:

  cancel/terminate: from just before the second session sends
                    pg_cancel_backend / pg_terminate_backend (its round trip
                    included) to the moment the blocked client call raises;
  timeout:          (moment the client call raises) - (moment the client sent
                    the query) - statement_timeout.

Each cancel waits until the victim is really inside the request: the mock
has received it and pg_stat_activity shows the backend waiting on
wait_event_type 'Extension' (nimble_fdw's latch wait), plus a random
20-200 ms more.

Claims (exit status 1 if one fails):
  - every run returns, with SQLSTATE 57014 (cancel, timeout) or 57P01 /
    a closed connection (terminate);
  - the median latency of every (fault, way) is under --target-ms (100);
  - after cancel/timeout the same backend answers the next query, and its
    file descriptors do not grow over the runs (counted after the first three
    runs, one of each shape, and after the last): no more epoll fds, files,
    pipes or non-TCP sockets; every TCP socket left is an ESTABLISHED
    keep-alive connection of curl's cache (a leaked one would sit in
    CLOSE_WAIT), at most 9 (max_concurrency 8 + one list request).

Usage: cancel.py [--runs 24] [--target-ms 100] [--json FILE] [--no-build]
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
from ids import batch_id  # noqa: E402

relib.bootstrap()
import psycopg2  # noqa: E402

B3 = batch_id(3)
HARD_LIMIT_S = 15.0          # a run that has not returned by then has failed
# curl's connection cache: at most max_concurrency (8) detail requests and
# one list request of a scan are open at once, all to the same host
MAX_KEEPALIVE = 9

SERVERS = {
    # the list request (and any request) hangs
    "stall_h": ("fault=stall_headers/stall=600", {"max_retries": 0, "timeout_ms": 3600000,
                                                  "page_size": 5}),
    "stall_b": ("fault=stall_body/stall=600", {"max_retries": 0, "timeout_ms": 3600000,
                                               "page_size": 5}),
    # the list pages are answered; the detail requests hang
    "stall_hd": ("fault=stall_headers/stall=600/on=details",
                 {"max_retries": 0, "timeout_ms": 3600000, "page_size": 5,
                  "max_concurrency": 8}),
    "stall_bd": ("fault=stall_body/stall=600/on=details",
                 {"max_retries": 0, "timeout_ms": 3600000, "page_size": 5,
                  "max_concurrency": 8}),

    # the body arrives, 64 bytes every 20 ms: the socket keeps waking us
    "slow": ("fault=slow_body/chunk=64/delay_ms=20", {"max_retries": 0, "timeout_ms": 3600000,
                                                      "page_size": 5}),
    "slow_d": ("fault=slow_body/chunk=64/delay_ms=20/on=details",
               {"max_retries": 0, "timeout_ms": 3600000, "page_size": 5, "max_concurrency": 8}),
    # HTTP 503 asking for a retry in 30 s: the scan sleeps in its backoff
    "backoff": ("fault=status/status=503/retry_after=30", {"max_retries": 2, "page_size": 5}),
    "backoff_d": ("fault=status/status=503/retry_after=30/on=details",
                  {"max_retries": 2, "page_size": 5, "max_concurrency": 8}),
}

FAULTS = {
    "stall_headers": ("stall_h", "stall_hd"),
    "stall_body": ("stall_b", "stall_bd"),
    "slow_body": ("slow", "slow_d"),
    "retry_backoff": ("backoff", "backoff_d"),
}


def shapes(fault):
    s, sd = FAULTS[fault]
    return [
        ("list request hangs", "SELECT * FROM %s.batches" % s),
        ("keyed request hangs", "SELECT * FROM %s.batch_tasks WHERE batch_id = '%s'" % (s, B3)),
        ("8 detail requests hang", "SELECT * FROM %s.batch_tasks" % sd),
    ]


class Victim(threading.Thread):
    """Runs one query in its own thread and notes when it raises."""

    def __init__(self, conn, sql):
        super().__init__(daemon=True)
        self.conn, self.sql = conn, sql
        self.t_send = self.t_end = None
        self.error = None

    def run(self):
        cur = self.conn.cursor()
        self.t_send = time.perf_counter()
        try:
            cur.execute(self.sql)
            cur.fetchall()
        except Exception as e:  # noqa: BLE001 - we classify below
            self.error = e
        self.t_end = time.perf_counter()


def sqlstate(err):
    if err is None:
        return "no error"
    code = getattr(err, "pgcode", None)
    if code:
        return code
    if isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return "connection closed"
    return type(err).__name__


def wait_in_request(admin, mock, pid, count_before, victim, timeout=10.0):
    """Until the mock has the request and the backend waits in nimble_fdw."""
    cur = admin.cursor()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not victim.is_alive():
            return False
        if mock.count() > count_before:
            cur.execute("SELECT wait_event_type, wait_event, row_to_json(a)::text"
                        " FROM pg_stat_activity a WHERE pid = %s", (pid,))
            row = cur.fetchone()
            if row and row[0] == "Extension":
                # while the request is in flight, nothing of the backend's
                # pg_stat_activity row may show the API key
                if "test-key" in row[2]:
                    sys.exit("cancel.py: the API key appears in pg_stat_activity: %s" % row[2])
                return True
        time.sleep(0.005)
    return False


def one_run(cluster, mock, admin, way, sql, conn, timeout_ms):
    """Returns a dict describing the run; conn is the victim connection."""
    pid = conn.get_backend_pid()
    res = {"pid": pid, "sql": sql}
    c = conn.cursor()
    relib.set_statement_timeout(c, timeout_ms if way == "timeout" else 0)
    c.close()
    before = mock.count()
    v = Victim(conn, sql)
    v.start()
    if way == "timeout":
        v.join(HARD_LIMIT_S + timeout_ms / 1000.0)
        res["in_request"] = mock.count() > before
    else:
        ok = wait_in_request(admin, mock, pid, before, v)
        res["in_request"] = ok
        time.sleep(random.uniform(0.02, 0.2))
        fn = "pg_cancel_backend" if way == "cancel" else "pg_terminate_backend"
        t_sig = time.perf_counter()
        admin.cursor().execute("SELECT %s(%%s)" % fn, (pid,))
        v.join(HARD_LIMIT_S)
    if v.is_alive():
        res["returned"] = False
        res["sqlstate"] = "did not return within %.0f s" % HARD_LIMIT_S
        # unblock it so the harness can go on
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        v.join(30)
        return res
    res["returned"] = True
    res["sqlstate"] = sqlstate(v.error)
    res["message"] = str(v.error).strip().splitlines()[0] if v.error else ""
    if way == "timeout":
        res["latency_ms"] = (v.t_end - v.t_send) * 1000.0 - timeout_ms
    else:
        res["latency_ms"] = (v.t_end - t_sig) * 1000.0
    if way == "terminate":
        # and until the process is gone (reaped by the postmaster)
        t0 = time.perf_counter()
        while os.path.exists("/proc/%d" % pid) and time.perf_counter() - t0 < HARD_LIMIT_S:
            time.sleep(0.001)
        res["exit_ms"] = (time.perf_counter() - t_sig) * 1000.0
        res["process_gone"] = not os.path.exists("/proc/%d" % pid)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=24, help="runs per (fault, way), >= 20")
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--timeout-ms", type=int, default=300,
                    help="statement_timeout of the timeout runs")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    random.seed(a.seed)
    t_start = time.time()
    build = relib.build_install(a.no_build)
    results = {"script": "cancel.py", "build": build, "machine": relib.machine(),
               "runs_per_cell": a.runs, "target_ms": a.target_ms,
               "statement_timeout_ms": a.timeout_ms, "cells": [], "failures": []}
    failures = results["failures"]

    with relib.harness("cancel") as (cluster, mock):
        admin = cluster.connect()
        relib.sql_setup(admin, mock, SERVERS)
        for fault in FAULTS:
            for way in ("cancel", "timeout", "terminate"):
                runs = []
                conn = cluster.connect()
                fd_first = fd_last = None
                tcp_max = 0
                for i in range(a.runs):
                    shape, sql = shapes(fault)[i % 3]
                    if conn.closed:
                        conn = cluster.connect()
                    r = one_run(cluster, mock, admin, way, sql, conn, a.timeout_ms)
                    r["shape"] = shape
                    runs.append(r)
                    if way in ("cancel", "timeout") and not conn.closed:
                        # the same backend must go on working
                        try:
                            cur = conn.cursor()
                            relib.set_statement_timeout(cur, 0)
                            cur.execute("SELECT 1")
                            r["backend_ok"] = cur.fetchone()[0] == 1
                        except Exception as e:  # noqa: BLE001
                            r["backend_ok"] = False
                            r["backend_error"] = str(e)
                        pid = conn.get_backend_pid()
                        tcp = relib.tcp_conns_of(pid)
                        fd_last = relib.fd_census(pid)
                        fd_last["tcp"] = tcp
                        fd_last["other_sockets"] = fd_last.get("socket", 0) - sum(tcp.values())
                        if i == 2:
                            # after one run of each shape: the extension is
                            # loaded and curl may keep keep-alive connections
                            fd_first = fd_last
                        tcp_max = max(tcp_max, sum(tcp.values()))
                    if way == "terminate":
                        conn.close()
                lat = [r["latency_ms"] for r in runs if r.get("returned")]
                codes = {}
                for r in runs:
                    codes[r["sqlstate"]] = codes.get(r["sqlstate"], 0) + 1
                cell = {
                    "fault": fault, "way": way, "runs": len(runs),
                    "returned": sum(1 for r in runs if r.get("returned")),
                    "in_request": sum(1 for r in runs if r.get("in_request")),
                    "median_ms": relib.median(lat), "p95_ms": relib.percentile(lat, 95),
                    "max_ms": max(lat) if lat else float("nan"),
                    "min_ms": min(lat) if lat else float("nan"),
                    "sqlstates": codes,
                }
                if way == "terminate":
                    ex = [r["exit_ms"] for r in runs if "exit_ms" in r]
                    cell["exit_median_ms"] = relib.median(ex)
                    cell["exit_max_ms"] = max(ex) if ex else float("nan")
                    cell["process_gone"] = sum(1 for r in runs if r.get("process_gone"))
                    # libpq reports only the closed connection; the server log
                    # says why each backend went
                    logtext = cluster.log_text()
                    for r in runs:
                        r["fatal_57P01_logged"] = (
                            "[%d] FATAL:  terminating connection due to administrator command"
                            % r["pid"]) in logtext
                    cell["fatal_57P01_in_server_log"] = sum(
                        1 for r in runs if r["fatal_57P01_logged"])
                else:
                    cell["backend_ok_after"] = sum(1 for r in runs if r.get("backend_ok"))
                    cell["fds_first"] = fd_first
                    cell["fds_last"] = fd_last
                    cell["tcp_sockets_max_after_run"] = tcp_max
                results["cells"].append(cell)
                relib.log("%-13s %-9s median %6.1f ms  p95 %6.1f ms  max %6.1f ms  %s"
                          % (fault, way, cell["median_ms"], cell["p95_ms"], cell["max_ms"], codes))

                # the claims
                want = {"cancel": {"57014"}, "timeout": {"57014"},
                        "terminate": {"57P01", "connection closed"}}[way]
                for r in runs:
                    if not r.get("returned"):
                        failures.append("%s/%s (%s): %s" % (fault, way, r["shape"], r["sqlstate"]))
                    elif r["sqlstate"] not in want:
                        failures.append("%s/%s (%s): SQLSTATE %s (%s)"
                                        % (fault, way, r["shape"], r["sqlstate"], r.get("message")))
                    if not r.get("in_request"):
                        failures.append("%s/%s (%s): the query was not seen waiting in the request"
                                        % (fault, way, r["shape"]))
                    if way != "terminate" and r.get("returned") and not r.get("backend_ok"):
                        failures.append("%s/%s (%s): backend unusable afterwards: %s"
                                        % (fault, way, r["shape"], r.get("backend_error")))
                    if way == "terminate" and not r.get("fatal_57P01_logged"):
                        failures.append("%s/%s: no FATAL 57P01 in the server log for backend %d"
                                        % (fault, way, r["pid"]))
                    if way == "terminate" and not r.get("process_gone"):
                        failures.append("%s/%s: backend %d still there %.0f s after the signal"
                                        % (fault, way, r["pid"], HARD_LIMIT_S))
                if not cell["median_ms"] < a.target_ms:
                    failures.append("%s/%s: median %.1f ms >= target %.0f ms"
                                    % (fault, way, cell["median_ms"], a.target_ms))
                if way != "terminate" and fd_first:
                    # TCP sockets are curl's keep-alive cache: how many stay
                    # open varies; a leaked one would not be ESTABLISHED
                    grew = [k for k in ("eventpoll", "other_sockets", "file", "pipe")
                            if fd_last.get(k, 0) > fd_first.get(k, 0)]
                    bad = {k: v for k, v in fd_last["tcp"].items() if k != "ESTABLISHED"}
                    if grew or bad or sum(fd_last["tcp"].values()) > MAX_KEEPALIVE:
                        failures.append("%s/%s: backend descriptors: %s -> %s"
                                        % (fault, way, fd_first, fd_last))
                if not conn.closed:
                    conn.close()
        crashes = cluster.crash_lines()
        # terminate is not a crash: the postmaster logs nothing for exit code 1
        results["server_log_crash_lines"] = crashes
        if crashes:
            failures.append("server log: %d crash lines, first: %s" % (len(crashes), crashes[0]))
        results["postmaster_alive"] = cluster.postmaster_alive()
        if not results["postmaster_alive"]:
            failures.append("the postmaster died")
        results["mock_requests"] = mock.count()

    verdict = relib.finish(results, failures, build, t_start, a.json)
    print("cancel.py: %s (%d cells, %d runs each, %.0f s)"
          % (verdict, len(results["cells"]), a.runs, results["seconds"]))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
