#!/usr/bin/env python3
"""join_bench.py - joins with local tables: the key join against = ANY(...).

    test/bench/join_bench.py [--runs 5] [--baseline-runs 3] [--latency-ms 20]
                             [--out test/bench/JOIN_REPORT.md] [--keep]

Starts a private PostgreSQL cluster (relib: the installed nimble_fdw, as the
postgres user, on a free port, jit off) and the bundled mock API with 2,000
batches of 5 tasks at --latency-ms a request, and measures, each query in a
new connection (as a pool, a dashboard or a pg_cron job runs it), the
targets of issue 15:

  A  local table of 50 watched ids JOIN batch_progress, defaults (the key's
     request budget), never analyzed: the join, the same ids as = ANY(ARRAY(...)), and
     the join with nimble_fdw.enable_key_join off
  A0 the join and ANY of A on a server without a rate limit (analyzed)
  B0 the join and ANY of B on a server without a rate limit (analyzed)
  B  500 watched ids, after ANALYZE of batch_progress: the join and ANY;
     and the join on a table never analyzed
  C  batch_tasks JOIN task_results for the successful tasks of 40 batches
     (~180): the join, ANY, and the join with the key join off
  D  one watched id: the plan picked (a nested loop) against the key join
     forced (enable_nestloop off) and the key join off
  E  an outer side of 1,000,000 rows holding 500 distinct ids: peak memory
     of the backend over its idle size

The runs of a scenario's variants are interleaved (A1 B1 A2 B2 ...), so a
slow moment of a shared machine hits all of them.  Medians; ratios are of
medians measured in the same run.  Writes the markdown report (--out) and
the raw numbers next to it (.json).  Missed targets are printed and make the
exit status 1.
"""
import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
import relib  # noqa: E402
from ids import batch_id  # noqa: E402

log = relib.log


def run_once(cluster, mock, sql, setup=()):
    """One query in a new backend: seconds, requests the mock counted, peak
    memory over the backend's size before the query (kB), rows."""
    conn = cluster.connect()
    try:
        cur = conn.cursor()
        for s in setup:
            cur.execute(s)
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute("LOAD 'nimble_fdw'")
        rss0 = relib.proc_status(pid, "VmRSS")
        mock.reset()
        t0 = time.monotonic()
        cur.execute(sql)
        rows = cur.fetchall()
        t1 = time.monotonic()
        hwm = relib.proc_status(pid, "VmHWM")
        return {"s": t1 - t0, "requests": mock.count(), "peak_kb": hwm - rss0,
                "rows": rows}
    finally:
        conn.close()


def plan_summary(lines):
    """The node under the top Aggregate (initplans aside)."""
    for l in lines:
        if l.startswith("  ->  "):
            return l[6:].split("  (")[0]
    return lines[0].strip()


def plan_of(cluster, sql, setup=()):
    conn = cluster.connect()
    try:
        cur = conn.cursor()
        for s in setup:
            cur.execute(s)
        cur.execute("EXPLAIN (COSTS OFF) " + sql)
        lines = [r[0] for r in cur.fetchall()]
        return plan_summary(lines), lines
    finally:
        conn.close()


def setup_database(cluster, mock):
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION nimble_fdw")
    # defaults: only the url (the key's request budget: Nimble's documented
    # 5,000 requests a minute; before 5b5b6df, a spacing of 83/s)
    for name in ("def", "ana", "norl"):
        extra = ", max_requests_per_second '0'" if name == "norl" else ""
        cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url %s%s)"
                    % (name, relib.quote_lit(mock.url()), extra))
        cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key 'test-key')"
                    % name)
        cur.execute("CREATE SCHEMA %s" % name)
        cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))
    nb = 2000
    w50 = [batch_id(1 + (i * 40) % nb) for i in range(50)]
    w500 = [batch_id(1 + (i * 4) % nb) for i in range(500)]
    for name, ids in (("watch50", w50), ("watch500", w500), ("watch1", [batch_id(977)])):
        cur.execute("CREATE TABLE %s (batch_id text PRIMARY KEY)" % name)
        cur.execute("INSERT INTO %s SELECT unnest(%%s::text[])" % name, (ids,))
    cur.execute("CREATE TABLE big_outer AS SELECT ((array[%s])[1 + i %% 500]) AS batch_id, i "
                "FROM generate_series(0, 999999) i" % ",".join(relib.quote_lit(x) for x in w500))
    cur.execute("CREATE TABLE c_batches (batch_id text PRIMARY KEY)")
    cur.execute("INSERT INTO c_batches SELECT unnest(%s::text[])",
                ([batch_id(100 + 7 * i) for i in range(40)],))
    cur.execute("ANALYZE watch50, watch500, watch1, big_outer, c_batches")
    t0 = time.monotonic()
    mock.reset()
    cur.execute("ANALYZE ana.batch_progress")
    analyze = {"s": time.monotonic() - t0, "requests": mock.count()}
    cur.execute("SELECT reltuples, relpages FROM pg_class WHERE oid = 'ana.batch_progress'::regclass")
    analyze["reltuples"], analyze["units"] = cur.fetchone()
    cur.execute("ANALYZE norl.batch_progress")
    conn.close()
    return analyze


def med(results, name, label, key="s"):
    return relib.median([r[key] for r in results["scenarios"][name][label]["runs"]])


def ratio(results, name, a_, b_):
    return med(results, name, a_) / med(results, name, b_)


def check_targets(results):
    """The issue's targets, into results["targets"]; the missed ones."""
    r = results
    targets = [
        ("A: 50 ids, fresh backend, defaults: join / ANY <= 1.3", ratio(r, "A", "join", "ANY"), 1.3),
        ("A: requests of the join <= 60", med(r, "A", "join", "requests"), 60),
        ("A0: the same without a rate limit: join / ANY <= 1.3", ratio(r, "A0", "join", "ANY"), 1.3),
        ("B: 500 ids after ANALYZE: join / ANY <= 1.3", ratio(r, "B", "join", "ANY"), 1.3),
        ("B0: the same without a rate limit: join / ANY <= 1.3", ratio(r, "B0", "join", "ANY"), 1.3),
        ("C: batch_tasks JOIN task_results: join / ANY <= 1.3", ratio(r, "C", "join", "ANY"), 1.3),
        ("D: one id: plan picked / key join off <= 1.1 (noise)",
         ratio(r, "D", "join (plan picked)", "join, key join off"), 1.1),
        ("E: 1,000,000 outer rows: peak MB <= 64",
         med(r, "E", "join of 1,000,000 outer rows", "peak_kb") / 1024, 64),
    ]
    r["targets"] = [{"target": t, "value": v, "limit": lim, "met": v <= lim} for t, v, lim in targets]
    return ["missed: %s (%.3f)" % (t["target"], t["value"]) for t in r["targets"] if not t["met"]]


def write_report(results, out):
    """The markdown report at out, the raw numbers beside it (.json)."""
    a = results["args"]
    relib.write_json(str(out.with_suffix(".json")), results)
    w = []
    w.append("# Joins with local tables: the key join\n")
    w.append("`test/bench/join_bench.py --runs %d --baseline-runs %d --latency-ms %d`, "
             "PostgreSQL %s, build %s. Mock: 2,000 batches of 5 tasks, %d ms a request. "
             "Each query in a new connection; medians of the runs (the slow baselines: "
             "%d runs); variants of a scenario interleaved.\n"
             % (a["runs"], a["baseline_runs"], a["latency_ms"], results["pg"], results["build"]["repo"],
                a["latency_ms"], a["baseline_runs"]))
    m = results["machine"]
    w.append("Machine: %s.\n" % ", ".join("%s %s" % (k, v) for k, v in m.items()))
    an = results["analyze"]
    w.append("`ANALYZE ana.batch_progress`: %d requests, %.2f s; reltuples %.0f, %d units.\n"
             % (an["requests"], an["s"], an["reltuples"], an["units"]))
    w.append("| scenario | variant | plan | wall s (median) | min – max | requests | peak MB | rows |")
    w.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, sc in results["scenarios"].items():
        for label, v in sc.items():
            ss = [r["s"] for r in v["runs"]]
            w.append("| %s | %s | %s | %.3f | %.3f – %.3f | %d | %.1f | %s |" % (
                name, label, plan_summary(v["plan_lines"]), relib.median(ss), min(ss), max(ss),
                relib.median([r["requests"] for r in v["runs"]]),
                relib.median([r["peak_kb"] for r in v["runs"]]) / 1024,
                ", ".join(map(str, v["rows"][0]))))
    w.append("\n## Targets\n")
    w.append("| target | measured | met |")
    w.append("| --- | --- | --- |")
    for t in results["targets"]:
        w.append("| %s | %.3f | %s |" % (t["target"], t["value"], "yes" if t["met"] else "**no**"))
    w.append("\nRatios against the slow baselines: A join vs key join off %.1f× faster; "
             "B analyzed join vs never analyzed %.1f× faster; C join vs key join off %.1f× faster.\n"
             % (ratio(results, "A", "join, key join off", "join"), ratio(results, "B", "join, never analyzed", "join"),
                ratio(results, "C", "join, key join off", "join")))
    w.append("## Plans\n")
    for name, sc in results["scenarios"].items():
        for label, v in sc.items():
            w.append("%s, %s:\n\n```\n%s\n```\n" % (name, label, "\n".join(v["plan_lines"])))
    out.write_text("\n".join(w) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-runs", type=int, default=3,
                    help="runs of the slow baselines (the key join off, no ANALYZE)")
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "JOIN_REPORT.md"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--from-json", metavar="JSON",
                    help="write the report again from a run's raw numbers, measuring nothing")
    a = ap.parse_args()
    if a.from_json:
        import json
        results = json.load(open(a.from_json))
        check_targets(results)
        write_report(results, Path(a.out))
        return 0
    relib.bootstrap()
    t_start = time.time()
    build = relib.build_install(skip=True)

    off = ["SET nimble_fdw.enable_key_join = off"]
    c_ids = "(SELECT batch_id FROM c_batches)"
    S = {
        "A": [
            ("join", "SELECT count(*), sum(p.progress) FROM watch50 w JOIN def.batch_progress p USING (batch_id)", (), a.runs),
            ("ANY", "SELECT count(*), sum(p.progress) FROM def.batch_progress p WHERE batch_id = ANY(ARRAY(SELECT batch_id FROM watch50))", (), a.runs),
            ("join, key join off", "SELECT count(*), sum(p.progress) FROM watch50 w JOIN def.batch_progress p USING (batch_id)", off, a.baseline_runs),
        ],
        "A0": [
            ("join", "SELECT count(*), sum(p.progress) FROM watch50 w JOIN norl.batch_progress p USING (batch_id)", (), a.runs),
            ("ANY", "SELECT count(*), sum(p.progress) FROM norl.batch_progress p WHERE batch_id = ANY(ARRAY(SELECT batch_id FROM watch50))", (), a.runs),
        ],
        "B0": [
            ("join", "SELECT count(*), sum(p.progress) FROM watch500 w JOIN norl.batch_progress p USING (batch_id)", (), a.runs),
            ("ANY", "SELECT count(*), sum(p.progress) FROM norl.batch_progress p WHERE batch_id = ANY(ARRAY(SELECT batch_id FROM watch500))", (), a.runs),
        ],
        "B": [
            ("join", "SELECT count(*), sum(p.progress) FROM watch500 w JOIN ana.batch_progress p USING (batch_id)", (), a.runs),
            ("ANY", "SELECT count(*), sum(p.progress) FROM ana.batch_progress p WHERE batch_id = ANY(ARRAY(SELECT batch_id FROM watch500))", (), a.runs),
            ("join, never analyzed", "SELECT count(*), sum(p.progress) FROM watch500 w JOIN def.batch_progress p USING (batch_id)", (), a.baseline_runs),
        ],
        "C": [
            ("join", "SELECT count(*), count(r.result) FROM def.batch_tasks t JOIN def.task_results r USING (task_id) "
                     "WHERE t.batch_id = ANY(ARRAY%s) AND t.state = 'success'" % c_ids, (), a.runs),
            ("ANY", "SELECT count(*), count(r.result) FROM def.task_results r WHERE r.task_id = ANY(ARRAY("
                    "SELECT task_id FROM def.batch_tasks WHERE batch_id = ANY(ARRAY%s) AND state = 'success'))" % c_ids, (), a.runs),
            ("join, key join off", "SELECT count(*), count(r.result) FROM def.batch_tasks t JOIN def.task_results r USING (task_id) "
                                   "WHERE t.batch_id = ANY(ARRAY%s) AND t.state = 'success'" % c_ids, off, a.runs),
        ],
        "D": [
            ("join (plan picked)", "SELECT count(*), sum(p.progress) FROM watch1 w JOIN ana.batch_progress p USING (batch_id)", (), a.runs),
            ("key join forced", "SELECT count(*), sum(p.progress) FROM watch1 w JOIN ana.batch_progress p USING (batch_id)",
             ["SET enable_nestloop = off", "SET enable_hashjoin = off", "SET enable_mergejoin = off"], a.runs),
            ("join, key join off", "SELECT count(*), sum(p.progress) FROM watch1 w JOIN ana.batch_progress p USING (batch_id)", off, a.runs),
        ],
        "E": [
            ("join of 1,000,000 outer rows", "SELECT count(*), sum(p.progress) FROM big_outer o JOIN ana.batch_progress p USING (batch_id)", (), a.runs),
        ],
    }

    results = {"machine": relib.machine(), "build": build, "latency_ms": a.latency_ms,
               "runs": a.runs, "scenarios": {},
               "args": {"runs": a.runs, "baseline_runs": a.baseline_runs,
                        "latency_ms": a.latency_ms}}
    failures = []
    conf = {"work_mem": "'4MB'"}
    with relib.harness("join_bench", conf=conf, keep=a.keep,
                       mock_args=("--batches", "2000", "--tasks-per-batch", "5",
                                  "--latency-ms", str(a.latency_ms))) as (cluster, mock):
        results["pg"] = relib.pg_major()
        results["analyze"] = setup_database(cluster, mock)
        log("ANALYZE ana.batch_progress: %(requests)d requests, %(s).2f s, reltuples %(reltuples).0f"
            % results["analyze"])
        for name, variants in S.items():
            log("scenario %s" % name)
            sc = results["scenarios"][name] = {}
            for label, sql, setup, _ in variants:
                shape, lines = plan_of(cluster, sql, setup)
                sc[label] = {"sql": sql, "setup": list(setup), "plan": shape, "plan_lines": lines,
                             "runs": []}
            for i in range(max(v[3] for v in variants)):
                for label, sql, setup, n in variants:
                    if i >= n:
                        continue
                    r = run_once(cluster, mock, sql, setup)
                    sc[label]["runs"].append({"s": r["s"], "requests": r["requests"],
                                              "peak_kb": r["peak_kb"]})
                    sc[label]["rows"] = [list(x) for x in r["rows"]]
                    log("  %s %-28s %6.3f s %5d requests %7.1f MB" % (
                        name, label, r["s"], r["requests"], r["peak_kb"] / 1024))
            rows = {tuple(map(str, v["rows"][0])) for v in sc.values()}
            if len(rows) != 1:
                failures.append("scenario %s: the variants disagree: %s" % (name, rows))

    failures += check_targets(results)
    write_report(results, Path(a.out))
    log("report: %s (%.0f s)" % (a.out, time.time() - t_start))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
