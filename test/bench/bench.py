#!/usr/bin/env python3
"""bench.py - the nimble_fdw benchmark, against curl over the same requests.

    test/bench/bench.py [--runs 5] [--seq-runs N] [--latency-ms 20]
                        [--concurrency 16] [--scenarios 1,2,3,4,5,rl,6]
                        [--quick] [--out test/bench/REPORT.md] [--keep]

Starts a private PostgreSQL 15 cluster (as the postgres user, on a free
port) with the installed nimble_fdw, the bundled mock API
(test/mock_nimble.py) with --latency-ms per request, and runs:

  1   SELECT count(*) FROM batch_tasks WHERE state = 'error'
      over 1,000 batches x 100 tasks
  rl  scenario 1 on a server with max_requests_per_second '83' (the cap of
      our own; the API's window is rate_bench.py's): the rate the mock saw
  2   batch_progress for 200 ids, as IN (...) and as = ANY('{...}')
  3   a local table of 200 ids joined with batch_progress and with
      batch_tasks: the plan the planner picks, the nested loop forced,
      and = ANY(ARRAY(SELECT ...)) (one scan, the ids as keys)
  4   SELECT * FROM batches LIMIT 10, and the list columns only
  5   scenario 1 again and again in one backend, on a server with
      cache_ttl '600': the first run warms, the measured runs
  6   decoding 1,000,000 task rows (1,000 x 1,000, latency 0, a second mock)
      against PostgreSQL's jsonb_array_elements + jsonb_to_record over the
      same bodies stored in a table

and, for scenarios 1-3, replays the exact requests of each FDW run with
curl --parallel --parallel-max N and with curl one request at a time,
interleaved with the FDW runs.  Writes a markdown report (--out) and the
raw numbers next to it (same name, .json).  Exit status 1 when a scenario
errors; missed targets are printed, not fatal.  See test/bench/README.md.
"""
import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402
from ids import batch_id  # noqa: E402

API_KEY = "test-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CACHE_TTL = 600
CAP_RATE = 83               # server rl's max_requests_per_second

log = relib.log


# ----------------------------------------------------------------------
# plumbing
# ----------------------------------------------------------------------

class Mock(relib.Mock):
    """relib.Mock, but started without waiting (two mocks start at once) and
    waited for longer: rendering 1,000,000 tasks takes ~25 s."""

    def __init__(self, workdir, name, args):
        self.workdir = workdir
        self.name = name
        self.args = list(args)
        self.portfile = os.path.join(workdir, name + ".port")
        self.logpath = os.path.join(workdir, name + ".log")
        self.proc = subprocess.Popen(
            [relib.SYS_PYTHON, str(relib.MOCK), "--port", "0", "--port-file",
             self.portfile, *args],
            stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT)
        self.port = None

    def wait_ready(self, timeout=300):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if os.path.exists(self.portfile) and open(self.portfile).read().strip():
                self.port = int(open(self.portfile).read().strip())
                self.base = "http://127.0.0.1:%d" % self.port
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError("mock %s exited: %s" % (self.name, open(self.logpath).read()))
            time.sleep(0.1)
        raise RuntimeError("mock %s did not start in %d s" % (self.name, timeout))

    def requests(self):
        try:
            return json.loads(self._get("/_mock/requests"))
        except urllib.error.HTTPError as e:
            raise RuntimeError("the mock has no /_mock/requests (%s)" % e) from None

    def cpu(self):
        return proc_cpu(self.proc.pid)


def proc_cpu(pid):
    """user + system CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def median(v):
    return relib.median(v) if v else float("nan")


def digest(rows):
    return hashlib.md5(repr(rows).encode()).hexdigest()[:12]


def walk(plan):
    yield plan
    for p in plan.get("Plans", []):
        yield from walk(p)


def plan_shape(plan):
    """Aggregate > Nested Loop(Seq Scan ids, Foreign Scan batch_tasks [route])"""
    name = plan["Node Type"]
    if plan.get("Join Type") and name.endswith(("Join", "Loop")) and plan["Join Type"] != "Inner":
        name += " " + plan["Join Type"]
    if "Relation Name" in plan:
        name += " " + plan["Relation Name"]
    if plan["Node Type"] == "Foreign Scan":
        extra = [plan.get("Nimble Route", "")]
        if plan.get("Nimble Keys"):
            k = plan["Nimble Keys"]
            extra.append("keys: " + (k if len(k) <= 48 else k[:40] + "…" + k[-6:]))
        name += " [" + "; ".join(e for e in extra if e) + "]"
    kids = plan.get("Plans", [])
    if not kids:
        return name
    if plan["Node Type"] in ("Hash", "Aggregate", "Limit", "Sort", "Materialize", "Memoize",
                             "Gather", "Result") and len(kids) == 1:
        return "%s > %s" % (name, plan_shape(kids[0]))
    return "%s(%s)" % (name, ", ".join(plan_shape(k) for k in kids))


def is_param_nestloop(plan):
    """A Nested Loop whose inner side is a nimble Foreign Scan (through at
    most a Memoize/Materialize) whose keys come from the outer side."""
    for node in walk(plan):
        if node["Node Type"] != "Nested Loop":
            continue
        for kid in node.get("Plans", []):
            if kid.get("Parent Relationship") != "Inner":
                continue
            while kid["Node Type"] in ("Memoize", "Materialize", "Subquery Scan",
                                       "Result") and kid.get("Plans"):
                kid = kid["Plans"][0]
            if kid["Node Type"] == "Foreign Scan" and "{batch_id}" in kid.get("Nimble Route", "") \
                    and "all pages" not in kid.get("Nimble Route", ""):
                return True
    return False


def scanned_rows(plan):
    """Rows the nimble foreign scans produced, before local filters."""
    n = 0
    for node in walk(plan):
        if node["Node Type"] == "Foreign Scan":
            loops = node.get("Actual Loops", 1)
            n += round((node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops)
    return n


def nimble_counters(plan):
    out = {}
    for node in walk(plan):
        if node["Node Type"] == "Foreign Scan":
            for k, v in node.items():
                if k.startswith("Nimble ") and isinstance(v, (int, float)):
                    out[k] = out.get(k, 0) + v
    return out


def low_intervals(ts, lat, thr):
    """Intervals of [ts[0], ts[-1] + lat) during which fewer than thr
    requests were in flight, a request being in flight from its arrival for
    lat seconds (the mock answers after its latency)."""
    ev = sorted([(t, 1) for t in ts] + [(t + lat, -1) for t in ts], key=lambda e: (e[0], e[1]))
    out, n, prev = [], 0, None
    for t, d in ev:
        if prev is not None and n < thr and t > prev:
            if out and abs(out[-1][1] - prev) < 1e-9:
                out[-1][1] = t
            else:
                out.append([prev, t])
        n += d
        prev = t
    return out


def is_list(path):
    p = path.split("?")[0]
    return p.endswith("/batches")


def timing_of(reqlog, t0, t1, latency_ms, conc=8):
    """What the mock's arrival log says about one client run."""
    ts = sorted(r["t"] for r in reqlog)
    if not ts:
        return {}
    lat = latency_ms / 1000.0
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    wall = t1 - t0
    out = {
        "first_ms": round((ts[0] - t0) * 1000, 1),           # start -> first arrival
        "tail_ms": round((t1 - ts[-1] - lat) * 1000, 1),     # last answer -> end
        "max_gap_ms": round(max(gaps) * 1000, 1) if gaps else 0.0,
        "eff_conc": round(len(ts) * lat / wall, 2) if wall > 0 and lat > 0 else None,
    }
    if lat > 0 and len(ts) > conc:
        # time below a full window, from the first arrival to the last answer,
        # not counting the last round (fewer requests than the window left)
        end = ts[-conc] + lat if len(ts) >= conc else ts[-1]
        low = low_intervals(ts, lat, conc)
        out["below_window_ms"] = round(sum(max(0, min(b, end) - a) for a, b in low if a < end) * 1000, 1)
        # the half-empty window after each list page but the first
        half = low_intervals(ts, lat, conc / 2)
        lists = sorted(r["t"] for r in reqlog if is_list(r["path"]))[1:]
        if lists:
            st = [sum(max(0, min(b, tl + 3 * lat) - max(a, tl)) for a, b in half) * 1000 for tl in lists]
            out["list_stall_ms"] = round(relib.median(st), 1)
            out["list_pages"] = len(lists) + 1
    return out


def rate_of(reqlog):
    ts = sorted(r["t"] for r in reqlog)
    n = len(ts)
    if n < 2:
        return {"mean_rps": None, "max_1s": n}
    best, j = 0, 0
    for i in range(n):
        while j < n and ts[j] < ts[i] + 1.0:
            j += 1
        best = max(best, j - i)
    gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
    return {"mean_rps": round((n - 1) / (ts[-1] - ts[0]), 1), "max_1s": best,
            "gap_ms_p10_p50_p90": [round(relib.percentile(gaps, q) * 1000, 2) for q in (10, 50, 90)]}


# ----------------------------------------------------------------------
# one run of each kind of client
# ----------------------------------------------------------------------

class Bench:
    def __init__(self, args, cluster, mock, big):
        self.a = args
        self.cl = cluster
        self.mock = mock
        self.big = big
        self.workdir = cluster.dir
        self.results = {}          # label -> {...}
        self.order = []
        self.errors = []
        self.missing = {}          # option/function -> error text
        self.notes = []

    # -- result bookkeeping --
    def res(self, label, scenario, client, query=None):
        if label not in self.results:
            self.results[label] = {"label": label, "scenario": scenario, "client": client,
                                   "query": query, "runs": [], "notes": []}
            self.order.append(label)
        return self.results[label]

    # -- clients --
    def fdw_run(self, mock, sql, setup=(), want_log=False):
        """One query in a fresh backend: wall time, requests the mock saw,
        peak memory (VmHWM after the query - VmRSS before it, the backend
        already warmed by an EXPLAIN of the same query)."""
        conn = self.cl.connect()
        try:
            cur = conn.cursor()
            cur.execute("SET statement_timeout = '900s'")
            for s in setup:
                cur.execute(s)
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("EXPLAIN " + sql)       # loads the module, plans; no request
            cur.fetchall()
            idle_rss = relib.proc_status(pid, "VmRSS")
            idle_hwm = relib.proc_status(pid, "VmHWM")
            if mock:
                mock.reset()
                m0 = mock.cpu()
            c0 = proc_cpu(pid)
            t0 = time.monotonic()
            cur.execute(sql)
            rows = cur.fetchall()
            t1 = time.monotonic()
            c1 = proc_cpu(pid)
            hwm = relib.proc_status(pid, "VmHWM")
            r = {"wall": t1 - t0, "t0": t0, "t1": t1, "cpu": round(c1 - c0, 3),
                 "idle_rss_kb": idle_rss, "idle_hwm_kb": idle_hwm, "hwm_kb": hwm,
                 "peak_kb": hwm - idle_rss, "nrows": len(rows), "digest": digest(rows),
                 "result": rows[:3] if len(rows) <= 3 else None}
            if mock:
                r["mock_cpu"] = round(mock.cpu() - m0, 3)
                st = mock.stats()
                r["requests"] = st["total"]
                r["by_endpoint"] = {k: st[k] for k in ("list", "details", "progress")}
                if want_log:
                    r["log"] = mock.requests()
            return r
        finally:
            conn.close()

    def explain_analyze(self, sql, setup=()):
        conn = self.cl.connect()
        try:
            cur = conn.cursor()
            cur.execute("SET statement_timeout = '900s'")
            for s in setup:
                cur.execute(s)
            cur.execute("EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) " + sql)
            return cur.fetchone()[0][0]["Plan"]
        finally:
            conn.close()

    def write_curl_config(self, mock, reqlog, name):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write('silent\nheader = "Authorization: Bearer %s"\n' % API_KEY)
            f.write('write-out = "%{http_code}\\n"\n')
            for r in reqlog:
                f.write('url = "%s%s"\noutput = "/dev/null"\n' % (mock.base, r["path"]))
        return path

    def curl_run(self, mock, cfg, n, parallel, want_log=False):
        cmd = ["curl"]
        if parallel:
            cmd += ["--parallel", "--parallel-max", str(self.a.concurrency)]
        cmd += ["-K", cfg]
        mock.reset()
        m0 = mock.cpu()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t1 = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        codes = p.stdout.split()
        if p.returncode != 0 or len(codes) != n or any(c != "200" for c in codes):
            raise RuntimeError("curl replay failed: exit %d, %d answers of %d, statuses %s, %s"
                               % (p.returncode, len(codes), n, sorted(set(codes)),
                                  p.stderr[-300:]))
        st = mock.stats()
        r = {"wall": t1 - t0, "t0": t0, "t1": t1, "requests": st["total"],
             "cpu": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
             "mock_cpu": round(mock.cpu() - m0, 3)}
        if want_log:
            r["log"] = mock.requests()
        return r

    # -- scenarios with curl baselines --
    def with_baselines(self, label, scenario, sql, setup=(), seq=True, par=True):
        """runs x (FDW run i, curl --parallel replay of its requests, curl
        sequential replay), interleaved; plus one EXPLAIN ANALYZE first."""
        a, mock = self.a, self.mock
        plan = self.explain_analyze(sql, setup)
        fdw = self.res(label, scenario, "nimble_fdw", sql)
        fdw["plan"] = plan_shape(plan)
        fdw["param_nestloop"] = is_param_nestloop(plan)
        fdw["rows_scanned"] = scanned_rows(plan)
        fdw["explain_counters"] = nimble_counters(plan)
        cp = self.res(label + " curl-par", scenario, "curl --parallel") if par else None
        cs = self.res(label + " curl-seq", scenario, "curl sequential") if seq else None
        for i in range(a.runs):
            r = self.fdw_run(mock, sql, setup, want_log=True)
            reqlog = r.pop("log")
            r["timing"] = timing_of(reqlog, r["t0"], r["t1"], a.latency_ms, a.concurrency)
            r["rows_per_s"] = fdw["rows_scanned"] / r["wall"] if r["wall"] else None
            fdw["runs"].append(r)
            if len(reqlog) != r["requests"]:
                raise RuntimeError("the mock logged %d requests but counted %d"
                                   % (len(reqlog), r["requests"]))
            cfg = self.write_curl_config(mock, reqlog, "replay.cfg")
            n = len(reqlog)
            if cp is not None:
                rp = self.curl_run(mock, cfg, n, True, want_log=True)
                rp["timing"] = timing_of(rp.pop("log"), rp["t0"], rp["t1"], a.latency_ms, a.concurrency)
                rp["ideal"] = math.ceil(n / a.concurrency) * a.latency_ms / 1000.0
                cp["runs"].append(rp)
            if cs is not None and i < a.seq_runs:
                cs["runs"].append(self.curl_run(mock, cfg, n, False))
            log("  %s run %d: FDW %.3fs, curl-par %s, curl-seq %s, %d requests" % (
                label, i + 1, r["wall"],
                "%.3fs" % cp["runs"][-1]["wall"] if cp else "-",
                "%.3fs" % cs["runs"][-1]["wall"] if cs and i < a.seq_runs else "-", n))
        digests = {r["digest"] for r in fdw["runs"]}
        if len(digests) != 1:
            raise RuntimeError("%s: the runs returned different answers" % label)

    # ------------------------------------------------------------------
    def setup_sql(self):
        a = self.a
        conn = self.cl.connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION nimble_fdw")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw'")
        self.extversion = cur.fetchone()[0]
        cur.execute("SHOW server_version")
        self.pg_version = cur.fetchone()[0]
        servers = {
            "s": (self.mock, {"max_concurrency": a.concurrency},
                  {"max_requests_per_second": "0"}),
            "rl": (self.mock, {"max_concurrency": a.concurrency},
                   {"max_requests_per_second": str(CAP_RATE)}),
            "c": (self.mock, {"max_concurrency": a.concurrency},
                  {"max_requests_per_second": "0", "cache_ttl": str(CACHE_TTL)}),
        }
        if self.big:
            servers["z"] = (self.big, {"max_concurrency": a.concurrency},
                            {"max_requests_per_second": "0"})
        self.server_opts = {}
        for name, (mock, base, optional) in servers.items():
            o = {"url": mock.base + "/v1"}
            o.update({k: str(v) for k, v in base.items()})
            cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (%s)" % (
                name, ", ".join("%s %s" % (k, relib.quote_lit(v)) for k, v in o.items())))
            for k, v in optional.items():
                try:
                    cur.execute("ALTER SERVER %s OPTIONS (ADD %s %s)" % (name, k, relib.quote_lit(v)))
                    o[k] = v
                except Exception as e:     # an older build: the option is unknown
                    self.missing[k] = str(e).strip().splitlines()[0]
            self.server_opts[name] = {k: v for k, v in o.items() if k != "url"}
            cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key %s)"
                        % (name, relib.quote_lit(API_KEY)))
            cur.execute("CREATE SCHEMA %s" % name)
            cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = 'nimble_cache_clear'")
        if cur.fetchone()[0] == 0:
            self.missing["nimble_cache_clear()"] = "function nimble_cache_clear() does not exist"
        if "max_requests_per_second" in self.missing:
            self.notes.append("This build does not know max_requests_per_second (%s): servers run "
                              "without it, so without any rate limit." % self.missing["max_requests_per_second"])
        # the local table of ids for scenarios 2 and 3
        ids = self.ids()
        cur.execute("CREATE TABLE ids (batch_id text PRIMARY KEY)")
        cur.execute("INSERT INTO ids SELECT unnest(%s::text[])", (ids,))
        cur.execute("ANALYZE ids")
        conn.close()

    def ids(self):
        nb = self.a.batches
        k = min(200, nb)
        step = nb / k
        return [batch_id(int(round((j + 1) * step))) for j in range(k)]

    # ------------------------------------------------------------------
    def s1(self):
        self.with_baselines("1", "1", "SELECT count(*) FROM s.batch_tasks WHERE state = 'error'")

    def srl(self):
        if "max_requests_per_second" in self.missing:
            raise RuntimeError("server option max_requests_per_second is not known to this build "
                               "(%s): no rate cap to measure"
                               % self.missing["max_requests_per_second"])
        sql = "SELECT count(*) FROM rl.batch_tasks WHERE state = 'error'"
        res = self.res("1 at a rate cap", "rl", "nimble_fdw", sql)
        plan = self.explain_analyze(sql)
        res["rows_scanned"] = scanned_rows(plan)
        res["explain_counters"] = nimble_counters(plan)
        for i in range(self.a.runs):
            r = self.fdw_run(self.mock, sql, want_log=True)
            reqlog = r.pop("log")
            r["rate"] = rate_of(reqlog)
            r["timing"] = timing_of(reqlog, r["t0"], r["t1"], self.a.latency_ms)
            r["rows_per_s"] = res["rows_scanned"] / r["wall"]
            res["runs"].append(r)
            log("  rl run %d: %.3fs, %d requests, mean %s/s, max %d in 1 s" % (
                i + 1, r["wall"], r["requests"], r["rate"]["mean_rps"], r["rate"]["max_1s"]))

    def s2(self):
        ids = self.ids()
        lst = ", ".join(relib.quote_lit(x) for x in ids)
        self.with_baselines("2 IN", "2", "SELECT * FROM s.batch_progress WHERE batch_id IN (%s)" % lst)
        self.with_baselines("2 ANY", "2", "SELECT * FROM s.batch_progress WHERE batch_id = ANY('{%s}'::text[])"
                            % ",".join(ids))

    def s3(self):
        qp = ("SELECT i.batch_id, p.completed, p.completed_count, p.progress, p.completed_at "
              "FROM ids i JOIN s.batch_progress p ON p.batch_id = i.batch_id")
        qt = ("SELECT count(*) FROM ids i JOIN s.batch_tasks t ON t.batch_id = i.batch_id "
              "WHERE t.state = 'error'")
        # the nested loop forced: a LATERAL subquery that cannot be pulled up
        lp = ("SELECT i.batch_id, p.completed, p.completed_count, p.progress, p.completed_at "
              "FROM ids i, LATERAL (SELECT * FROM s.batch_progress p "
              "WHERE p.batch_id = i.batch_id OFFSET 0) p")
        lt = ("SELECT count(*) FROM ids i, LATERAL (SELECT * FROM s.batch_tasks t "
              "WHERE t.batch_id = i.batch_id AND t.state = 'error' OFFSET 0) t")
        self.with_baselines("3 progress", "3", qp)
        self.with_baselines("3 progress, LATERAL nested loop", "3", lp, seq=False)
        self.with_baselines("3 progress, ANY(ARRAY(SELECT))", "3",
                            "SELECT * FROM s.batch_progress p WHERE p.batch_id = "
                            "ANY(ARRAY(SELECT batch_id FROM ids))")
        self.with_baselines("3 tasks", "3", qt)
        self.with_baselines("3 tasks, LATERAL nested loop", "3", lt, seq=False)
        self.with_baselines("3 tasks, ANY(ARRAY(SELECT))", "3",
                            "SELECT count(*) FROM s.batch_tasks t WHERE t.batch_id = "
                            "ANY(ARRAY(SELECT batch_id FROM ids)) AND t.state = 'error'")

    def s4(self):
        qs = "SELECT * FROM s.batches LIMIT 10"
        ql = ("SELECT batch_id, account_name, username, completed, created_at, task_ids, task_count "
              "FROM s.batches LIMIT 10")
        for label, sql in (("4 SELECT *", qs), ("4 list columns", ql)):
            res = self.res(label, "4", "nimble_fdw", sql)
            plan = self.explain_analyze(sql)
            res["rows_scanned"] = scanned_rows(plan)
            res["explain_counters"] = nimble_counters(plan)
            for i in range(self.a.runs):
                r = self.fdw_run(self.mock, sql, want_log=True)
                reqlog = r.pop("log")
                r["timing"] = timing_of(reqlog, r["t0"], r["t1"], self.a.latency_ms)
                r["rows_per_s"] = r["nrows"] / r["wall"]
                res["runs"].append(r)
            log("  %s: requests %s" % (label, [r["by_endpoint"] for r in res["runs"]][:1]))

    def s5(self):
        for k in ("cache_ttl", "nimble_cache_clear()"):
            if k in self.missing:
                raise RuntimeError("%s is not known to this build (%s)" % (k, self.missing[k]))
        sql = "SELECT count(*) FROM c.batch_tasks WHERE state = 'error'"
        res = self.res("5 cached", "5", "nimble_fdw", sql)
        conn = self.cl.connect()
        try:
            cur = conn.cursor()
            cur.execute("SET statement_timeout = '900s'")
            cur.execute("SELECT nimble_cache_clear()")
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("EXPLAIN " + sql)
            cur.fetchall()
            cur.execute("SELECT current_setting('nimble_fdw.cache_size', true)")
            res["cache_size"] = cur.fetchone()[0]
            idle_rss = relib.proc_status(pid, "VmRSS")
            self.mock.reset()
            t0 = time.monotonic()
            cur.execute(sql)
            warm_rows = cur.fetchall()
            t1 = time.monotonic()
            res["warm"] = {"wall": t1 - t0, "requests": self.mock.count(), "digest": digest(warm_rows),
                           "hwm_kb": relib.proc_status(pid, "VmHWM"), "idle_rss_kb": idle_rss}
            res["rows_scanned"] = self.a.batches * self.a.tasks
            for i in range(self.a.runs):
                self.mock.reset()
                c0 = proc_cpu(pid)
                t0 = time.monotonic()
                cur.execute(sql)
                rows = cur.fetchall()
                t1 = time.monotonic()
                hwm = relib.proc_status(pid, "VmHWM")
                res["runs"].append({"wall": t1 - t0, "requests": self.mock.count(),
                                    "cpu": round(proc_cpu(pid) - c0, 3),
                                    "peak_kb": hwm - idle_rss, "hwm_kb": hwm, "idle_rss_kb": idle_rss,
                                    "digest": digest(rows),
                                    "rows_per_s": res["rows_scanned"] / (t1 - t0)})
            cur.execute("SELECT nimble_cache_clear()")
            res["entries_dropped"] = cur.fetchone()[0]
        finally:
            conn.close()
        if any(r["digest"] != res["warm"]["digest"] for r in res["runs"]):
            raise RuntimeError("5: a cached run returned a different answer than the warm run")
        log("  5: warm %.3fs %d requests; repeats %s requests, median %.4fs" % (
            res["warm"]["wall"], res["warm"]["requests"], [r["requests"] for r in res["runs"]],
            median([r["wall"] for r in res["runs"]])))

    def s6(self):
        a, big = self.a, self.big
        conn = self.cl.connect()
        cur = conn.cursor()
        # the same bodies, fetched once, stored as jsonb
        t0 = time.monotonic()
        cur.execute("CREATE TABLE bodies (batch_id text, body jsonb)")
        for n in range(1, a.big_batches + 1):
            req = urllib.request.Request("%s/v1/batches/%s" % (big.base, batch_id(n)),
                                         headers={"Authorization": "Bearer " + API_KEY})
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read().decode("utf-8")
            cur.execute("INSERT INTO bodies VALUES (%s, %s::jsonb)", (batch_id(n), body))
        cur.execute("VACUUM ANALYZE bodies")
        cur.execute("SELECT pg_total_relation_size('bodies'), "
                    "(SELECT sum(octet_length(body::text)) FROM bodies)")
        size, textlen = cur.fetchone()
        # the record type: batch_tasks' own columns and types, named by JSON key
        cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod)
                         FROM pg_attribute a
                        WHERE a.attrelid = 'z.batch_tasks'::regclass AND a.attnum > 0
                          AND NOT a.attisdropped ORDER BY a.attnum""")
        cols = cur.fetchall()
        key = {"task_id": "id", "query": "_query"}
        rec = ", ".join('"%s" %s' % (key.get(c, c), t) for c, t in cols)
        conn.close()
        self.bodies = {"load_s": round(time.monotonic() - t0, 1), "relation_bytes": size,
                       "json_text_bytes": textlen, "columns": len(cols)}
        log("  6: %d bodies stored (%.0f MB as jsonb, %.0f MB as text) in %.1fs" % (
            a.big_batches, size / 1e6, textlen / 1e6, self.bodies["load_s"]))

        q_fdw = "SELECT count(t.*) FROM z.batch_tasks t"
        q_pg = ("SELECT count(r.*) FROM bodies b, jsonb_array_elements(b.body->'tasks') e, "
                "jsonb_to_record(e) AS r(%s) WHERE jsonb_typeof(e) = 'object'" % rec)
        # info: the same scans without column values (the FDW still receives
        # and lexes every body; PostgreSQL still detoasts and walks the arrays)
        q_fdw0 = "SELECT count(*) FROM z.batch_tasks"
        q_pg0 = ("SELECT count(*) FROM bodies b, jsonb_array_elements(b.body->'tasks') e "
                 "WHERE jsonb_typeof(e) = 'object'")
        fdw = self.res("6 nimble_fdw", "6", "nimble_fdw", q_fdw)
        pg = self.res("6 jsonb_to_record", "6", "PostgreSQL jsonb", q_pg)
        fdw0 = self.res("6 (info) nimble_fdw, count(*) only", "6", "nimble_fdw", q_fdw0)
        pg0 = self.res("6 (info) jsonb_array_elements only", "6", "PostgreSQL jsonb", q_pg0)
        plan = self.explain_analyze(q_fdw)         # also the warm-up of both
        fdw["explain_counters"] = nimble_counters(plan)
        fdw["rows_scanned"] = scanned_rows(plan)
        self.fdw_run(None, q_pg)
        for x in (pg, fdw0, pg0):
            x["rows_scanned"] = fdw["rows_scanned"]
        expect = a.big_batches * 1000
        for i in range(a.runs):
            line = []
            for res, mk, q in ((fdw, big, q_fdw), (pg, None, q_pg), (fdw0, big, q_fdw0),
                               (pg0, None, q_pg0)):
                r = self.fdw_run(mk, q)
                n = r["result"][0][0]
                if n != expect:
                    raise RuntimeError("6: %s counted %d rows, expected %d" % (res["label"], n, expect))
                r["rows_per_s"] = n / r["wall"]
                res["runs"].append(r)
                line.append("%.3fs" % r["wall"])
            log("  6 run %d: FDW %s (peak %.1f MB), PG %s; count(*) only: FDW %s, PG %s" % (
                i + 1, line[0], fdw["runs"][-1]["peak_kb"] / 1024, line[1], line[2], line[3]))


# ----------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------

def fmt_s(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "%.3f" % v if v < 10 else "%.2f" % v


def fmt_int(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "{:,}".format(int(round(v)))


def mm(vals, f):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    return "%s (%s–%s)" % (f(median(vals)), f(min(vals)), f(max(vals)))


def col(res, key):
    return [r.get(key) for r in res["runs"] if r.get(key) is not None]


def ratio(a, b):
    return a / b if a and b else float("nan")


def report(b, args, meta, path):
    L = []
    w = L.append
    R = b.results
    w("# nimble_fdw benchmark report\n")
    w("Written by `%s`, %s. Raw numbers: `%s`.\n" % (
        meta["command"], meta["date"], os.path.basename(meta["json"])))
    w("| | |\n| --- | --- |")
    w("| machine | %s |" % meta["machine"])
    w("| PostgreSQL | %s; nimble_fdw %s, `%s` md5 %s (repo %s) |" % (
        b.pg_version, b.extversion, meta["build"]["so"], meta["build"]["md5"][:12],
        meta["build"]["repo"]))
    w("| curl | %s |" % meta["curl"])
    w("| mock | %s, one process (ThreadingHTTPServer), latency %g ms per API request |" % (
        meta["mock_args"], args.latency_ms))
    w("| scenario 6 mock | %s |" % (meta.get("big_args") or "not run"))
    w("| servers | %s |" % "; ".join("`%s`: %s" % (k, ", ".join("%s=%s" % kv for kv in v.items()))
                                      for k, v in b.server_opts.items()))
    w("| runs | %d per line, medians (min–max); sequential curl: %d runs |" % (args.runs, args.seq_runs))
    w("| wall clock | %.0f s for the whole benchmark; load average before/after %s / %s |\n" % (
        meta["seconds"], meta["load_before"], meta["load_after"]))
    for n in b.notes:
        w("> **Note:** %s\n" % n)

    # main table
    w("## Medians\n")
    w("Wall time is the client's (psycopg2 `execute` + `fetchall`, or the curl process). "
      "Requests: what the mock counted. Rows: rows the foreign scans produced before local "
      "filters (from EXPLAIN ANALYZE). Peak memory: VmHWM of a fresh backend after the query "
      "minus its VmRSS before it (the backend warmed by an EXPLAIN of the query). CPU: the "
      "backend's (or curl's) user+system seconds. Eff. conc.: requests × latency ÷ wall time.\n")
    w("| scenario | client | wall s | requests | rows | rows/s | peak mem MB | CPU s | eff. conc. |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label in b.order:
        res = R[label]
        if not res["runs"]:
            continue
        wall = col(res, "wall")
        reqs = col(res, "requests")
        rows = res.get("rows_scanned") if res["client"] != "curl --parallel" and \
            res["client"] != "curl sequential" else None
        rps = col(res, "rows_per_s")
        peak = [v / 1024 for v in col(res, "peak_kb")]
        eff = [r["timing"]["eff_conc"] for r in res["runs"] if r.get("timing", {}).get("eff_conc")]
        if not eff and args.latency_ms and reqs and res["scenario"] != "6":
            eff = [q * args.latency_ms / 1000 / wv for q, wv in zip(reqs, wall)]
        reqtxt = "—"
        if reqs:
            reqtxt = fmt_int(median(reqs)) if min(reqs) == max(reqs) else mm(reqs, fmt_int)
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label.split(" curl-")[0], res["client"], mm(wall, fmt_s), reqtxt,
            fmt_int(rows) if rows else "—", mm(rps, fmt_int) if rps else "—",
            mm(peak, lambda v: "%.1f" % v) if peak else "—",
            "%.2f" % median(col(res, "cpu")) if col(res, "cpu") else "—",
            "%.1f" % median(eff) if eff and res["scenario"] not in ("5", "6") else "—"))
    w("")

    # targets
    w("## Targets\n")
    w("| target | measured | goal | met |")
    w("| --- | --- | --- | --- |")
    missed = []

    def tgt(name, value, goal, ok, info=False):
        if info:    # a variant the targets were not set for: shown, never "missed"
            w("| %s | %s | (info) %s | %s |" % (name, value, goal, "(yes)" if ok else "(no)"))
            return
        w("| %s | %s | %s | %s |" % (name, value, goal, "yes" if ok else "**NO**"))
        if not ok:
            missed.append("%s: %s (goal %s)" % (name, value, goal))

    for label in b.order:
        res = R[label]
        if res["client"] != "nimble_fdw" or res["scenario"] not in ("1", "2", "3") or not res["runs"]:
            continue
        f = median(col(res, "wall"))
        info = "LATERAL" in label or "ANY(ARRAY" in label
        p = R.get(label + " curl-par")
        s = R.get(label + " curl-seq")
        if p and p["runs"]:
            pr = [fr["wall"] / pr_["wall"] for fr, pr_ in zip(res["runs"], p["runs"])]
            v = ratio(f, median(col(p, "wall")))
            tgt("%s: FDW ÷ curl --parallel %d" % (label, args.concurrency),
                "%.2f (paired runs %.2f–%.2f)" % (v, min(pr), max(pr)), "≤ 1.3", v <= 1.3, info)
        if s and s["runs"]:
            v = ratio(median(col(s, "wall")), f)
            ceil_ = ""
            if p and p["runs"]:
                ceil_ = " (curl --parallel: %.1f; a perfect %d-way client: %.1f)" % (
                    median(col(s, "wall")) / median(col(p, "wall")),
                    args.concurrency, median(col(s, "wall")) / p["runs"][0]["ideal"])
            tgt("%s: curl sequential ÷ FDW" % label, "%.1f%s" % (v, ceil_), "≥ 8", v >= 8, info)
    for label in b.order:
        res = R[label]
        if res["scenario"] == "3" and res["client"] == "nimble_fdw" and "LATERAL" not in label \
                and "ANY" not in label and "plan" in res:
            # the goal: a nested loop when the outer side is small, a
            # concurrent walk when it is large; which of the two this join
            # is, only their times say, so the goal is the faster plan
            nl = R.get(label + ", LATERAL nested loop")
            if nl and nl["runs"] and res["runs"]:
                picked, forced = median(col(res, "wall")), median(col(nl, "wall"))
                kind = "nested loop" if res["param_nestloop"] else "concurrent walk"
                tgt("%s: the planner picks the faster plan" % label,
                    "%s, %.3f s (the parameterized nested loop: %.3f s)" % (kind, picked, forced),
                    "no slower than the other plan", picked <= forced * 1.05)
    if "4 list columns" in R and R["4 list columns"]["runs"]:
        reqs = col(R["4 list columns"], "requests")
        tgt("4 list columns LIMIT 10: requests", ", ".join(map(str, sorted(set(reqs)))), "exactly 1",
            set(reqs) == {1})
    if "5 cached" in R and R["5 cached"]["runs"]:
        reqs = col(R["5 cached"], "requests")
        tgt("5 within cache_ttl: requests per repeat", ", ".join(map(str, sorted(set(reqs)))), "0",
            set(reqs) == {0})
    if "1 at a rate cap" in R and R["1 at a rate cap"]["runs"]:
        rr = [r["rate"] for r in R["1 at a rate cap"]["runs"]]
        mx = max(r["max_1s"] for r in rr)
        tgt("1 at max_requests_per_second %d: most requests in any 1 s" % CAP_RATE,
            "%d (mean rate %s/s)" % (mx, median([r["mean_rps"] for r in rr if r["mean_rps"]])),
            "≤ %d" % CAP_RATE, mx <= CAP_RATE)
    if "6 nimble_fdw" in R and R["6 nimble_fdw"]["runs"] and R["6 jsonb_to_record"]["runs"]:
        fr = median(col(R["6 nimble_fdw"], "rows_per_s"))
        pr = median(col(R["6 jsonb_to_record"], "rows_per_s"))
        paired = [x["rows_per_s"] / y["rows_per_s"]
                  for x, y in zip(R["6 nimble_fdw"]["runs"], R["6 jsonb_to_record"]["runs"])]
        tgt("6: FDW rows/s ÷ PostgreSQL jsonb_to_record rows/s",
            "%.2f (%s ÷ %s; paired runs %.2f–%.2f)" % (fr / pr, fmt_int(fr), fmt_int(pr),
                                                       min(paired), max(paired)), "≥ 2", fr / pr >= 2)
        pk = max(col(R["6 nimble_fdw"], "peak_kb")) / 1024
        tgt("6: FDW peak backend memory above idle (worst run)", "%.1f MB" % pk, "≤ 64 MB", pk <= 64)
    w("")

    # scenario details
    w("## Details\n")
    rows3 = [l for l in b.order if R[l]["scenario"] in ("1", "2", "3") and R[l]["client"] == "nimble_fdw"]
    if rows3:
        w("### Plans and where the FDW's time goes (scenarios 1–3)\n")
        w("From the mock's arrival log of each FDW run (`/_mock/requests`), medians: *first* = "
          "query start to the first request's arrival, *tail* = the last answer (arrival + "
          "latency) to the query's end, *max gap* = longest pause between two arrivals. The "
          "same for curl --parallel. *Ideal* = ceil(requests ÷ %d) × %g ms.\n"
          % (args.concurrency, args.latency_ms))
        w("*Mock CPU* = the mock's CPU seconds ÷ wall time during the run, FDW / curl --parallel "
          "(1.0 would be one core saturated: the mock is one Python process).\n")
        w("*Below window* = time with fewer than %d requests in flight (a request counts as "
          "in flight from its arrival for the latency), from the first arrival to the start of "
          "the last round, FDW / curl --parallel. *List stall* = for each list page after the "
          "first, the time with fewer than %d in flight within 3 × latency of its arrival "
          "(median over pages): the window draining while the next page is fetched.\n"
          % (args.concurrency, args.concurrency // 2))
        w("| line | plan | FDW first / tail / max gap ms | curl-par first / tail / max gap ms | "
          "below window ms | list stall ms | curl-par ÷ ideal | mock CPU |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for l in rows3:
            res = R[l]
            t = [r["timing"] for r in res["runs"] if r.get("timing")]
            p = R.get(l + " curl-par")
            pt = [r["timing"] for r in p["runs"]] if p else []

            def trio(ts):
                if not ts:
                    return "—"
                return " / ".join("%.0f" % median([x[k] for x in ts]) for k in
                                  ("first_ms", "tail_ms", "max_gap_ms"))
            ideal = "—"
            if p and p["runs"]:
                ideal = "%.2f (%.3f s ÷ %.3f s)" % (
                    median(col(p, "wall")) / p["runs"][0]["ideal"], median(col(p, "wall")),
                    p["runs"][0]["ideal"])
            mc = lambda x: "%.2f" % median([r["mock_cpu"] / r["wall"] for r in x["runs"]])  # noqa: E731
            def med(ts, k):
                v = [x[k] for x in ts if k in x]
                return "%.0f" % median(v) if v else "—"
            w("| %s | %s | %s | %s | %s / %s | %s | %s | %s / %s |" % (
                l, res.get("plan", "—"), trio(t), trio(pt), med(t, "below_window_ms"),
                med(pt, "below_window_ms"), med(t, "list_stall_ms"), ideal, mc(res),
                mc(p) if p else "—"))
        w("")
    if any(R[l]["scenario"] == "4" for l in b.order):
        w("### Scenario 4: requests per endpoint (`/_mock/stats`)\n")
        w("| query | list | details | progress | total | rows |")
        w("| --- | --- | --- | --- | --- | --- |")
        for l in b.order:
            res = R[l]
            if res["scenario"] != "4" or not res["runs"]:
                continue
            be = [r["by_endpoint"] for r in res["runs"]]
            cell = lambda k: "/".join(sorted({str(x[k]) for x in be}))  # noqa: E731
            w("| `%s` | %s | %s | %s | %s | %d |" % (res["query"], cell("list"), cell("details"),
                                                     cell("progress"),
                                                     "/".join(sorted({str(r["requests"]) for r in res["runs"]})),
                                                     res["runs"][0]["nrows"]))
        w("\nBy contract the progress columns of `batches` come from one `/progress` request per "
          "row, so `SELECT *` makes one list request plus one progress request per row: the "
          "`LIMIT` bounds the scan's window (`Nimble Row Bound`), so 10 is the least and the "
          "most.\n")
    if "5 cached" in R and R["5 cached"].get("warm"):
        res = R["5 cached"]
        w("### Scenario 5: cache\n")
        w("Server `c` has cache_ttl '%d'. One backend: `nimble_cache_clear()`, one warm run "
          "(%.3f s, %d requests), then %d measured runs (requests: %s). nimble_fdw.cache_size: "
          "%s. Peak memory is VmHWM after the last run minus VmRSS before the warm run, so it "
          "includes the cache. `nimble_cache_clear()` at the end dropped %s entries.\n" % (
              CACHE_TTL, res["warm"]["wall"], res["warm"]["requests"], len(res["runs"]),
              ", ".join(str(r["requests"]) for r in res["runs"]), res.get("cache_size"),
              res.get("entries_dropped")))
    if "1 at a rate cap" in R and R["1 at a rate cap"]["runs"]:
        res = R["1 at a rate cap"]
        w("### Scenario 1 at a rate cap\n")
        w("Server `rl` sets max_requests_per_second %d (one request per "
          "%.1f ms). Per run: wall s, requests, mean arrival rate (requests − 1 over "
          "first-to-last arrival), most arrivals in any 1 s window, and the gaps between "
          "consecutive arrivals (10th / 50th / 90th percentile):\n" % (CAP_RATE, 1000 / CAP_RATE))
        for r in res["runs"]:
            w("- %.2f s, %d requests, %s/s mean, %d in the busiest second, gaps %s ms" % (
                r["wall"], r["requests"], r["rate"]["mean_rps"], r["rate"]["max_1s"],
                " / ".join("%.1f" % g for g in r["rate"].get("gap_ms_p10_p50_p90", []))))
        w("")
    if "6 nimble_fdw" in R and R["6 nimble_fdw"]["runs"]:
        f, p = R["6 nimble_fdw"], R["6 jsonb_to_record"]
        w("### Scenario 6: decoding\n")
        w("%d batches × 1,000 tasks from a second mock with latency 0. FDW: `%s` (a whole-row "
          "reference, so every column is decoded), %s requests per run, %s bytes (EXPLAIN "
          "ANALYZE). PostgreSQL: the %d `/batches/{id}` bodies fetched once and stored as jsonb "
          "(%.0f MB as JSON text, relation %.0f MB, loaded in %.0f s), then\n\n```sql\n%s\n```\n"
          % (args.big_batches, f["query"], fmt_int(median(col(f, "requests"))),
             fmt_int(f["explain_counters"].get("Nimble Bytes")), args.big_batches,
             b.bodies["json_text_bytes"] / 1e6, b.bodies["relation_bytes"] / 1e6,
             b.bodies["load_s"], p["query"]))
        w("Both warmed by one untimed run; runs interleaved; max_parallel_workers_per_gather = 0, "
          "jit off, shared_buffers %s. Mock CPU during an FDW run: median %.2f s of %.2f s wall "
          "(the mock shares the 2 cores). PostgreSQL's peak memory includes the shared buffers "
          "it touched.\n" % (meta["shared_buffers"], median(col(f, "mock_cpu")),
                             median(col(f, "wall"))))
    if b.errors:
        w("## Errors\n")
        for e in b.errors:
            w("- **%s**: %s" % e)
        w("")
    w("## Missed targets\n")
    w("\n".join("- " + m for m in missed) if missed else "None.")
    w("")
    with open(path, "w") as fh:
        fh.write("\n".join(L))
    return missed


# ----------------------------------------------------------------------
# main
# ----------------------------------------------------------------------

SCENARIOS = ["1", "rl", "2", "3", "4", "5", "6"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="runs per line (default 5; 2 with --quick)")
    ap.add_argument("--seq-runs", type=int,
                    help="runs of the sequential curl baseline (default: --runs)")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=16,
                    help="max_concurrency of the servers and curl's --parallel-max (default 16, the server default)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated, from %s (default: all)" % ",".join(SCENARIOS))
    ap.add_argument("--quick", action="store_true",
                    help="small data sets: 50 batches x 20 tasks; 50 x 1,000 for scenario 6")
    ap.add_argument("--out", default=str(HERE / "REPORT.md"))
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    a = ap.parse_args()
    relib.bootstrap()
    sel = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in sel if s not in SCENARIOS]
    if bad:
        ap.error("unknown scenario %s (choose from %s)" % (",".join(bad), ",".join(SCENARIOS)))
    if a.runs is None:
        a.runs = 2 if a.quick else 5
    if a.seq_runs is None:
        a.seq_runs = a.runs
    a.seq_runs = min(a.seq_runs, a.runs)
    a.batches, a.tasks = (50, 20) if a.quick else (1000, 100)
    a.big_batches = 50 if a.quick else 1000
    t_start = time.time()
    meta = {"command": ("test/bench/bench.py " + " ".join(sys.argv[1:])).strip(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "json": os.path.splitext(a.out)[0] + ".json",
            "load_before": open("/proc/loadavg").read().split()[0]}
    m = relib.machine()
    meta["machine"] = "%s cores (%s), %s GiB, kernel %s" % (m["nproc"], m["cpu"], m["mem_gib"], m["kernel"])
    meta["curl"] = subprocess.check_output(["curl", "--version"], text=True).splitlines()[0]
    meta["build"] = relib.build_install(skip=True)
    log("curl: " + meta["curl"])
    log("nimble_fdw.so md5 %s, repo %s" % (meta["build"]["md5"], meta["build"]["repo"]))

    shared_buffers = "1GB" if "6" in sel and not a.quick else "128MB"
    meta["shared_buffers"] = shared_buffers
    cluster = relib.Cluster("bench", {"shared_buffers": "'%s'" % shared_buffers,
                                      "max_parallel_workers_per_gather": "0"})
    mock = big = None
    b = None
    rc = 0
    try:
        margs = ["--latency-ms", "%g" % a.latency_ms, "--batches", str(a.batches),
                 "--tasks-per-batch", str(a.tasks)]
        meta["mock_args"] = "`mock_nimble.py %s`" % " ".join(margs)
        mock = Mock(cluster.dir, "mock", margs)
        if "6" in sel:
            bargs = ["--latency-ms", "0", "--batches", str(a.big_batches), "--tasks-per-batch", "1000"]
            meta["big_args"] = "`mock_nimble.py %s`" % " ".join(bargs)
            big = Mock(cluster.dir, "big", bargs)
        cluster.start()
        log("cluster on port %d; waiting for the mock(s)" % cluster.port)
        mock.wait_ready()
        if big:
            log("scenario 6 mock up after %.0f s" % big.wait_ready())
        try:
            mock.requests()
        except Exception as e:
            sys.exit("test/mock_nimble.py has no /_mock/requests: %s" % e)
        b = Bench(a, cluster, mock, big)
        b.setup_sql()
        if b.missing:
            log("not in this build: %s" % "; ".join("%s (%s)" % kv for kv in b.missing.items()))
        for s in SCENARIOS:
            if s not in sel:
                continue
            log("scenario %s" % s)
            try:
                getattr(b, "s" + s)()
            except Exception as e:
                traceback.print_exc()
                b.errors.append((s, "%s: %s" % (type(e).__name__, str(e).strip())))
                log("scenario %s FAILED: %s" % (s, e))
    finally:
        for mk in (mock, big):
            if mk:
                mk.stop()
        cluster.stop()
        if not a.keep:
            cluster.remove()
        else:
            log("kept " + cluster.dir)
    if b is None:
        return 1
    meta["build_after_md5"] = relib.md5_of(meta["build"]["so"])
    if meta["build_after_md5"] != meta["build"]["md5"]:
        b.notes.insert(0, "**The installed nimble_fdw.so changed during this run** (md5 %s before, "
                       "%s after): the lines measured before and after the change ran different "
                       "builds. Run again." % (meta["build"]["md5"][:12], meta["build_after_md5"][:12]))
        log("WARNING: nimble_fdw.so changed during the run")
    meta["seconds"] = time.time() - t_start
    meta["load_after"] = open("/proc/loadavg").read().split()[0]
    missed = report(b, a, meta, a.out)
    raw = {"meta": meta, "args": vars(a), "missing": b.missing, "errors": b.errors,
           "results": b.results, "bodies": getattr(b, "bodies", None)}
    relib.write_json(meta["json"], raw)
    print(open(a.out).read())
    for mline in missed:
        print("target missed:", mline)
    if b.errors:
        for s, e in b.errors:
            print("ERROR in scenario %s: %s" % (s, e))
        rc = 1
    log("done in %.0f s; report %s" % (meta["seconds"], a.out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
