#!/usr/bin/env python3
"""rate_bench.py - nimble_fdw's request rate limiting, against curl and an API's limit.

    test/bench/rate_bench.py [--runs 5] [--quick] [--preload] [--sessions 4,16]
                             [--latency-ms 20] [--window 200/5]
                             [--window-mock test/mock_nimble.py]
                             [--out test/bench/RATE_REPORT.md] [--keep]
    test/bench/rate_bench.py --from-json test/bench/RATE_REPORT.json [--out ...]

Starts a private PostgreSQL cluster (relib: the installed nimble_fdw, as the
postgres user, on a free port, jit off; --preload puts nimble_fdw into
shared_preload_libraries) and two mock APIs (test/mock_nimble.py
--latency-ms 20 --batches 1000 --tasks-per-batch 5; the second with
--window-limit 200/5, a sliding window of 200 requests in any 5 s per key
that answers 429 + Retry-After above it).  Each query runs in a new
connection (as a pool or a pg_cron job runs it):

  F   SELECT * FROM d.batch_progress WHERE batch_id = ANY('{...200 ids...}')
      on a server with only its url (the default rate limit and
      concurrency), against the same 200 requests replayed by
      curl --parallel --parallel-max 16 and by curl one at a time
  F0  the same query on a server with max_requests_per_second '0': the
      limiter's own cost (F / F0)
  M4, M16  4 and 16 sessions, started together, each running the F query on
      a server with only its url against the windowed mock: wall time,
      requests, 429s, the FDW's retries (nimble_stats), whether every
      session got the single-session answer, and the wall time against the
      least time the window allows for that many requests

Round i runs F i, F0 i, then the baselines of round i (and M4 i, M16 i after
all F rounds), so a slow moment of a shared machine hits every line.
Medians (min-max) of the runs; ratios are of medians of the same run.
Writes the markdown report (--out) and the raw numbers beside it (.json).
Exit status 1 on an error or a wrong answer; a missed target is printed and
reported, not fatal.  A mock without --window-limit makes M "skipped".
See test/bench/README.md.
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
import relib  # noqa: E402
from ids import batch_id  # noqa: E402

log = relib.log

API_KEY = "test-key"
CURL_PARALLEL = 16          # curl's --parallel-max: the server default of max_concurrency
N_BATCHES = 1000
TASKS_PER_BATCH = 5
SKIP_NO_WINDOW = "skipped: the mock has no --window-limit"
# the library being reinstalled under a new backend: wait and connect again
LOAD_ERRORS = ("could not access file", "could not load library", "incompatible library")


# ----------------------------------------------------------------------
# plumbing
# ----------------------------------------------------------------------

class Mock(relib.Mock):
    """relib.Mock, started without waiting, and raising instead of exiting
    when it does not come up (a mock without --window-limit)."""

    def __init__(self, workdir, name, args, script=relib.MOCK):
        self.workdir = workdir
        self.name = name
        self.args = list(args)
        self.script = str(script)
        self.portfile = os.path.join(workdir, name + ".port")
        self.logpath = os.path.join(workdir, name + ".log")
        self.proc = subprocess.Popen(
            [relib.SYS_PYTHON, self.script, "--port", "0", "--port-file", self.portfile, *args],
            stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT)
        self.port = None

    def cmdline(self):
        s = self.script
        if s.startswith(str(relib.REPO) + "/"):
            s = s[len(str(relib.REPO)) + 1:]
        return "%s %s" % (s, " ".join(self.args))

    def wait_ready(self, timeout=120):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if os.path.exists(self.portfile) and open(self.portfile).read().strip():
                self.port = int(open(self.portfile).read().strip())
                self.base = "http://127.0.0.1:%d" % self.port
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError("mock %s exited (status %s): %s" % (
                    self.name, self.proc.returncode, open(self.logpath).read().strip()[-400:]))
            time.sleep(0.05)
        raise RuntimeError("mock %s did not start in %d s" % (self.name, timeout))

    def requests(self):
        return json.loads(self._get("/_mock/requests"))


def digest(rows):
    """The answer, whatever order the rows came in."""
    return hashlib.md5(repr(sorted(repr(r) for r in rows)).encode()).hexdigest()[:12]


def median(v):
    v = [x for x in v if x is not None]
    return relib.median(v) if v else None


def is_load_error(e):
    return any(s in str(e) for s in LOAD_ERRORS)


def parse_window(spec):
    n, _, s = spec.partition("/")
    n, s = int(n), float(s)
    if n < 1 or s <= 0:
        raise ValueError(spec)
    return n, s


def allowed_time(t, limit, secs, latency_s):
    """The least time in which t requests get through limit-per-secs (a
    sliding window, starting full), each taking latency_s."""
    if t <= 0:
        return latency_s
    return max(latency_s, (math.ceil(t / limit) - 1) * secs + latency_s)


def arrivals(reqlog):
    """Mean arrival rate between the first and last request, and the most
    arrivals in any 1 s window."""
    ts = sorted(r["t"] for r in reqlog)
    if len(ts) < 2:
        return None, len(ts)
    peak, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    span = ts[-1] - ts[0]
    return ((len(ts) - 1) / span if span > 0 else None), peak


def window_peak(reqlog, secs):
    """The most arrivals in any window of secs seconds."""
    ts = sorted(r["t"] for r in reqlog)
    peak, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - secs:
            j += 1
        peak = max(peak, i - j + 1)
    return peak


# ----------------------------------------------------------------------
# one session
# ----------------------------------------------------------------------

class Session:
    """A new connection, warmed by an EXPLAIN of the query (loads the
    module and the catalog caches; no request), ready to run it once."""

    def __init__(self, cluster, sql, tries=10):
        for i in range(tries):
            try:
                self.conn = cluster.connect()
                self.cur = self.conn.cursor()
                self.cur.execute("SET statement_timeout = '600s'")
                self.cur.execute("SELECT pg_backend_pid()")
                self.pid = self.cur.fetchone()[0]
                self.cur.execute("EXPLAIN " + sql)
                self.cur.fetchall()
                break
            except Exception as e:
                try:
                    self.conn.close()
                except Exception:
                    pass
                if not is_load_error(e) or i == tries - 1:
                    raise
                log("  the library is being replaced (%s); connecting again" % str(e).strip())
                time.sleep(1)
        self.sql = sql

    def run(self, stats=True):
        """Run the query: the times, the answer, this backend's nimble_stats."""
        r = {}
        r["t0"] = time.monotonic()
        try:
            self.cur.execute(self.sql)
            rows = self.cur.fetchall()
            r["t1"] = time.monotonic()
            r["nrows"] = len(rows)
            r["digest"] = digest(rows)
        except Exception as e:
            r["t1"] = time.monotonic()
            r["error"] = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
        r["s"] = r["t1"] - r["t0"]
        if stats:
            r["stats"] = nimble_stats(self.cur)
        return r

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


STATS_COLS = ("requests", "retries", "errors", "errors_by_status", "rate_limit_wait_ms",
              "network_wait_ms", "connections")


def nimble_stats(cur):
    """This backend's nimble_stats row(s), summed over servers; None when
    the view is missing or fails."""
    try:
        cur.execute("SELECT %s FROM nimble_stats" % ", ".join(STATS_COLS))
        rows = cur.fetchall()
    except Exception as e:
        return {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}
    out = {"requests": 0, "retries": 0, "errors": 0, "errors_by_status": {},
           "rate_limit_wait_ms": 0.0, "network_wait_ms": 0.0, "connections": 0}
    for row in rows:
        d = dict(zip(STATS_COLS, row))
        for k in ("requests", "retries", "errors", "connections"):
            out[k] += d[k] or 0
        for k in ("rate_limit_wait_ms", "network_wait_ms"):
            out[k] += float(d[k] or 0)
        ebs = d["errors_by_status"] or {}
        if isinstance(ebs, str):
            ebs = json.loads(ebs)
        for k, v in ebs.items():
            out["errors_by_status"][k] = out["errors_by_status"].get(k, 0) + v
    return out


# ----------------------------------------------------------------------
# the benchmark
# ----------------------------------------------------------------------

class Bench:
    def __init__(self, a, cluster, mock, wmock, results):
        self.a = a
        self.cl = cluster
        self.mock = mock
        self.wmock = wmock
        self.R = results
        self.failures = results["failures"]
        self.workdir = cluster.dir

    def line(self, label, scenario, client, **kw):
        L = self.R["lines"]
        if label not in L:
            L[label] = dict({"scenario": scenario, "client": client, "runs": []}, **kw)
        return L[label]

    # -- setup --
    def setup_sql(self):
        conn = self.cl.connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION nimble_fdw")
        meta = self.R["meta"]
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw'")
        meta["extversion"] = cur.fetchone()[0]
        cur.execute("SHOW server_version")
        meta["pg"] = cur.fetchone()[0]
        cur.execute("SHOW shared_preload_libraries")
        meta["shared_preload_libraries"] = cur.fetchone()[0]
        meta["preloaded"] = "nimble_fdw" in [s.strip() for s in meta["shared_preload_libraries"].split(",")]
        cur.execute("SHOW nimble_fdw.allowed_hosts")
        meta["allowed_hosts"] = cur.fetchone()[0]
        servers = {"d": (self.mock, {}), "z": (self.mock, {"max_requests_per_second": "0"})}
        if self.wmock:
            servers["w"] = (self.wmock, {})
        for name, (mk, extra) in servers.items():
            o = dict({"url": mk.base + "/v1"}, **extra)
            cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (%s)" % (
                name, ", ".join("%s %s" % (k, relib.quote_lit(v)) for k, v in o.items())))
            cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key %s)"
                        % (name, relib.quote_lit(API_KEY)))
            cur.execute("CREATE SCHEMA %s" % name)
            cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))
        cur.execute("SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname IN ('d','z','w') "
                    "ORDER BY srvname")
        meta["servers"] = {n: list(o or []) for n, o in cur.fetchall()}
        cur.execute("SELECT to_regclass('nimble_stats') IS NOT NULL")
        meta["nimble_stats"] = cur.fetchone()[0]
        conn.close()

    # -- F and F0 --
    def reset_stats(self):
        """Preloaded, nimble_stats is the cluster's: zero it before a run,
        so that what is read after it is that run's."""
        if self.R["meta"].get("preloaded"):
            conn = self.cl.connect()
            try:
                conn.cursor().execute("SELECT nimble_stats_reset()")
            finally:
                conn.close()

    def fdw_run(self, sql):
        s = Session(self.cl, sql)
        try:
            self.mock.reset()
            self.reset_stats()
            r = s.run()
        finally:
            s.close()
        st = self.mock.stats()
        r["requests"] = st["total"]
        reqlog = self.mock.requests()
        r["mean_rate"], r["peak_1s"] = arrivals(reqlog)
        return r, reqlog

    def write_curl_config(self, reqlog):
        path = os.path.join(self.workdir, "replay.cfg")
        with open(path, "w") as f:
            f.write('silent\nheader = "Authorization: Bearer %s"\n' % API_KEY)
            f.write('write-out = "%{http_code}\\n"\n')
            for q in reqlog:
                f.write('url = "%s%s"\noutput = "/dev/null"\n' % (self.mock.base, q["path"]))
        return path

    def curl_run(self, cfg, n, parallel):
        cmd = ["curl"] + (["--parallel", "--parallel-max", str(CURL_PARALLEL)] if parallel else []) + ["-K", cfg]
        self.mock.reset()
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t1 = time.monotonic()
        codes = p.stdout.split()
        if p.returncode != 0 or len(codes) != n or any(c != "200" for c in codes):
            raise RuntimeError("curl replay failed: exit %d, %d answers of %d, statuses %s, %s"
                               % (p.returncode, len(codes), n, sorted(set(codes)), p.stderr[-300:]))
        reqlog = self.mock.requests()
        rate, peak = arrivals(reqlog)
        return {"s": t1 - t0, "requests": self.mock.stats()["total"], "mean_rate": rate, "peak_1s": peak}

    def scenario_f(self, f_sql, n_ids):
        a = self.a
        f = self.line("F", "F", "nimble_fdw, server d (defaults)", sql=f_sql.replace("%SRV%", "d"))
        f0 = self.line("F0", "F0", "nimble_fdw, server z (max_requests_per_second 0)",
                       sql=f_sql.replace("%SRV%", "z"))
        cp = self.line("F curl --parallel", "F", "curl --parallel --parallel-max %d" % CURL_PARALLEL)
        cs = self.line("F curl sequential", "F", "curl, one at a time")
        for i in range(a.runs):
            r, reqlog = self.fdw_run(f["sql"])
            f["runs"].append(r)
            r0, _ = self.fdw_run(f0["sql"])
            f0["runs"].append(r0)
            for lab, x in (("F", r), ("F0", r0)):
                if "error" in x:
                    raise RuntimeError("%s run %d: %s" % (lab, i + 1, x["error"]))
                if x["nrows"] != n_ids:
                    self.failures.append("%s run %d: %d rows, expected %d" % (lab, i + 1, x["nrows"], n_ids))
            if len(reqlog) != r["requests"]:
                raise RuntimeError("the mock logged %d requests but counted %d" % (len(reqlog), r["requests"]))
            cfg = self.write_curl_config(reqlog)
            cp["runs"].append(self.curl_run(cfg, len(reqlog), True))
            cs["runs"].append(self.curl_run(cfg, len(reqlog), False))
            log("  F round %d: FDW %.3f s (%d requests, peak %s/s), F0 %.3f s, curl-par %.3f s, curl-seq %.3f s"
                % (i + 1, r["s"], r["requests"], r["peak_1s"], r0["s"], cp["runs"][-1]["s"],
                   cs["runs"][-1]["s"]))
        ds = {x["digest"] for x in f["runs"] + f0["runs"]}
        if len(ds) != 1:
            self.failures.append("F / F0: the runs returned different answers (%s)" % ", ".join(sorted(ds)))
        f["digest"] = f0["digest"] = f["runs"][0]["digest"]

    # -- M --
    def probe_window(self, probe_id):
        """One request to the windowed mock: its rate limit headers."""
        req = urllib.request.Request(self.wmock.base + "/v1/batches/%s/progress" % probe_id,
                                     headers={"Authorization": "Bearer " + API_KEY})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return {k.lower(): v for k, v in resp.getheaders()
                    if k.lower().startswith("ratelimit") or k.lower() == "retry-after"}

    def m_run(self, nsess, sql):
        """nsess sessions, each its own connection, released together."""
        sessions = [None] * nsess
        results = [None] * nsess
        errors = []
        release = {}

        def at_release():
            self.wmock.reset()
            self.reset_stats()
            release["t"] = time.monotonic()

        barrier = threading.Barrier(nsess, action=at_release)

        def worker(k):
            try:
                sessions[k] = Session(self.cl, sql)
            except Exception as e:
                errors.append("session %d did not connect: %s" % (k, e))
                barrier.abort()
                return
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return
            results[k] = sessions[k].run()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(nsess)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in sessions:
            if s:
                s.close()
        if errors:
            raise RuntimeError("; ".join(errors))
        st = self.wmock.stats()
        reqlog = self.wmock.requests()
        t0 = release["t"]
        r = {"s": max(x["t1"] for x in results) - t0,
             "first_done_s": min(x["t1"] for x in results) - t0,
             "start_spread_ms": (max(x["t0"] for x in results) - t0) * 1000,
             "total": st["total"], "refused": st.get("refused"),
             "sessions": [{k: v for k, v in x.items() if k not in ("t0", "t1")} for x in results]}
        ss = [x.get("stats") for x in results]
        if self.R["meta"].get("preloaded"):
            # the cluster's figures, read once the sessions are done (each
            # adds its own as its scan ends): summing the sessions' views
            # would count each run nsess times
            conn = self.cl.connect()
            try:
                ss = [nimble_stats(conn.cursor())]
            finally:
                conn.close()
        if all(isinstance(x, dict) and "error" not in x for x in ss):
            r["fdw_requests"] = sum(x["requests"] for x in ss)
            r["retries"] = sum(x["retries"] for x in ss)
            r["fdw_429"] = sum(x["errors_by_status"].get("429", 0) for x in ss)
            r["rate_limit_wait_ms"] = sum(x["rate_limit_wait_ms"] for x in ss)
        else:
            r["stats_error"] = next((x.get("error") for x in ss if isinstance(x, dict) and "error" in x),
                                    "nimble_stats missing")
        # the most admitted requests in one window: the mock's own count, or
        # from its log (a mock without "max_in_window")
        admitted = [q for q in reqlog if q.get("status") != 429]
        r["window_peak"] = st.get("max_in_window", window_peak(admitted, self.a.window_secs))
        return r

    def scenario_m(self, sessions, m_sql, n_ids, ref_digest):
        a = self.a
        lines = {}
        for n in sessions:
            lines[n] = self.line("M%d" % n, "M%d" % n, "%d sessions, server w (defaults)" % n,
                                 sql=m_sql.replace("%SRV%", "w"), sessions_n=n)
            if not self.wmock:
                lines[n]["skipped"] = self.R["meta"]["window_skip"]
        if not self.wmock:
            return
        lat = a.latency_ms / 1000.0
        for i in range(a.runs):
            for n in sessions:
                ln = lines[n]
                time.sleep(a.window_secs + 0.5)       # every run starts with a full budget
                r = self.m_run(n, ln["sql"])
                answered = r["total"] - (r["refused"] or 0)
                r["allowed_s"] = allowed_time(answered, a.window_n, a.window_secs, lat)
                r["ratio"] = r["s"] / r["allowed_s"]
                bad = [k for k, x in enumerate(r["sessions"])
                       if "error" in x or x["digest"] != ref_digest or x["nrows"] != n_ids]
                r["right"] = n - len(bad)
                r["all_right"] = not bad
                ln["runs"].append(r)
                for k in bad:
                    x = r["sessions"][k]
                    self.failures.append("M%d run %d session %d: %s" % (
                        n, i + 1, k, x.get("error") or "wrong answer (%d rows, digest %s, expected %s)"
                        % (x["nrows"], x["digest"], ref_digest)))
                log("  M%d run %d: %.3f s (first done %.3f s), %d requests, %s refused, retries %s, "
                    "%d/%d right, allowed %.2f s, ratio %.2f" % (
                        n, i + 1, r["s"], r["first_done_s"], r["total"],
                        "?" if r["refused"] is None else r["refused"], r.get("retries", "?"),
                        r["right"], n, r["allowed_s"], r["ratio"]))


# ----------------------------------------------------------------------
# targets and report
# ----------------------------------------------------------------------

def runs_of(results, label, key="s"):
    ln = results["lines"].get(label)
    if not ln or ln.get("skipped"):
        return []
    return [r.get(key) for r in ln["runs"] if r.get(key) is not None]


def med_of(results, label, key="s"):
    return median(runs_of(results, label, key))


def rounds_ratio(results, a_, b_):
    """Per-round ratios a/b (the same round's runs)."""
    x, y = runs_of(results, a_), runs_of(results, b_)
    return [p / q for p, q in zip(x, y) if q]


def check_targets(results):
    """The targets, into results["targets"]; the missed ones."""
    T = []

    def ratio(a_, b_):
        x, y = med_of(results, a_), med_of(results, b_)
        return x / y if x is not None and y else None

    T.append({"target": "F: FDW ÷ curl --parallel %d ≤ 1.3" % CURL_PARALLEL,
              "value": ratio("F", "F curl --parallel"), "limit": 1.3, "op": "<="})
    T.append({"target": "F: curl sequential ÷ FDW ≥ 8",
              "value": ratio("F curl sequential", "F"), "limit": 8, "op": ">="})
    for label, ln in results["lines"].items():
        if not label.startswith("M"):
            continue
        if ln.get("skipped"):
            for what in ("refused (429s) = 0", "every session's answer right", "wall ÷ allowed ≤ 1.2"):
                T.append({"target": "%s: %s" % (label, what), "value": None, "skipped": ln["skipped"]})
            continue
        refused = [r.get("refused") for r in ln["runs"]]
        T.append({"target": "%s: refused (429s) = 0, every run" % label,
                  "value": None if any(x is None for x in refused) or not refused else max(refused),
                  "limit": 0, "op": "<=", "note": None if refused and all(x is not None for x in refused)
                  else "the mock's /_mock/stats has no \"refused\""})
        T.append({"target": "%s: every session's answer right, every run" % label,
                  "value": sum(1 for r in ln["runs"] if not r["all_right"]), "limit": 0, "op": "<=",
                  "fmt": "%d runs wrong"})
        # a run where a session failed ended early: its wall time is no answer's
        good = [r["ratio"] for r in ln["runs"] if r["all_right"]]
        T.append({"target": "%s: wall ÷ allowed ≤ 1.2 (median of the runs with every answer right)" % label,
                  "value": median(good), "limit": 1.2, "op": "<=",
                  "note": None if good else "no run had every answer right"})
    for t in T:
        if t.get("skipped") or t["value"] is None:
            t["met"] = None
        else:
            t["met"] = t["value"] <= t["limit"] if t["op"] == "<=" else t["value"] >= t["limit"]
    results["targets"] = T
    return ["%s (%s)" % (t["target"], fmt_val(t)) for t in T if t["met"] is False]


def fmt_val(t):
    v = t["value"]
    if v is None:
        return "—"
    if t.get("fmt"):
        return t["fmt"] % v
    return "%d" % v if isinstance(v, int) else "%.2f" % v


def fs(v):
    if v is None:
        return "—"
    return "%.3f" % v if v < 10 else "%.2f" % v


def mm(vals, f=fs):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    return "%s (%s – %s)" % (f(median(vals)), f(min(vals)), f(max(vals)))


def fi(v):
    return "—" if v is None else "{:,}".format(int(round(v)))


def write_report(results, out):
    relib.write_json(str(out.with_suffix(".json")), results)
    m, a = results["meta"], results["args"]
    w = []
    w.append("# Request rate limiting: nimble_fdw against curl and an API's limit\n")
    w.append("Written by `%s`, %s, in %.0f s. Raw numbers: `%s`.\n" % (
        m["command"], m["date"], m.get("seconds", 0), out.with_suffix(".json").name))
    w.append("| | |\n| --- | --- |")
    mc = m["machine"]
    w.append("| machine | %s cores (%s), %s GiB, kernel %s, load %s before / %s after |" % (
        mc["nproc"], mc["cpu"], mc["mem_gib"], mc["kernel"], m.get("load_before", "?"), m.get("load_after", "?")))
    w.append("| PostgreSQL | %s |" % m.get("pg", "?"))
    so_after = m.get("md5_after")
    w.append("| nimble_fdw.so | md5 `%s` (%s)%s |" % (
        m["build"]["md5"], m["build"]["so"],
        "" if so_after in (None, m["build"]["md5"]) else "; **`%s` after the run: it changed during the run**" % so_after))
    w.append("| repo | `git rev-parse --short HEAD`: %s |" % m["build"]["repo"])
    w.append("| extension | %s; nimble_stats %s |" % (m.get("extversion", "?"),
                                                     "present" if m.get("nimble_stats") else "missing"))
    w.append("| shared_preload_libraries | `%s`: nimble_fdw %s (`--preload` %s) |" % (
        m.get("shared_preload_libraries", "?"), "preloaded" if m.get("preloaded") else "not preloaded",
        "on" if a.get("preload") else "off"))
    w.append("| nimble_fdw.allowed_hosts | `%s` |" % m.get("allowed_hosts", "?"))
    w.append("| curl | %s |" % m.get("curl", "?"))
    w.append("| mock for F, F0 | `%s` |" % m["mocks"].get("F", "?"))
    mline = ["`%s`" % m["mocks"]["M"]] if m["mocks"].get("M") else []
    if m.get("window_skip"):
        mline.append(m["window_skip"])
    w.append("| mock for M | %s |" % (": ".join(mline) or "—"))
    if m.get("window_headers") is not None:
        w.append("| its rate limit headers | %s |" % (
            ", ".join("`%s: %s`" % kv for kv in sorted(m["window_headers"].items())) or "none"))
    srv = m.get("servers", {})
    w.append("| servers | %s |" % "; ".join("`%s`: %s" % (n, ", ".join(
        "%s" % o if not o.startswith("url=") else "url" for o in opts)) for n, opts in srv.items()))
    w.append("| queries | F, F0: %d ids (batches spread over %d); M: %d ids a session |" % (
        a["f_ids"], N_BATCHES, a["m_ids"]))
    w.append("| runs | %d, medians (min – max); each query in a new connection; F, F0, curl --parallel, curl "
             "sequential of round *i* back to back; then %s of round *i*, each after %.1f s of quiet |"
             % (a["runs"], ", ".join("M%d" % n for n in a["sessions"]) or "no M", a["window_secs"] + 0.5))
    w.append("")
    w.append("## F and F0: 200 ids on one connection\n")
    w.append("| line | client | wall s | requests | mean rate /s | peak 1-s arrivals | limiter wait ms | rows |")
    w.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label in ("F", "F0", "F curl --parallel", "F curl sequential"):
        ln = results["lines"].get(label)
        if not ln or not ln["runs"]:
            continue
        rl = [r["stats"]["rate_limit_wait_ms"] for r in ln["runs"]
              if isinstance(r.get("stats"), dict) and "rate_limit_wait_ms" in r["stats"]]
        w.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, ln["client"], mm(runs_of(results, label)),
            fi(med_of(results, label, "requests")), mm(runs_of(results, label, "mean_rate"), lambda v: "%.0f" % v),
            fi(med_of(results, label, "peak_1s")), mm(rl, lambda v: "%.0f" % v) if rl else "—",
            fi(med_of(results, label, "nrows")) if ln["client"].startswith("nimble") else "—"))
    w.append("")

    def rr(a_, b_, inv=False):
        x, y = med_of(results, a_), med_of(results, b_)
        if x is None or not y:
            return "—"
        per = rounds_ratio(results, a_, b_)
        if inv:
            per = [1 / p for p in per if p]
        return "%.2f (rounds %.2f – %.2f)" % (x / y, min(per), max(per)) if per else "%.2f" % (x / y)

    w.append("FDW ÷ curl --parallel: %s. curl sequential ÷ FDW: %s. F ÷ F0 (the limiter's cost at "
             "the server defaults): %s.\n" % (rr("F", "F curl --parallel"), rr("F curl sequential", "F"),
                                             rr("F", "F0")))
    w.append("Mean rate: (requests − 1) ÷ (last arrival − first arrival) at the mock; peak 1-s arrivals: "
             "the most requests arriving within any second. Limiter wait: the backend's "
             "`nimble_stats.rate_limit_wait_ms` after the query.\n")
    w.append("## M: sessions at once against a window of %d requests in %g s\n"
             % (a["window_n"], a["window_secs"]))
    w.append("| line | wall s (all done) | first done s | requests | refused (429) | FDW retries | "
             "FDW saw 429 | most admitted in %g s | answers right | allowed s | wall ÷ allowed |" % a["window_secs"])
    w.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, ln in results["lines"].items():
        if not label.startswith("M"):
            continue
        if ln.get("skipped"):
            w.append("| %s | %s | | | | | | | | | |" % (label, ln["skipped"]))
            continue
        if not ln["runs"]:
            w.append("| %s | no run finished | | | | | | | | | |" % label)
            continue
        n = ln["sessions_n"]
        right = ["%d/%d" % (r["right"], n) for r in ln["runs"]]
        w.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, mm(runs_of(results, label)), mm(runs_of(results, label, "first_done_s")),
            mm(runs_of(results, label, "total"), fi), mm(runs_of(results, label, "refused"), fi),
            mm(runs_of(results, label, "retries"), fi), mm(runs_of(results, label, "fdw_429"), fi),
            mm(runs_of(results, label, "window_peak"), fi),
            ", ".join(right), mm(runs_of(results, label, "allowed_s")),
            mm(runs_of(results, label, "ratio"), lambda v: "%.2f" % v)))
    w.append("")
    w.append("Requests and refused: the mock's `/_mock/stats` `total` and `refused` (429s from the window). "
             "FDW retries and FDW saw 429: `nimble_stats` (`retries`, `errors_by_status->'429'`), "
             "summed over the sessions, or preloaded the cluster's, zeroed before the run and read "
             "after it. Most admitted: the mock's `max_in_window`, the most admitted "
             "requests it saw in one window (a client that keeps to the limit never exceeds it). Answers right: sessions whose rows equal the single-session "
             "answer (server `z` on the first mock; row digest). Allowed: the least time for T requests "
             "through %d per %g s, max(latency, (ceil(T ÷ %d) − 1) × %g s + latency), T = requests "
             "answered (total − refused); it ignores max_concurrency, so it is a floor.\n"
             % (a["window_n"], a["window_secs"], a["window_n"], a["window_secs"]))
    spread = [r.get("start_spread_ms") for ln in results["lines"].values() if not ln.get("skipped")
              for r in ln["runs"] if r.get("start_spread_ms") is not None]
    if spread:
        w.append("The sessions of a run started their queries within %.1f ms (median; at most %.1f ms) "
                 "of the barrier's release.\n" % (median(spread), max(spread)))
    w.append("## Targets\n")
    w.append("| target | measured | met |")
    w.append("| --- | --- | --- |")
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        meas = t.get("skipped") or fmt_val(t)
        if t.get("note"):
            meas += " (%s)" % t["note"]
        w.append("| %s | %s | %s |" % (t["target"], meas, met))
    w.append("")
    notes = list(results.get("notes", []))
    if results["failures"]:
        w.append("## Failures\n")
        for f in results["failures"]:
            w.append("- %s" % f)
        w.append("")
    if notes:
        w.append("## Notes\n")
        for n in notes:
            w.append("- %s" % n)
        w.append("")
    w.append("## Queries\n")
    for label in ("F", "F0") + tuple(l for l in results["lines"] if l.startswith("M"))[:1]:
        ln = results["lines"].get(label)
        if ln and ln.get("sql"):
            q = ln["sql"]
            if len(q) > 300:
                q = q[:150] + " … " + q[-80:]
            w.append("%s: `%s`\n" % (label if label != "M4" else "M (each session)", q))
    out.write_text("\n".join(w) + "\n")


# ----------------------------------------------------------------------

def window_support(script):
    """None if the mock script takes --window-limit, else why not."""
    try:
        h = subprocess.run([relib.SYS_PYTHON, str(script), "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
    except Exception as e:
        return "%s (--help: %s)" % (SKIP_NO_WINDOW, e)
    if h.returncode != 0 or "--window-limit" not in h.stdout:
        return SKIP_NO_WINDOW
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, help="runs of each line (default 5; 2 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="2 runs; M's sessions ask for 60 ids each (F keeps its 200)")
    ap.add_argument("--preload", action="store_true",
                    help="shared_preload_libraries = 'nimble_fdw' in the private cluster")
    ap.add_argument("--sessions", default="4,16", help="M's session counts (default 4,16)")
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--window", default="200/5", help="the second mock's --window-limit (default 200/5)")
    ap.add_argument("--window-mock", default=str(relib.MOCK),
                    help="the mock script for M (default test/mock_nimble.py)")
    ap.add_argument("--out", default=str(HERE / "RATE_REPORT.md"))
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    ap.add_argument("--from-json", metavar="JSON",
                    help="write the report again from a run's raw numbers, measuring nothing")
    a = ap.parse_args()
    out = Path(a.out)
    if a.from_json:
        results = json.load(open(a.from_json))
        check_targets(results)
        write_report(results, out)
        print(out.read_text())
        return 0
    relib.bootstrap()
    t_start = time.time()
    if a.runs is None:
        a.runs = 2 if a.quick else 5
    try:
        a.window_n, a.window_secs = parse_window(a.window)
        sessions = [int(x) for x in a.sessions.split(",") if x.strip()]
    except ValueError:
        ap.error("--window is N/SECONDS, --sessions a list of numbers")
    f_ids_n = 200
    m_ids_n = 60 if a.quick else 200
    f_ids = [batch_id(int(round((j + 1) * N_BATCHES / f_ids_n))) for j in range(f_ids_n)]
    m_ids = [batch_id(int(round((j + 1) * N_BATCHES / m_ids_n))) for j in range(m_ids_n)]

    def any_sql(ids):
        return ("SELECT * FROM %%SRV%%.batch_progress WHERE batch_id = ANY('{%s}'::text[])"
                % ",".join(ids))

    f_sql, m_sql = any_sql(f_ids), any_sql(m_ids)
    cmd = ("test/bench/rate_bench.py " + " ".join(sys.argv[1:])).strip()
    args = {"runs": a.runs, "quick": a.quick, "preload": a.preload, "sessions": sessions,
            "latency_ms": a.latency_ms, "window": a.window, "window_n": a.window_n,
            "window_secs": a.window_secs, "f_ids": f_ids_n, "m_ids": m_ids_n}
    meta = {"command": cmd, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": relib.machine(), "build": relib.build_install(skip=True),
            "load_before": open("/proc/loadavg").read().split()[0], "mocks": {}}
    meta["curl"] = subprocess.check_output(["curl", "--version"], text=True).splitlines()[0]
    results = {"meta": meta, "args": args, "lines": {}, "failures": [], "notes": []}
    log("nimble_fdw.so md5 %s, repo %s" % (meta["build"]["md5"], meta["build"]["repo"]))

    conf = {"max_parallel_workers_per_gather": "0", "max_connections": str(max(40, max(sessions) + 10))}
    # relib's '127.0.0.1:*': the mocks listen on loopback ports of their choosing
    if a.preload:
        conf["shared_preload_libraries"] = "'nimble_fdw'"
    cluster = relib.Cluster("rate_bench", conf)
    mock = wmock = None
    data = ["--latency-ms", str(a.latency_ms), "--batches", str(N_BATCHES),
            "--tasks-per-batch", str(TASKS_PER_BATCH)]
    try:
        mock = Mock(cluster.dir, "mock", data)
        meta["mocks"]["F"] = mock.cmdline()
        skip = window_support(a.window_mock) if sessions else "no sessions asked for"
        if skip is None:
            wmock = Mock(cluster.dir, "wmock", data + ["--window-limit", a.window], script=a.window_mock)
            meta["mocks"]["M"] = wmock.cmdline()
        cluster.start()
        log("cluster on port %d" % cluster.port)
        mock.wait_ready()
        if wmock:
            try:
                wmock.wait_ready()
            except RuntimeError as e:
                skip = "%s (%s)" % (SKIP_NO_WINDOW, e)
                wmock.stop()
                wmock = None
        meta["window_skip"] = skip
        if skip:
            log("M: " + skip)
        b = Bench(a, cluster, mock, wmock, results)
        b.setup_sql()
        log("PostgreSQL %s, extension %s, shared_preload_libraries '%s', nimble_stats %s" % (
            meta["pg"], meta["extversion"], meta["shared_preload_libraries"], meta["nimble_stats"]))
        if wmock:
            meta["window_headers"] = b.probe_window(m_ids[0])
            if "ratelimit-limit" not in meta["window_headers"]:
                results["notes"].append("The windowed mock sent no ratelimit-limit header.")
        # the single-session answers, from the mock without a window
        ref = {}
        for name, sql, n in (("F", f_sql, f_ids_n), ("M", m_sql, m_ids_n)):
            s = Session(cluster, sql.replace("%SRV%", "z"))
            try:
                r = s.run(stats=False)
            finally:
                s.close()
            if "error" in r or r["nrows"] != n:
                raise RuntimeError("the reference query for %s failed: %s" % (name, r.get("error") or r["nrows"]))
            ref[name] = r["digest"]
        for name, fn in (("F", lambda: b.scenario_f(f_sql, f_ids_n)),
                         ("M", lambda: b.scenario_m(sessions, m_sql, m_ids_n, ref["M"]))):
            log("scenario %s" % name)
            try:
                fn()
            except Exception as e:
                traceback.print_exc()
                results["failures"].append("scenario %s: %s: %s" % (name, type(e).__name__, str(e).strip()))
        f = results["lines"].get("F")
        if f and f.get("digest") and f["digest"] != ref["F"]:
            results["failures"].append("F: the answer differs from the reference (%s, expected %s)"
                                       % (f["digest"], ref["F"]))
    except Exception as e:
        traceback.print_exc()
        results["failures"].append("%s: %s" % (type(e).__name__, str(e).strip()))
    finally:
        for mk in (mock, wmock):
            if mk:
                mk.stop()
        cluster.stop()
        if a.keep:
            log("kept " + cluster.dir)
        else:
            cluster.remove()
    meta["md5_after"] = relib.md5_of(meta["build"]["so"])
    if meta["md5_after"] != meta["build"]["md5"]:
        results["notes"].insert(0, "**The installed nimble_fdw.so changed during this run** (md5 %s before, %s "
                                "after): lines measured before and after the change ran different builds."
                                % (meta["build"]["md5"][:12], meta["md5_after"][:12]))
        log("WARNING: nimble_fdw.so changed during the run")
    meta["load_after"] = open("/proc/loadavg").read().split()[0]
    meta["seconds"] = round(time.time() - t_start, 1)
    missed = check_targets(results)
    write_report(results, out)
    print(out.read_text())
    for t in missed:
        print("target missed:", t)
    for f in results["failures"]:
        print("FAIL:", f)
    log("report: %s (%.0f s)" % (out, meta["seconds"]))
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
