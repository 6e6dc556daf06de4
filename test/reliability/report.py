#!/usr/bin/env python3
"""report.py - REPORT.md from the JSON files that cancel.py, leak.py,
soak.py, shared_soak.py and valgrind.sh wrote (run_all.sh calls it).

Usage: report.py RESULTS_DIR OUTPUT.md "COMMAND LINE"
"""
import json
import os
import sys
import time


def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def ms(v):
    return "%.1f" % v if isinstance(v, (int, float)) else str(v)


def kb(v):
    return "{:,}".format(v) if isinstance(v, int) else str(v)


def verdict(r):
    if r is None:
        return "not run"
    return "**PASS**" if r.get("ok") else "**FAIL**"


def cancel_section(r, out):
    out.append("## 1. Cancel, statement_timeout, terminate while a request hangs (`cancel.py`)\n")
    if r is None:
        out.append("Not run.\n")
        return
    out.append("Claim: every hanging query returns, with SQLSTATE 57014 (cancel, "
               "statement_timeout) or 57P01 (terminate), and the median time from the signal "
               "to the client seeing the error is under %.0f ms. Verdict: %s.\n"
               % (r["target_ms"], verdict(r)))
    out.append("%d runs per row, three query shapes in turn (the list request hangs; one keyed "
               "request hangs; a full `batch_tasks` scan whose 8 concurrent detail requests hang). "
               "Cancel/terminate: from just before the second session sends "
               "`pg_cancel_backend`/`pg_terminate_backend` (its round trip included) to the "
               "moment the blocked client call raises. statement_timeout (%d ms): the client's "
               "elapsed time minus the timeout. Times in ms.\n"
               % (r["runs_per_cell"], r["statement_timeout_ms"]))
    out.append("| fault | way | runs | returned | median | p95 | max | SQLSTATE seen | after |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for c in r["cells"]:
        codes = ", ".join("%s x%d" % kv for kv in c["sqlstates"].items())
        if c["way"] == "terminate":
            after = ("FATAL 57P01 in server log %d/%d; process gone: median %s, max %s"
                     % (c.get("fatal_57P01_in_server_log", 0), c["runs"],
                        ms(c.get("exit_median_ms")), ms(c.get("exit_max_ms"))))
        else:
            f0, f1 = c.get("fds_first") or {}, c.get("fds_last") or {}
            after = ("same backend answers next query %d/%d; fds %s -> %s (TCP keep-alive %s -> %s)"
                     % (c.get("backend_ok_after", 0), c["runs"], f0.get("total"), f1.get("total"),
                        sum((f0.get("tcp") or {}).values()), sum((f1.get("tcp") or {}).values())))
        out.append("| %s | %s | %d | %d | %s | %s | %s | %s | %s |"
                   % (c["fault"], c["way"], c["runs"], c["returned"], ms(c["median_ms"]),
                      ms(c["p95_ms"]), ms(c["max_ms"]), codes, after))
    out.append("")
    out.append("For terminate, libpq (psycopg2) reports only \"server closed the connection "
               "unexpectedly\" to the client; the SQLSTATE 57P01 is checked in the server log "
               "(`FATAL:  terminating connection due to administrator command` for each pid). "
               "The same happens for a plain `pg_sleep`, so it is libpq's reporting, not the "
               "extension's.\n")
    failures_block(r, out)


def leak_section(r, out):
    out.append("## 2. Memory and descriptors over thousands of failing queries (`leak.py`)\n")
    if r is None:
        out.append("Not run.\n")
        return
    tol = r.get("tolerances", {})
    out.append("Claim: one backend running %s failing queries keeps a flat memory: VmRSS grows "
               "by less than %s kB from after the warm-up (%d queries) to the end, the memory "
               "contexts' total by less than %s kB, and no file descriptor leaks. Verdict: %s.\n"
               % (kb(r["queries"]), kb(tol.get("rss_kb")), r["warmup"], kb(tol.get("ctx_kb")),
                  verdict(r)))
    out.append("Why 5 MB: VmRSS moves by up to ~1 MB on its own (glibc's heap, PostgreSQL's "
               "caches; see the samples below). 5 MB over the %s queries after the warm-up "
               "catches any leak that averages more than ~550 bytes per query (the self-test "
               "below injects 1 kB per HTTP request and is caught). A smaller leak, or one in "
               "only one of the %d kinds (~%d queries each), can stay under it: those are the "
               "job of `valgrind.sh`, whose extra pass runs every kind under memcheck, where a "
               "definitely-lost block of any size counts. The memory-context total catches "
               "palloc leaks into long-lived contexts to the byte.\n"
               % (kb(r["queries"] - r["warmup"]), len(r["kinds"]),
                  r["queries"] // max(1, len(r["kinds"]))))
    out.append("| figure | after warm-up | at the end | difference |")
    out.append("| --- | ---: | ---: | ---: |")
    out.append("| VmRSS (kB) | %s | %s | %+d |" % (kb(r["rss_warm_kb"]), kb(r["rss_end_kb"]),
                                                   r["rss_growth_kb"]))
    out.append("| memory contexts, sum of total_bytes | %s | %s | %+d |"
               % (kb(r["ctx_warm_bytes"]), kb(r["ctx_end_bytes"]), r["ctx_growth_bytes"]))
    fw, fe = r["fds_warm"], r["fds_end"]
    out.append("| file descriptors (total) | %d | %d | %+d |" % (fw["total"], fe["total"],
                                                                fe["total"] - fw["total"]))
    for k in ("eventpoll", "socket", "file"):
        out.append("| fds: %s | %d | %d | %+d |" % (k, fw.get(k, 0), fe.get(k, 0),
                                                    fe.get(k, 0) - fw.get(k, 0)))
    s = r.get("sockets", {})
    if s:
        out.append("| sockets: TCP (curl keep-alive) / other | %s / %d | %s / %d | |"
                   % (s["warm"]["tcp"], s["warm"]["other"], s["end"]["tcp"], s["end"]["other"]))
    out.append("")
    out.append("Least-squares slope over the samples: VmRSS %.1f bytes/query, memory contexts "
               "%.1f bytes/query. Peak VmHWM %s kB. %d queries in %.0f s.\n"
               % (r["rss_slope_bytes_per_query"], r["ctx_slope_bytes_per_query"],
                  kb(max(x["hwm_kb"] for x in r["samples"])), r["queries_run"], r["seconds"]))
    out.append("VmRSS samples (kB), every %d queries: %s\n"
               % ((r["samples"][1]["queries"] - r["samples"][0]["queries"]) if len(r["samples"]) > 1 else 0,
                  ", ".join(str(x["rss_kb"]) for x in r["samples"])))
    out.append("| kind | queries | SQLSTATEs seen |")
    out.append("| --- | ---: | --- |")
    for k, v in r["kinds"].items():
        out.append("| %s | %d | %s |" % (k, v["run"], ", ".join("%s x%d" % kv for kv in v["codes"].items())))
    out.append("")
    rp, bp = r.get("rescan_probe"), r.get("big_body_probe")
    if rp or bp:
        out.append("Informational probes (not part of the claim; see the findings):\n")
        out.append("| probe | figure |")
        out.append("| --- | --- |")
        if rp:
            out.append("| one query, %s rescans of a parameterized foreign scan (key '', no request) "
                       "| peak VmHWM +%s kB during the query = %.1f bytes per rescan, released at the "
                       "end of the query (%.2f s) |"
                       % (kb(rp["rescans"]), kb(rp["peak_growth_kb"]), rp["bytes_per_rescan"],
                          rp["seconds"]))
        if bp:
            out.append("| one valid %s-byte list response (fresh backend) | peak VmHWM +%s kB = "
                       "%.2f x the body; VmRSS %s kB afterwards |"
                       % (kb(bp["body_bytes"]), kb(bp["peak_growth_kb"]), bp["peak_per_body_byte"],
                          kb(bp["rss_after_kb"])))
        out.append("")
    st = getattr(leak_section, "selftest", None)
    if st:
        out.append("Self-test of this claim: with postgres run under an LD_PRELOAD wrapper of "
                   "`curl_multi_add_handle()` that leaks %d bytes per HTTP request, the same "
                   "script (%s queries) %s: VmRSS %s -> %s kB (%+d kB).\n"
                   % (st.get("self_test_leak_bytes_per_request", 0), kb(st.get("queries_run")),
                      "fails as it must" if not st.get("ok") else "DID NOT FAIL (harness too weak)",
                      kb(st.get("rss_warm_kb")), kb(st.get("rss_end_kb")),
                      st.get("rss_growth_kb", 0)))
    if r.get("row500_check"):
        c = r["row500_check"]
        out.append("The row-500 kind fails where intended: `%s` — context `%s`.\n"
                   % (c["message"], "; ".join(c["context"])))
    failures_block(r, out)


def soak_section(r, out):
    out.append("## 3. Soak: concurrent sessions, faults sprinkled in (`soak.py`)\n")
    if r is None:
        out.append("Not run.\n")
        return
    t = r["totals"]
    out.append("Claim: 0 wrong answers, 0 unexpected errors, 0 crashes, at least 16,000 "
               "queries. Verdict: %s.\n" % verdict(r))
    out.append("| figure | value |")
    out.append("| --- | ---: |")
    out.append("| sessions (backends) | %d |" % r["sessions"])
    out.append("| queries run | %s |" % kb(t["run"]))
    out.append("| answered | %s |" % kb(t["ok"]))
    out.append("| expected errors (allowed SQLSTATE of a faulty server) | %s |" % kb(t["expected_errors"]))
    out.append("| unexpected errors | %d |" % t["unexpected_errors"])
    out.append("| wrong answers | %d |" % t["wrong_answers"])
    out.append("| lost connections | %d |" % t["connection_lost"])
    out.append("| crash lines in the server log | %d |" % len(r["server_log_crash_lines"]))
    out.append("| postmaster alive, same pid | %s |" % (r["postmaster_alive"] and r["postmaster_same_pid"]))
    out.append("| soak time, throughput | %.0f s, %.0f queries/s |" % (r["soak_seconds"], r["qps"]))
    out.append("| mock API requests (approx.) / fault-counter resets | %s / %d |"
               % (kb(r.get("mock_requests_approx")), r["mock_resets"]))
    out.append("| distinct statements (expected answers from a clean run) | %d (%d rows) |"
               % (r["statements"], r["expected_rows_total"]))
    out.append("| harness: `SET statement_timeout = 0` cancelled by the 15 ms timeout still "
               "in force, and retried (not counted as queries) | %d |" % t.get("set_timeout_retries", 0))
    out.append("")
    out.append("| server | queries | answered (all checked) | errors |")
    out.append("| --- | ---: | ---: | --- |")
    for k, v in sorted(r["by_target"].items()):
        out.append("| %s | %d | %d | %s |" % (k, v["run"], v["ok"],
                                             ", ".join("%s x%d" % kv for kv in v["errors"].items()) or "none"))
    out.append("")
    out.append("| session | backend pid | VmRSS at connection (kB) | after %s queries | at the end |"
               % kb(r.get("warmup", 100)))
    out.append("| ---: | ---: | ---: | ---: | ---: |")
    for x in r["rss"]:
        out.append("| %d | %s | %s | %s | %s |" % (x["session"], x.get("pid"), kb(x.get("start_kb")),
                                                   kb(x.get("warm_kb")), kb(x.get("end_kb"))))
    out.append("")
    failures_block(r, out)


def shared_soak_section(r, out):
    out.append("## 5. Shared budgets under load, with cancels and terminates (`shared_soak.py`)\n")
    if r is None:
        out.append("Not run.\n")
        return
    t = r["totals"]
    out.append("Claim: with `shared_preload_libraries = 'nimble_fdw'`, %d sessions over three "
               "API keys (three window-limited mocks, two servers each, one of them with the "
               "shared cache), cancelled and terminated at random in the middle of their "
               "queries, get no wrong answer and no unexpected error; no backend is left "
               "waiting (every budget's in_flight back to 0, nimble_scans empty, no backend "
               "active, within 5 s of the end); no mock refuses a request or sees more than "
               "its window; the shared memory keeps its size. Verdict: %s.\n"
               % (r["workers"], verdict(r)))
    out.append("| figure | value |")
    out.append("| --- | ---: |")
    out.append("| sessions (every 4th with statement_timeout %d ms) | %d |"
               % (r.get("statement_timeout_ms", 0), r["workers"]))
    out.append("| soak time, queries, throughput | %.0f s, %s, %.1f queries/s |"
               % (r["soak_seconds"], kb(t["run"]), r["qps"]))
    out.append("| answers checked against the reference (unlimited mock) | %s |" % kb(t["ok"]))
    out.append("| wrong answers | %d |" % t["wrong"])
    out.append("| unexpected errors | %d |" % t["unexpected"])
    out.append("| errors by kind (all allowed) | %s |"
               % (", ".join("%s x%d" % kv for kv in sorted(r["errors"].items())) or "none"))
    s_ = r["signals_sent"]
    out.append("| cancels / terminates sent | %d / %d |" % (s_["cancel"], s_["terminate"]))
    out.append("| what the signalled scan was doing | %s |"
               % ", ".join("%s x%d" % kv for kv in sorted(r["signals_by_what_the_scan_did"].items())))
    out.append("| signal outcomes | %s |"
               % ", ".join("%s x%d" % kv for kv in sorted(r["signal_outcomes"].items())))
    cl, tl, te = r["cancel_landed"], r["terminate_landed"], r["terminated_exit"]
    out.append("| cancel to 57014 (median / max) | %s / %s s |" % (cl["median_s"], cl["max_s"]))
    out.append("| terminate to the lost connection (median / max) | %s / %s s |"
               % (tl["median_s"], tl["max_s"]))
    out.append("| terminated backend out of pg_stat_activity and nimble_scans (median / max) "
               "| %s / %s s |" % (te["median_s"], te["max_s"]))
    e = r["end"]
    out.append("| after the stop: in_flight 0 / nimble_scans empty after | %s / %s s |"
               % (e["budgets_in_flight_0_after_s"], e["nimble_scans_empty_after_s"]))
    mo = r["monitor"]
    out.append("| nimble_scans during the soak: most rows / per backend | %d / %d |"
               % (mo["max_scans"], mo["max_scans_per_pid"]))
    out.append("| shared memory 'nimble_fdw' at start / end (bytes) | %s / %s |"
               % (kb((r.get("shmem_size_start") or [None])[0]), kb((r.get("shmem_size_end") or [None])[0])))
    out.append("| budgets in nimble_rate_limits (capacity) | %s (%s) |"
               % (r["budget_rows"]["shared"], r["budget_rows"]["capacity"]))
    out.append("| crash lines in the server log / API keys in it | %d / %d |"
               % (len(r["server_log_crash_lines"]), len(r["keys_in_server_log"])))
    w = r.get("warm_up")
    out.append("| warm-up before the soak (each backend's connections to the mocks) | %s |"
               % ("%s s, then %s s until the budgets were empty" % (w["seconds"], w["drain_seconds"])
                  if w else "none (--cold)"))
    out.append("")
    ra = r.get("refusal_analysis") or {}
    out.append("| mock | window | requests | refused | max in a window (mock's clock) | "
               "max in a window on the wire | mock's read lag, median / max (ms) | "
               "budget's most in its window (sampled) | most in flight |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m, v in sorted(r["mocks"].items()):
        b = mo["budget_max"].get(m, {})
        a = ra.get(m) or {}
        lag = a.get("mock_read_lag_s")
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                   % (m, r["mock_windows"].get(m), kb(v.get("total")), v.get("refused"),
                      v.get("max_in_window"), a.get("max_on_wire_in_any_window", "not sniffed"),
                      "%.1f / %.0f" % (lag["median"] * 1000, lag["max"] * 1000) if lag else "",
                      b.get("in_window"), b.get("in_flight")))
    out.append("")
    out.append("| query | run | answered (checked) | wrong | errors |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for k, v in sorted(r["by_kind"].items()):
        out.append("| %s | %d | %d | %d | %d |" % (k, v["run"], v["ok"], v["wrong"], v["errors"]))
    out.append("")
    hits = {k: v.get("cache_hits") for k, v in sorted(r.get("nimble_stats", {}).items())}
    out.append("Shared cache hits by server (nimble_stats): %s.\n"
               % ", ".join("%s %s" % kv for kv in hits.items()))
    refused = {m: a for m, a in ra.items() if a.get("refused_logged")}
    if refused:
        out.append("Refusals, from the mocks' request logs (and the wire): `%s`\n"
                   % json.dumps(refused))
    failures_block(r, out)


def valgrind_section(r, out):
    out.append("## 4. Regression suites under valgrind memcheck (`valgrind.sh`)\n")
    if r is None:
        out.append("Not run (run_all.sh --valgrind runs it).\n")
        return
    out.append("Claim: no definitely-lost block allocated under a nimble_fdw frame and no "
               "invalid read/write/free (nor any other memcheck error) with a nimble_fdw frame. "
               "Verdict: %s.\n" % verdict(r))
    reg = r.get("regress", {})
    ex = r.get("extra", {})
    out.append("| figure | value |")
    out.append("| --- | ---: |")
    out.append("| %s | |" % r.get("valgrind"))
    out.append("| processes reported (postmaster, backends, auxiliaries) | %d |" % r["processes"])
    out.append("| of which ran nimble_fdw code (a nimble_fdw frame in some record) | %d |"
               % r["processes_with_nimble_frames_anywhere"])
    out.append("| incomplete reports | %d |" % len(r["incomplete_reports"]))
    out.append("| regression suites (make installcheck) | exit %s, %s passed, %s failed, %s s |"
               % (reg.get("exit"), reg.get("passed"), reg.get("failed"), reg.get("seconds")))
    if ex:
        out.append("| extra pass: failing queries / cancels / timeouts / terminates | %s / %s / %s / %s |"
                   % (ex.get("failing_queries"), ex.get("cancels"), ex.get("timeouts"), ex.get("terminates")))
        out.append("| extra pass: answered soak statements (checked) / wrong | %s / %s |"
                   % (ex.get("ok_queries"), ex.get("wrong")))
    out.append("| **definitely lost under nimble_fdw frames** (loss records / blocks / bytes) | **%d / %d / %d** |"
               % (r["ours_definite_leaks"], r.get("ours_definite_leak_blocks", 0),
                  r.get("ours_definite_leak_bytes", 0)))
    out.append("| **invalid reads/writes/frees with nimble_fdw frames** | **%d** |" % r["ours_invalid_access"])
    out.append("| other memcheck errors with nimble_fdw frames | %d |" % r["ours_other_errors"])
    sr = r["ours"].get("Leak_StillReachable", {})
    out.append("| still reachable at exit under nimble_fdw frames (not a leak) | %s records, %s bytes |"
               % (kb(sr.get("count", 0)), kb(sr.get("bytes", 0))))
    out.append("")
    out.append("Still reachable at exit under nimble_fdw frames is what the backend keeps on "
               "purpose until it exits: the libcurl multi handle and its connection cache, the "
               "pool of easy handles, and PostgreSQL memory-context blocks created by the "
               "scan (kept on PostgreSQL's context free lists).\n")
    out.append("Noise, not counted against nimble_fdw (after `valgrind.supp`):\n")
    out.append("| kind | library | function | records | processes | bytes |")
    out.append("| --- | --- | --- | ---: | ---: | ---: |")
    n_shown = 0
    for n in r["noise"]:
        if n["kind"] == "Leak_StillReachable":
            continue
        out.append("| %s | %s | %s | %d | %d | %s |" % (n["kind"], n["lib"], n["fn"], n["count"],
                                                       n["procs"], kb(n["bytes"])))
        n_shown += 1
    if not n_shown:
        out.append("| (none left after the suppressions) | | | | | |")
    reach = [n for n in r["noise"] if n["kind"] == "Leak_StillReachable"]
    out.append("| still reachable (PostgreSQL, glibc, ICU, ...) | | | %s | | %s |"
               % (kb(sum(n["count"] for n in reach)), kb(sum(n["bytes"] for n in reach))))
    out.append("")
    out.append("Suppressed (see `valgrind.supp`, each entry explained there): PostgreSQL's "
               "start-up leaks of the postmaster inherited by every child (ps_status argv copy, "
               "option strdup, background-worker list), the GUC placeholder that "
               "guc.c's define_custom_variable() knowingly leaks once per session when "
               "`nimble_fdw.allowed_hosts` is set before the library loads, uninitialised "
               "padding written to WAL / relcache init files, and an overlapping memcpy in the "
               "regex cache. Valgrind command: `%s`.\n" % r.get("valgrind_command"))
    st = getattr(valgrind_section, "selftest", None)
    if st:
        out.append("Self-test of this claim (`valgrind.sh --self-test --no-extra --suites \"setup "
                   "batches\"`): postgres run under an LD_PRELOAD wrapper of "
                   "`curl_multi_add_handle()` that leaks 64 bytes per request, called from "
                   "nimble_fdw's `launch()`: %s (%d loss records, %d blocks, %d bytes under "
                   "nimble_fdw frames).\n"
                   % ("found, the claim fails as it must" if not st.get("ok")
                      else "NOT FOUND (the parsing is broken)",
                      st.get("ours_definite_leaks", 0), st.get("ours_definite_leak_blocks", 0),
                      st.get("ours_definite_leak_bytes", 0)))
    failures_block(r, out)


def findings(l, out, results):
    """What the harness showed about src/ beyond the claims."""
    out.append("## Findings about the extension (beyond the claims)\n")
    rp = (l or {}).get("rescan_probe")
    bp = (l or {}).get("big_body_probe")
    out.append("1. **Rescans of a parameterized scan** (a nested loop): each rescan's keys live "
               "in `keys_cxt` (src/scan.c), which is reset when the keys change, so a long "
               "nested loop does not pile up keys. Measured by `leak.py`'s rescan probe: %s; "
               "whatever remains is released with the query. Reproduction:\n"
               % ("%s rescans, peak +%s kB, %.1f bytes per rescan with an empty key"
                  % (kb(rp["rescans"]), kb(rp["peak_growth_kb"]), rp["bytes_per_rescan"])
                  if rp else "(probe not run)"))
    out.append("   ```sql\n"
               "   SET enable_hashjoin = off; SET enable_mergejoin = off;\n"
               "   SET enable_material = off; SET enable_memoize = off;\n"
               "   CREATE TEMP TABLE k AS SELECT ''::text AS id FROM generate_series(1, 1000000);\n"
               "   SELECT count(*) FROM k CROSS JOIN LATERAL\n"
               "     (SELECT * FROM nimble.batch_progress p WHERE p.batch_id = k.id OFFSET 0) x;\n"
               "   -- VmHWM of the backend (/proc/PID/status) before and after the query\n"
               "   ```\n")
    out.append("2. **A response costs about its own size at its peak** (observation). %s The "
               "body buffer (src/http.c `write_cb`, grown by doubling) holds it once; the "
               "scanner (src/json_scan.h, src/json_doc.c) reads strings in place and copies "
               "only the captured strings that have escapes, so a field no column uses costs "
               "nothing. A scan holds up to max_concurrency (16) bodies in flight, each at most "
               "max_response_bytes (64 MB), and reuses freed buffers within the transaction "
               "(src/body_pool.c, at most 64 MB kept). Reproduction: a server with url "
               "`.../fault=huge/size=50000000/on=list/v1`, then `SELECT count(*) FROM batches` "
               "and VmHWM before/after.\n"
               % ("Measured by `leak.py`'s big-body probe: a valid %s-byte list response raised "
                  "the backend's peak memory by %s kB (%.2f x)."
                  % (kb(bp["body_bytes"]), kb(bp["peak_growth_kb"]), bp["peak_per_body_byte"])
                  if bp else ""))
    ran = [r for r in results if r]
    if ran and all(r.get("ok") for r in ran):
        out.append("3. Otherwise no crash, no wrong answer, no leak across queries, no "
                   "descriptor leak and no memcheck error in nimble_fdw's frames were found in "
                   "the %d script(s) run: see the sections above.\n" % len(ran))
    else:
        out.append("3. Some claims failed: see the failures listed in the sections above.\n")


def failures_block(r, out):
    f = r.get("failures") or []
    if f:
        out.append("Failures:\n")
        for x in f:
            out.append("- %s" % x)
        out.append("")
    if r.get("note"):
        out.append("Note: %s\n" % r["note"])


def main():
    d, dest, command = sys.argv[1], sys.argv[2], sys.argv[3]
    c, l, s, v = (load(d, "cancel.json"), load(d, "leak.json"), load(d, "soak.json"),
                  load(d, "valgrind.json"))
    ss = load(d, "shared_soak.json")
    leak_section.selftest = load(d, "leak_selftest.json")
    valgrind_section.selftest = load(d, "valgrind_selftest.json")
    any_r = next((x for x in (c, l, s, ss, v) if x), {})
    m = any_r.get("machine", {})
    out = ["# nimble_fdw reliability report\n"]
    out.append("Generated by `test/reliability/run_all.sh` on %s.\n"
               % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    out.append("| | |")
    out.append("| --- | --- |")
    out.append("| command | `%s` |" % command)
    out.append("| machine | %s cores (nproc), %s GiB memory, %s, kernel %s |"
               % (m.get("nproc"), m.get("mem_gib"), m.get("cpu"), m.get("kernel")))
    out.append("| load average at start | %s (the machine is shared with other jobs) |" % m.get("loadavg"))
    b = (c or l or s or ss or {}).get("build", {})
    out.append("| extension | `%s`, md5 %s, built from %s |"
               % (b.get("so", "nimble_fdw.so"), b.get("md5", (v or {}).get("so_md5")),
                  b.get("repo", (v or {}).get("repo"))))
    out.append("| PostgreSQL | 15 (Debian), private cluster per script, as user postgres |")
    out.append("| API | test/mock_nimble.py on 127.0.0.1, faults through URL prefixes |")
    out.append("")
    out.append("| claim | script | verdict | time |")
    out.append("| --- | --- | --- | ---: |")
    for name, script, r in (("cancel lands in < 100 ms (median)", "cancel.py", c),
                            ("memory and fds flat over 10,000 failing queries", "leak.py", l),
                            ("no wrong answer, no crash under concurrent load with faults", "soak.py", s),
                            ("shared budgets: no wrong answer, no backend left waiting, no 429, "
                             "under cancels and terminates", "shared_soak.py", ss),
                            ("no leak / invalid access in nimble_fdw under valgrind", "valgrind.sh", v)):
        out.append("| %s | `%s` | %s | %s |" % (name, script, verdict(r),
                                               "%.0f s" % r["seconds"] if r else ""))
    out.append("")
    cancel_section(c, out)
    leak_section(l, out)
    soak_section(s, out)
    valgrind_section(v, out)
    shared_soak_section(ss, out)
    findings(l, out, (c, l, s, ss, v))
    out.append("## How to run\n")
    out.append("```sh\ntest/reliability/run_all.sh              # cancel, leak, soak, shared_soak\n"
               "test/reliability/run_all.sh --valgrind   # and the suites under valgrind\n"
               "test/reliability/cancel.py --runs 40     # one script, options in its --help\n```\n")
    out.append("Each script installs what is missing with apt-get (`deps.sh`), builds and "
               "installs the extension under `flock /tmp/nimble_build.lock`, makes its own "
               "cluster in /tmp (initdb, postgres run as user postgres on a free port, socket "
               "in its directory) and its own mock API on a free 127.0.0.1 port, and removes "
               "both at the end. Exit status 0 when its claim holds, 1 when it does not.\n")
    with open(dest, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
