#!/usr/bin/env python3
"""vg_run.py - the work of valgrind.sh: a private cluster whose postmaster
(and so every backend it forks) runs under valgrind memcheck, the mock API,
the project's regression suites (make installcheck) against it, then the
per-process valgrind reports parsed and summarised.

An error counts against nimble_fdw when a frame of its stack (for a leak:
of the allocation's stack) lies in nimble_fdw.so.  Everything else
(PostgreSQL's, libcurl's, OpenSSL's, glibc's) is summarised as noise.

Claims (exit status 1 if one fails):
  - 0 definitely-lost blocks allocated under a nimble_fdw.so frame;
  - 0 invalid reads / writes / frees (and no other memcheck error) with a
    nimble_fdw.so frame;
  - every backend's report is complete (the process exited normally under
    valgrind), and no backend crashed.
The regression suites' own pass/fail count is reported too; under valgrind
timing-sensitive expectations may differ, which is not a memcheck finding.

Usage: vg_run.py [--json FILE] [--keep] [--suite NAME ...]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # nothing written next to the scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402

relib.bootstrap(["valgrind"])

OURS_SO = "nimble_fdw.so"
OURS_SRC = str(relib.REPO / "src") + "/"

# the first line of an error block -> its kind
KIND_PATTERNS = [
    (r"are definitely lost", "Leak_DefinitelyLost"),
    (r"are indirectly lost", "Leak_IndirectlyLost"),
    (r"are possibly lost", "Leak_PossiblyLost"),
    (r"are still reachable", "Leak_StillReachable"),
    (r"^Invalid read of size", "InvalidRead"),
    (r"^Invalid write of size", "InvalidWrite"),
    (r"^Invalid free\(\)", "InvalidFree"),
    (r"^Mismatched free\(\)", "MismatchedFree"),
    (r"^Jump to the invalid address", "InvalidJump"),
    (r"^Conditional jump or move depends on uninitialised", "UninitCondition"),
    (r"^Use of uninitialised value", "UninitValue"),
    (r"^Syscall param .* uninitialised", "SyscallParam"),
    (r"^Syscall param", "SyscallParam"),
    (r"^Source and destination overlap", "Overlap"),
    (r"fishy", "FishyValue"),
    (r"^Invalid .*", "InvalidOther"),
]
LEAK_KINDS = ("Leak_DefinitelyLost", "Leak_IndirectlyLost", "Leak_PossiblyLost",
              "Leak_StillReachable")
ACCESS_KINDS = ("InvalidRead", "InvalidWrite", "InvalidFree", "MismatchedFree",
                "InvalidJump", "InvalidOther", "Overlap", "FishyValue")
FRAME_RE = re.compile(r"^\s+(?:at|by) 0x[0-9A-Fa-f]+: (.*?)(?: \((?:in )?(.*)\))?$")
LEAK_RE = re.compile(r"^([\d,]+) (?:\(([\d,]+) direct, ([\d,]+) indirect\) )?bytes in ([\d,]+) blocks")


def kind_of(first):
    for pat, kind in KIND_PATTERNS:
        if re.search(pat, first):
            return kind
    return "Other"


def parse_log(path):
    """A valgrind text log -> (errors, complete, pid, command)."""
    pid = None
    command = ""
    complete = False
    errors = []
    block = []

    def flush():
        if not block:
            return
        first = block[0].strip()
        kind = kind_of(first)
        if kind == "Other" and not any(FRAME_RE.match(l) for l in block[1:]):
            block.clear()
            return
        frames, aux, cur = [], [], None
        cur = frames
        for l in block[1:]:
            m = FRAME_RE.match(l)
            if m:
                fn, where = m.group(1), m.group(2) or ""
                cur.append({"fn": fn, "where": where})
            elif l.strip():
                # "Address 0x.. is inside a block alloc'd", "Block was alloc'd at"
                aux.append([])
                cur = aux[-1]
        nbytes = nblocks = 0
        m = LEAK_RE.match(first)
        if m:
            nbytes = int((m.group(2) or m.group(1)).replace(",", ""))
            nblocks = int(m.group(4).replace(",", ""))
        errors.append({"kind": kind, "what": first, "frames": frames, "aux": aux,
                       "bytes": nbytes, "blocks": nblocks, "count": 1})
        block.clear()

    with open(path, errors="replace") as f:
        for raw in f:
            m = re.match(r"^==(\d+)== ?(.*)$", raw.rstrip("\n"))
            if not m:
                continue        # suppression suggestions (--gen-suppressions)
            pid = pid or m.group(1)
            line = m.group(2)
            if line.startswith("Command: "):
                command = line[len("Command: "):]
            if line.startswith("ERROR SUMMARY:"):
                complete = True
            if not line.strip():
                flush()
                continue
            if line.startswith(("HEAP SUMMARY", "LEAK SUMMARY", "ERROR SUMMARY", "Memcheck,",
                                "Copyright", "Using Valgrind", "Command:", "Parent PID",
                                "in use at exit", "total heap usage", "   definitely lost:",
                                "   indirectly lost:", "     possibly lost:",
                                "   still reachable:", "        suppressed:",
                                "Reachable blocks", "To see them", "For lists of",
                                "For counts of", "Searching for pointers", "Rerun with",
                                "All heap blocks were freed", "Use --track-origins",
                                "checked ")):
                flush()
                continue
            block.append(line)
        flush()
    return errors, complete, pid, command


def frame_is_ours(f):
    return f["where"].startswith(OURS_SRC) or f["where"].endswith(OURS_SO)


def is_ours(frames):
    return any(frame_is_ours(f) for f in frames)


SKIP_FNS = ("malloc", "calloc", "realloc", "free", "operator new", "strdup", "memcpy",
            "memmove", "memset", "__", "CRYPTO_", "mem", "str")


def first_frame(frames):
    for f in frames:
        if not f["fn"].startswith(SKIP_FNS) and "vgpreload" not in f["where"] \
                and "vg_replace" not in f["where"]:
            return f
    return frames[0] if frames else {"fn": "???", "where": ""}


def lib_of(frames):
    """The library of an error: the first frame past the allocator/string functions."""
    w = first_frame(frames)["where"]
    if w.startswith("/") and ":" not in os.path.basename(w):
        return os.path.basename(w)
    return w.split(":")[0] if w else "?"


def fmt_stack(frames, n=14):
    return "\n".join("    %s (%s)" % (f["fn"], f["where"]) for f in frames[:n])


def extra_pass(cluster, mock, per_kind):
    """After the suites: the failing kinds of leak.py, cancels / timeouts /
    terminates of hanging requests (cancel.py's shapes) and the soak's
    statements on clean, retrying and slow servers, all under valgrind."""
    import threading
    import psycopg2
    import leak
    import cancel
    import soak
    opts = "-c nimble_fdw.allowed_hosts=127.0.0.1:*"
    out = {"failing_queries": 0, "codes": {}, "cancels": 0, "terminates": 0,
           "timeouts": 0, "ok_queries": 0, "wrong": 0, "problems": []}
    admin = cluster.connect()
    for db in ("vg_leak", "vg_cancel", "vg_soak"):
        admin.cursor().execute("CREATE DATABASE %s" % db)
    # failing queries of every kind, one backend
    conn = cluster.connect(dbname="vg_leak", options=opts)
    relib.sql_setup(conn, mock, leak.SERVERS, leak.TABLES)
    cur = conn.cursor()
    for kind, (sql, want, reset, st) in leak.KINDS.items():
        for i in range(per_kind):
            if reset:
                mock.reset()
            if st:
                cur.execute("SET statement_timeout = %d" % st)
            try:
                if i % 2:
                    cur.execute("SELECT sqlstate_of(%s)", (sql,))
                    code = cur.fetchone()[0]
                else:
                    cur.execute(sql)
                    cur.fetchall()
                    code = "ok"
            except psycopg2.Error as e:
                code = e.pgcode
            if st:
                relib.set_statement_timeout(cur, 0)
            out["failing_queries"] += 1
            out["codes"][code] = out["codes"].get(code, 0) + 1
            if code != want and not (st and code == "ok"):
                out["problems"].append("%s: %s, expected %s" % (kind, code, want))
    conn.close()
    # hanging requests: cancel, statement_timeout, terminate
    c_admin = cluster.connect(dbname="vg_cancel", options=opts)
    relib.sql_setup(c_admin, mock, cancel.SERVERS)
    for fault in cancel.FAULTS:
        for way in ("cancel", "timeout", "terminate"):
            for i in range(3):
                shape, sql = cancel.shapes(fault)[i % 3]
                victim = cluster.connect(dbname="vg_cancel", options=opts)
                r = cancel.one_run(cluster, mock, c_admin, way, sql, victim, 1500)
                want = {"57014"} if way != "terminate" else {"57P01", "connection closed"}
                if r["sqlstate"] not in want:
                    out["problems"].append("%s/%s/%s: %s" % (fault, way, shape, r["sqlstate"]))
                out[{"cancel": "cancels", "timeout": "timeouts", "terminate": "terminates"}[way]] += 1
                if not victim.closed:
                    try:
                        victim.cursor().execute("SELECT 1")
                    except psycopg2.Error as e:
                        out["problems"].append("backend unusable after %s: %s" % (way, e))
                    victim.close()
    c_admin.close()
    # successful queries: the soak's statements on clean / retrying / slow
    # servers, with two sessions at once
    s_admin = cluster.connect(dbname="vg_soak", options=opts)
    relib.sql_setup(s_admin, mock, soak.SERVERS, soak.LOCAL)
    stmts = soak.statements()
    cur = s_admin.cursor()
    expected = {}
    for name, sql, _ in stmts:
        cur.execute(sql.format(s="clean"))
        expected[name] = cur.fetchall()

    def worker(schemas):
        c = cluster.connect(dbname="vg_soak", options=opts)
        k = c.cursor()
        for schema in schemas:
            for name, sql, _ in stmts:
                try:
                    k.execute(sql.format(s=schema))
                    rows = k.fetchall()
                except psycopg2.Error as e:
                    if schema in ("retry", "retry429", "lat"):
                        out["problems"].append("%s/%s: %s" % (schema, name, e.pgcode))
                    continue
                out["ok_queries"] += 1
                if rows != expected[name]:
                    out["wrong"] += 1
                    out["problems"].append("%s/%s: wrong answer" % (schema, name))
        c.close()
    mock.reset()
    ts = [threading.Thread(target=worker, args=(["retry", "lat", "wrongtype"],)),
          threading.Thread(target=worker, args=(["retry429", "trunc", "flaky"],))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s_admin.close()
    admin.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    ap.add_argument("--outdir", help="where the valgrind logs go (default: a temp dir)")
    ap.add_argument("--suites", help="space-separated REGRESS subset (default: all)")
    ap.add_argument("--timeout", type=int, default=1500, help="seconds for installcheck")
    ap.add_argument("--no-extra", action="store_true",
                    help="only the regression suites, not the extra failure/cancel/soak pass")
    ap.add_argument("--per-kind", type=int, default=20,
                    help="extra pass: queries per failing kind")
    ap.add_argument("--self-test", action="store_true",
                    help="harness self-test: postgres under an LD_PRELOAD wrapper of "
                         "curl_multi_add_handle() that leaks 64 bytes per request (called "
                         "from nimble_fdw's launch()); the claim must then fail")
    a = ap.parse_args()
    t_start = time.time()
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")
    res = {"script": "valgrind.sh", "machine": relib.machine(), "failures": [],
           "so_md5": relib.md5_of(relib.installed_so()), "repo": relib.repo_state()}
    failures = res["failures"]
    vgver = subprocess.check_output(["valgrind", "--version"], text=True).strip()
    res["valgrind"] = vgver

    conf = {
        # the regression suites set the loopback host themselves (setup.sql)
        "nimble_fdw.allowed_hosts": None,
        "max_connections": "20",
        "shared_buffers": "'16MB'",
        "autovacuum": "off",
        "max_wal_senders": "0",
        "max_worker_processes": "4",
        "checkpoint_timeout": "'1h'",
        "log_min_messages": "log",
        "log_min_error_statement": "panic",
        "timezone": None,
        "lc_messages": None,
    }
    cluster = relib.Cluster("valgrind", conf)
    logdir = a.outdir or os.path.join(cluster.dir, "vg")
    os.makedirs(logdir, exist_ok=True)
    if os.geteuid() == 0:
        import shutil
        shutil.chown(logdir, "postgres", "postgres")
    res["logdir"] = logdir
    wrapper = [
        "valgrind", "--tool=memcheck", "--trace-children=yes", "--leak-check=full",
        "--show-leak-kinds=all", "--errors-for-leak-kinds=definite",
        "--track-origins=no", "--num-callers=40", "--error-limit=no",
        "--suppressions=" + supp, "--gen-suppressions=all",
        "--log-file=%s/vg.%%p.log" % logdir,
        # full source paths, so that our frames (REPO/src/...) are told apart
        "--fullpath-after=",
        # (no --xml: valgrind does not open a new XML file in a forked
        # child, so every backend would write into the postmaster's)
        # no --error-exitcode: a backend that exits with a code other than
        # 0 or 1 makes the postmaster treat it as a crash, kill every other
        # backend and reinitialise; the reports are read instead
    ]
    if a.self_test:
        import leak
        wrapper = ["env", "LD_PRELOAD=" + leak.build_leaky_preload(64)] + wrapper
        res["self_test"] = True
    res["valgrind_command"] = " ".join(wrapper) + " postgres -D DATA"
    mock = None
    others = []
    regress = {}
    try:
        mock = relib.Mock(cluster.dir)
        # the api_scrape and api_factcheck suites talk to mocks of their own
        for script in ("mock_scrape.py", "mock_factcheck.py"):
            others.append(relib.Mock(cluster.dir, script=relib.REPO / "test" / script))
        relib.log("starting postgres under valgrind (slow)")
        t0 = time.time()
        cluster.start(wrapper=wrapper, timeout=300)
        res["startup_seconds"] = round(time.time() - t0, 1)
        relib.log("postgres up in %.0f s; running make installcheck" % res["startup_seconds"])
        outdir = os.path.join(cluster.dir, "regress")
        os.makedirs(outdir, exist_ok=True)
        env = dict(os.environ, NIMBLE_MOCK_URL=mock.base,
                   NIMBLE_SCRAPE_MOCK_URL=others[0].base,
                   NIMBLE_FACTCHECK_MOCK_URL=others[1].base, PGHOST=cluster.dir,
                   PGPORT=str(cluster.port), PGUSER="postgres",
                   EXTRA_REGRESS_OPTS="--outputdir=%s" % outdir)
        env.pop("PGDATABASE", None)
        cmd = ["make", "-s", "-C", str(relib.REPO), "PG_CONFIG=" + relib.PG_CONFIG, "installcheck"]
        if a.suites:
            cmd.append("REGRESS=%s" % a.suites)
        res["regress_command"] = ("NIMBLE_MOCK_URL=%s PGHOST=... PGPORT=... PGUSER=postgres "
                                  "EXTRA_REGRESS_OPTS=--outputdir=... %s" % (mock.base, " ".join(cmd)))
        t0 = time.time()
        try:
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=a.timeout)
            out, rc = r.stdout, r.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
        regress["seconds"] = round(time.time() - t0, 1)
        regress["exit"] = rc
        regress["output"] = out[-4000:]
        regress["passed"] = len(re.findall(r"^(?:ok|test) .*?\.\.\. ok|^ok \d+", out, re.M)) or \
            len(re.findall(r"\.\.\. ok", out))
        regress["failed"] = len(re.findall(r"\.\.\. FAILED|^not ok", out, re.M))
        diffs = os.path.join(outdir, "regression.diffs")
        if os.path.exists(diffs) and os.path.getsize(diffs):
            regress["diffs"] = open(diffs, errors="replace").read()[:20000]
        relib.log("installcheck: exit %s, %s passed, %s failed, %.0f s"
                  % (rc, regress["passed"], regress["failed"], regress["seconds"]))
        if not a.no_extra:
            relib.log("extra pass under valgrind: failing queries, cancels, soak statements")
            t0 = time.time()
            try:
                res["extra"] = extra_pass(cluster, mock, a.per_kind)
            except Exception as e:  # noqa: BLE001
                res["extra"] = {"problems": ["harness error: %r" % e]}
            res["extra"]["seconds"] = round(time.time() - t0, 1)
            relib.log("extra pass: %s" % {k: v for k, v in res["extra"].items() if k != "problems"})
            for p_ in res["extra"].get("problems", [])[:10]:
                relib.log("  extra pass problem: %s" % p_)
        time.sleep(2)
    finally:
        crash = cluster.crash_lines()
        relib.log("stopping postgres")
        cluster.stop(timeout=300)
        if mock:
            mock.stop()
        for m in others:
            m.stop()
    res["regress"] = regress
    res["server_log_crash_lines"] = crash[:20]

    # ---- the reports ----
    logs = sorted(glob.glob(os.path.join(logdir, "vg.*.log")))
    procs = []
    ours = []
    noise = {}
    incomplete = []
    loaded_ours = 0
    for path in logs:
        errors, complete, pid, command = parse_log(path)
        text = open(path, errors="replace").read()
        if OURS_SO in text or OURS_SRC in text:
            loaded_ours += 1
        procs.append({"file": os.path.basename(path), "pid": pid, "complete": complete,
                      "errors": len(errors)})
        if not complete:
            incomplete.append(os.path.basename(path))
        for e in errors:
            frames = e["frames"] + [f for s_ in e["aux"] for f in s_]
            if is_ours(frames):
                ours.append(dict(e, file=os.path.basename(path)))
            else:
                key = (e["kind"], lib_of(e["frames"]), first_frame(e["frames"])["fn"])
                n = noise.setdefault(key, {"count": 0, "bytes": 0, "procs": set()})
                n["count"] += e["count"]
                n["bytes"] += e["bytes"]
                n["procs"].add(pid)
    for v in noise.values():
        v["procs"] = len(v["procs"])
    res["processes"] = len(procs)
    res["processes_with_nimble_frames_anywhere"] = loaded_ours
    res["incomplete_reports"] = incomplete
    ours_summary = {}
    for e in ours:
        k = e["kind"]
        s = ours_summary.setdefault(k, {"count": 0, "bytes": 0, "blocks": 0})
        s["count"] += e["count"]
        s["bytes"] += e["bytes"]
        s["blocks"] += e["blocks"]
    res["ours"] = ours_summary
    res["ours_details"] = [{"kind": e["kind"], "what": e["what"], "file": e["file"],
                            "stack": fmt_stack(e["frames"])}
                           for e in [e for e in ours if e["kind"] != "Leak_StillReachable"][:30]]
    res["noise"] = [{"kind": k[0], "lib": k[1], "fn": k[2], **v}
                    for k, v in sorted(noise.items(), key=lambda kv: -kv[1]["count"])]
    res["ours_definite_leaks"] = ours_summary.get("Leak_DefinitelyLost", {}).get("count", 0)
    res["ours_invalid_access"] = sum(v["count"] for k, v in ours_summary.items() if k in ACCESS_KINDS)
    res["ours_other_errors"] = sum(v["count"] for k, v in ours_summary.items()
                                   if k not in ACCESS_KINDS and k not in LEAK_KINDS)
    dl = ours_summary.get("Leak_DefinitelyLost", {})
    res["ours_definite_leak_blocks"] = dl.get("blocks", 0)
    res["ours_definite_leak_bytes"] = dl.get("bytes", 0)
    if res["ours_definite_leaks"]:
        failures.append("%d definitely-lost loss records (%d blocks, %d bytes) allocated under "
                        "nimble_fdw frames" % (res["ours_definite_leaks"], dl.get("blocks", 0),
                                               dl.get("bytes", 0)))
    if res["ours_invalid_access"]:
        failures.append("%d invalid reads/writes/frees with nimble_fdw.so frames"
                        % res["ours_invalid_access"])
    if res["ours_other_errors"]:
        failures.append("%d other memcheck errors with nimble_fdw.so frames"
                        % res["ours_other_errors"])
    if not procs:
        failures.append("no valgrind reports were written")
    if incomplete:
        failures.append("%d process reports have no ERROR SUMMARY (the process did not exit "
                        "normally under valgrind): %s" % (len(incomplete), ", ".join(incomplete[:5])))
    if loaded_ours == 0:
        failures.append("no process report mentions nimble_fdw.so: did the suites run?")
    # the postmaster's children that were killed by the shutdown (e.g. the
    # checkpointer's last write) may be cut short; a backend must not be
    if crash:
        failures.append("server log: %s" % crash[0])
    if res.get("extra", {}).get("wrong"):
        failures.append("extra pass: %d wrong answers under valgrind" % res["extra"]["wrong"])
    if any("harness error" in p_ for p_ in res.get("extra", {}).get("problems", [])):
        failures.append("extra pass: %s" % res["extra"]["problems"][0])
    res["seconds"] = round(time.time() - t_start, 1)
    res["ok"] = not failures
    relib.write_json(a.json, res)

    print("valgrind: %d process reports (%d incomplete), %d show nimble_fdw frames"
          % (len(procs), len(incomplete), loaded_ours))
    print("nimble_fdw frames: %s" % (ours_summary or "none"))
    for d in [d for d in res["ours_details"] if d["kind"] != "Leak_StillReachable"][:10]:
        print("  %s in %s: %s\n%s" % (d["kind"], d["file"], d["what"], d["stack"]))
    print("noise (not ours), errors and lost blocks, by kind / library / function:")
    for n in [n for n in res["noise"] if n["kind"] != "Leak_StillReachable"][:25]:
        print("  %-20s %-12s %-40s x%d in %d procs%s" % (n["kind"], n["lib"][:12], n["fn"][:40],
                                                    n["count"], n["procs"],
                                                    ", %d bytes" % n["bytes"] if n["bytes"] else ""))
    reach = [n for n in res["noise"] if n["kind"] == "Leak_StillReachable"]
    print("  still reachable at exit (not ours): %d records, %d bytes"
          % (sum(n["count"] for n in reach), sum(n["bytes"] for n in reach)))
    print("regression: exit %s, %s passed, %s failed" % (regress.get("exit"), regress.get("passed"),
                                                         regress.get("failed")))
    if "extra" in res:
        print("extra pass: %s" % {k: v for k, v in res["extra"].items() if k != "problems"})
    for f in failures:
        print("FAIL:", f)
    print("valgrind.sh: %s (%.0f s)" % ("PASS" if not failures else "FAIL", res["seconds"]))
    if a.self_test:
        import shutil
        shutil.rmtree(os.path.dirname(wrapper[1].split("=", 1)[1]), ignore_errors=True)
    if not a.keep and not a.outdir:
        cluster.remove()
    elif a.keep:
        print("logs kept in", logdir)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
