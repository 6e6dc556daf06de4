#!/usr/bin/env python3
"""Self-check for test/mock_scrape.py and test/mock_factcheck.py (stdlib only).

    python3 test/mock_apis_selfcheck.py [--no-bench]

Starts each mock on a free loopback port as a subprocess and checks every
documented behaviour with plain assertions: the APIs' documented examples
field for field, derived counts, auth both ways, 404/405/400s, the list
walk with its limit/offset edges, the control endpoints, every fault kind,
keep-alive reuse, the window limit (ratelimit=, rl_*, and a mock started
with --window-limit), a clean SIGTERM exit, then a small bench data set of
each.  The helpers are test/lib/mockcheck.py's.  Prints "mock_scrape: N
checks passed" and "mock_factcheck: N checks passed" (or the failures);
exits 1 on any failure.  Takes about 11 s (10 s with --no-bench).
"""

import email.utils
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from mockcheck import (TEST_DIR, Checks, Client, check_stopped, not_utf8, raw,  # noqa: E402
                       read_all, split_resp, start_mock)

SCRAPE_AUTH = {"X-API-Key": "test-key"}
FC_AUTH = {"Authorization": "Bearer test-key"}
RL_NAMES = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


def rl(h):
    """An answer's ratelimit-* headers, in the order of RL_NAMES (None: absent)."""
    return tuple(h.get(k) for k in RL_NAMES)


def has_nul(v):
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(has_nul(k) or has_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(has_nul(x) for x in v)
    return False


# --------------------------------------------------------------------------
# behaviour common to both mocks
# --------------------------------------------------------------------------

def common_checks(chk, c, port, auth, eps, err_of):
    """eps: {endpoint: a 200 path}; err_of(body bytes) -> (code, message)."""
    ep, path = next(iter(eps.items()))
    normal = c.req(path)[2]
    # prefix syntax
    s, h, b = c.req("/bogus=1" + path)
    chk("unknown prefix 400", s == 400 and b == b"unknown prefix parameter: bogus", b)
    s, h, b = c.req("/after=x" + path)
    chk("bad prefix value 400", s == 400 and b == b"bad value for after", b)
    s, h, b = c.req("/fault=bogus" + path)
    chk("unknown fault 400", s == 400 and b == b"unknown fault", b)
    s, h, b = c.req("/fault=status/on=nope" + path)
    chk("bad on 400", s == 400 and b == b"bad value for on", b)
    s, h, b = c.req("/bogus=1" + path, headers={})
    chk("prefix checked before auth", s == 400)
    s, h, b = c.req("/nope/x", headers={})
    chk("auth checked before path", s == 401)

    # status faults with the API's error bodies
    for code, want in ((401, "unauthorized"), (404, None), (429, "rate_limited"),
                       (500, "internal_error"), (503, "service_unavailable"),
                       (418, "error")):
        s, h, b = c.req("/fault=status/status=%d%s" % (code, path))
        ec, msg = err_of(b)
        chk("status %d body" % code, s == code and (want is None or ec == want)
            and isinstance(msg, str) and msg, (s, b))
    s, h, b = c.req("/fault=status" + path)
    chk("status default 500", s == 500 and err_of(b)[0] == "internal_error")
    s, h, b = c.req("/fault=status/status=429/retry_after=3/retry_after_ms=2500" + path)
    chk("status 429 retry headers", s == 429 and err_of(b) == ("rate_limited",
                                                               "Rate limit exceeded")
        and h.get("retry-after") == "3" and h.get("retry-after-ms") == "2500", (h, b))
    s, h, b = c.req("/fault=status/status=503/retry_after=date%2B2" + path)
    dt = email.utils.parsedate_to_datetime(h.get("retry-after", "x, 1 Jan 1970"))
    chk("retry_after date", s == 503 and 0 < dt.timestamp() - time.time() < 4, h)

    # after / times / on
    c.ctl("reset")
    p = "/fault=status/status=503/times=2" + path
    got = [c.req(p)[0] for _ in range(4)]
    chk("times=2", got == [503, 503, 200, 200], got)
    c.ctl("reset")
    chk("reset clears times", c.req(p)[0] == 503)
    p = "/fault=status/status=502/after=1" + path
    got = [c.req(p)[0] for _ in range(3)]
    chk("after=1", got == [200, 502, 502], got)
    got = [c.req("/fault=status/on=%s%s" % (e, pp))[0] for e, pp in eps.items()]
    chk("on=own endpoint", got == [500] * len(eps), got)
    if len(eps) > 1:
        (e1, p1), (e2, p2) = list(eps.items())[:2]
        chk("on=other endpoint", c.req("/fault=status/on=%s%s" % (e2, p1))[0] == 200)

    # simple body faults, on every endpoint
    for e, pp in eps.items():
        s, h, b = c.req("/fault=html" + pp)
        chk("html " + e, s == 502 and h["content-type"].startswith("text/html")
            and b"nginx" in b and b"502 Bad Gateway" in b)
        s, h, b = c.req("/fault=html/status=503" + pp)
        chk("html 503 " + e, s == 503 and b"503 Service Unavailable" in b)
        s, h, b = c.req("/fault=not_json" + pp)
        chk("not_json " + e, s == 200 and b == b"upstream said: this is not json")
        s, h, b = c.req("/fault=empty" + pp)
        chk("empty " + e, s == 200 and b == b"" and h["content-length"] == "0")
        s, h, b = c.req("/fault=invalid_utf8" + pp)
        chk("invalid_utf8 " + e, s == 200 and b"\xff\xfe" in b and not_utf8(b))
        s, h, b = c.req("/fault=nul_escape" + pp)
        chk("nul_escape " + e, s == 200 and b"\\u0000" in b and has_nul(json.loads(b)))
        s, h, b = c.req("/fault=deep_nesting" + pp)
        chk("deep_nesting " + e, s == 200 and b"[" * 100000 + b"]" * 100000 in b)
        s, h, b = c.req("/fault=deep_nesting/depth=5" + pp)
        chk("deep_nesting depth=5 " + e, s == 200 and b"[[[[[]]]]]" in b
            and b"[[[[[[" not in b and json.loads(b) is not None)
        s, h, b = c.req("/fault=huge/size=2000000" + pp)
        d = json.loads(b)
        rest = dict(d)
        del rest["padding"]
        chk("huge " + e, s == 200 and abs(len(b) - 2000000) < 10
            and int(h["content-length"]) == len(b) and list(d)[0] == "padding"
            and rest == json.loads(c.req(pp)[2]), len(b))
        s, h, b = c.req("/fault=redirect" + pp + "?a=1")
        chk("redirect " + e, s == 302 and h.get("location") ==
            "http://127.0.0.2:%d%s?a=1" % (port, pp), h)
        s, h, b = c.req("/fault=invalid_utf8" + pp.rstrip("/") + "zz_unknown")
        chk("JSON fault leaves 404 alone " + e, s == 404 and not not_utf8(b), (s, b))

    # slow body
    t0 = time.monotonic()
    s, h, b = c.req("/fault=slow_body/chunk=%d/delay_ms=20%s" % (len(normal) // 4 + 1, path))
    el = time.monotonic() - t0
    chk("slow_body", s == 200 and b == normal and el >= 0.055, el)
    # latency
    t0 = time.monotonic()
    c.req("/latency=200" + path)
    chk("latency prefix", time.monotonic() - t0 >= 0.2)
    t0 = time.monotonic()
    c.ctl("count")
    chk("control not delayed", time.monotonic() - t0 < 0.2)

    # socket-level faults
    t0 = time.monotonic()
    s = raw(port, "/fault=stall_headers/stall=1" + path, auth, timeout=0.4)
    buf, how = read_all(s)
    chk("stall_headers silent", buf == b"" and how == "timeout", how)
    c2 = Client(port, auth)
    chk("served during stall", c2.req(path)[0] == 200)
    s.settimeout(5)
    buf, how = read_all(s)
    chk("stall_headers closes", buf == b"" and how == "eof"
        and 0.9 < time.monotonic() - t0 < 4, (how, time.monotonic() - t0))
    s.close()

    t0 = time.monotonic()
    s = raw(port, "/fault=stall_body/stall=0.5" + path, auth)
    buf, how = read_all(s)
    st, hd, body = split_resp(buf)
    chk("stall_body", st == 200 and int(hd["content-length"]) == len(normal)
        and body == normal[:len(normal) // 2] and how == "eof"
        and hd.get("connection") == "close" and time.monotonic() - t0 >= 0.45, (how, len(body)))
    s.close()

    s = raw(port, "/fault=truncate" + path, auth)
    buf, how = read_all(s)
    st, hd, body = split_resp(buf)
    chk("truncate", st == 200 and int(hd["content-length"]) == len(normal)
        and len(body) == len(normal) // 2 and how == "eof", (how, len(body)))
    s.close()

    s = raw(port, "/fault=reset" + path, auth)
    buf, how = read_all(s)
    chk("reset (RST)", buf == b"" and how == "reset", how)
    s.close()

    s = raw(port, "/fault=huge" + path, auth)
    s.recv(1000)
    s.close()
    time.sleep(0.1)
    chk("survives client abort", Client(port, auth).req(path)[0] == 200)


def ratelimit_checks(chk, c, port, auth, other, path):
    """ratelimit=N/S, rlheaders=0, rl_* and the counters; other: another
    key's headers (a budget of its own, answered 401)."""
    c.ctl("reset")
    want429 = c.req("/fault=status/status=429" + path)[2]
    s, h, b = c.req(path)
    chk("rl: nothing announced by default", rl(h) == (None,) * 4 and "retry-after" not in h)
    p = "/ratelimit=2/0.5" + path
    got = [c.req(p) for _ in range(3)]
    chk("rl: admits N then 429", [g[0] for g in got] == [200, 200, 429]
        and got[2][2] == want429 and got[2][1].get("retry-after") == "1",
        [(g[0], g[1]) for g in got])
    chk("rl: headers count down", [rl(g[1]) for g in got] ==
        [("2", r, "1", "2;w=0.5") for r in ("1", "0", "0")], [rl(g[1]) for g in got])
    s, h, b = c.req(p, headers=other)
    chk("rl: another key, another budget", s == 401 and rl(h)[:2] == ("2", "1"), (s, h))
    time.sleep(0.55)
    s, h, b = c.req(p)
    chk("rl: window slid", s == 200 and rl(h)[1] == "1", (s, h))
    s, h, b = c.req("/ratelimit=1%2F9/fault=html" + path)
    chk("rl: %2F, headers on a fault", s == 502 and rl(h) == ("1", "0", "9", "1;w=9"), h)
    p = "/ratelimit=1/5/rlheaders=0" + path
    (s1, h1, _), (s2, h2, _) = c.req(p), c.req(p)
    chk("rl: rlheaders=0", s1 == 200 and s2 == 429 and rl(h1) == rl(h2) == (None,) * 4
        and h2.get("retry-after") in ("4", "5"), (h1, h2))
    p = "/rl_limit=60/rl_remaining=0/rl_reset=7/rl_policy=60%3Bw%3D60" + path
    got = [c.req(p) for _ in range(2)] + [c.req(p, headers=other)]
    chk("rl: rl_* verbatim, not enforced", [g[0] for g in got] == [200, 200, 401]
        and all(rl(g[1]) == ("60", "0", "7", "60;w=60") for g in got), [g[1] for g in got])
    s, h, b = c.req("/rl_reset=3" + path)
    chk("rl: only the rl_* given", rl(h) == (None, None, "3", None), h)
    for v in ("0/1", "2", "2/0", "x/1"):
        s, h, b = c.req("/ratelimit=%s%s" % (v, path))
        chk("rl: ratelimit=%s 400" % v, s == 400 and b == b"bad value for ratelimit", (s, b))
    st = json.loads(c.ctl("stats"))
    chk("rl: stats", st["refused"] == 2 and st["max_in_window"] == 2
        and list(st)[-3:] == ["refused", "max_in_window", "by_path"], st)
    st = [r["status"] for r in json.loads(c.ctl("requests"))]
    chk("rl: requests status", st[:5] == [429, 200, 200, 200, 429] and 401 in st, st)
    c.ctl("reset")
    st = json.loads(c.ctl("stats"))
    chk("rl: reset", "refused" not in st and c.req("/ratelimit=1/5/rlheaders=0" + path)[0]
        == 200, st)
    c.ctl("reset")


def window_limit_checks(chk, script, auth, other, paths):
    """--window-limit: one budget per key across prefixes and endpoints."""
    proc, port = start_mock(script, "--window-limit", "2/30")
    try:
        c = Client(port, auth)
        got = [c.req(paths[0]), c.req("/latency=0" + paths[-1]), c.req(paths[0])]
        chk("global limit across prefixes", [g[0] for g in got] == [200, 200, 429]
            and [rl(g[1])[:2] for g in got] == [("2", r) for r in "100"]
            and all(rl(g[1])[2:] in (("30", "2;w=30"), ("29", "2;w=30")) for g in got)
            and got[2][1].get("retry-after") in ("29", "30"), [(g[0], g[1]) for g in got])
        s, h, b = c.req(paths[0], headers=other)
        chk("global limit per key", s == 401 and rl(h)[1] == "1", (s, h))
        s, h, b = c.req("/ratelimit=5/1" + paths[0])
        chk("global limit: prefix overrides", s == 200 and rl(h)[:2] == ("5", "4"), h)
        st = json.loads(c.ctl("stats"))
        chk("global limit stats", st["refused"] == 1 and st["max_in_window"] == 2, st)
    finally:
        check_stopped(chk, proc)


def cli_checks(chk, script, bad_args):
    """Loopback-only, flag validation, SIGINT exit 0, --verbose logging."""
    for args in [["--host", "0.0.0.0"], ["--host", "192.0.2.1"],
                 ["--window-limit", "0/1"], ["--window-headers", "x"]] + bad_args:
        r = subprocess.run([sys.executable, os.path.join(TEST_DIR, script)] + args,
                           capture_output=True, timeout=10)
        chk("rejects %s" % args, r.returncode == 2 and b"error" in r.stderr, r)
    proc, port = start_mock(script, "--verbose")
    Client(port, {}).req("/nope")
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None
    chk("SIGINT exit 0", rc == 0, rc)
    chk("--verbose logs requests", b"/nope" in proc.stderr.read())


def keepalive_checks(chk, port, auth, paths):
    """One connection across 200/400/401/404/405 answers."""
    c = Client(port, auth)
    socks = []
    for p, hdrs, method, want in paths:
        s, h, b = c.req(p, headers=auth if hdrs is None else hdrs, method=method,
                        body=b"{}" if method == "POST" else None)
        chk("keep-alive status %s %s" % (method, p), s == want, s)
        chk("content-length %s %s" % (method, p), int(h.get("content-length", -1)) == len(b)
            and h.get("connection", "").lower() != "close", h)
        socks.append((id(c.conn.sock), c.conn.sock.getsockname() if c.conn.sock else None))
    chk("keep-alive one connection", len(set(socks)) == 1 and socks[0][1] is not None, socks)


def concurrency_checks(chk, port, auth, paths):
    errors = []

    def worker(i):
        try:
            c = Client(port, auth)
            for j in range(15):
                p = paths[(i + j) % len(paths)]
                if c.req(p)[0] != 200:
                    errors.append(p)
        except Exception as e:  # noqa
            errors.append(repr(e))

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    chk("concurrency", not errors, errors[:3])


# --------------------------------------------------------------------------
# mock_scrape
# --------------------------------------------------------------------------

SCRAPE_IDS = ["batch_xyz789", "batch_empty000", "batch_large300", "batch_done001",
              "batch_unicode01", "batch_failed01", "batch odd/id ü?&%#"]
SCRAPE_DATA_KEYS = ["batch_id", "total_urls", "completed", "failed", "pending",
                    "total_items_extracted", "estimated_completion", "jobs"]
# the documentation page's example answer (its first job only)
SCRAPE_EXAMPLE = {"success": True, "data": {
    "batch_id": "batch_xyz789", "total_urls": 10, "completed": 7, "failed": 1, "pending": 2,
    "total_items_extracted": 245, "estimated_completion": "2024-12-16T10:35:00Z",
    "jobs": [{"job_id": "job_abc123", "url": "https://example.com/page1",
              "status": "completed", "items_extracted": 25}]}}


def sp(bid):
    return "/api/v1/scrape/batch/%s/progress" % quote(bid, safe="")


def scrape_err(b):
    d = json.loads(b)
    assert d["success"] is False and list(d) == ["success", "error"] \
        and list(d["error"]) == ["code", "message"], d
    return d["error"]["code"], d["error"]["message"]


def scrape_data(chk, c):
    s, h, b = c.req(sp("batch_xyz789"))
    d = json.loads(b)
    chk("200 json", s == 200 and h["content-type"] == "application/json")
    chk("top keys", list(d) == ["success", "data"] and d["success"] is True)
    chk("data keys in documented order", list(d["data"]) == SCRAPE_DATA_KEYS, list(d["data"]))
    doc, got = SCRAPE_EXAMPLE["data"], d["data"]
    chk("documented example values", all(got[k] == doc[k] for k in SCRAPE_DATA_KEYS[:-1]),
        got)
    chk("documented example job", got["jobs"][0] == doc["jobs"][0]
        and list(got["jobs"][0]) == ["job_id", "url", "status", "items_extracted"])
    chk("documented example types", type(got["total_urls"]) is int
        and isinstance(got["estimated_completion"], str))
    chk("xyz789 jobs", [j["job_id"] for j in got["jobs"]] ==
        ["job_abc%d" % n for n in range(123, 133)]
        and [j["status"] for j in got["jobs"]][3::3] == ["failed", "processing", "pending"])
    chk("deterministic", c.req(sp("batch_xyz789"))[2] == b and b'": ' not in b)

    expect = {"batch_xyz789": (10, 7, 1, 2, 245, "2024-12-16T10:35:00Z"),
              "batch_empty000": (0, 0, 0, 0, 0, None),
              "batch_large300": (300, 120, 60, 120, 1500, "2024-12-16T12:00:00Z"),
              "batch_done001": (4, 4, 0, 0, 100, None),
              "batch_unicode01": (3, 2, 0, 1, 10, "2024-12-16T11:00:00Z"),
              "batch_failed01": (3, 1, 2, 0, 12, None),
              "batch odd/id ü?&%#": (1, 0, 0, 1, 0, "2024-12-16T10:00:00Z")}
    for bid in SCRAPE_IDS:
        s, d = c.json(sp(bid))
        x = d["data"]
        jobs = x["jobs"]
        st = [j["status"] for j in jobs]
        derived = (len(jobs), st.count("completed"), st.count("failed"),
                   st.count("pending") + st.count("processing"),
                   sum(j["items_extracted"] for j in jobs))
        chk("derived " + bid, s == 200 and x["batch_id"] == bid and
            (x["total_urls"], x["completed"], x["failed"], x["pending"],
             x["total_items_extracted"]) == derived, x if len(jobs) < 20 else derived)
        chk("eta rule " + bid, (x["estimated_completion"] is None) == (x["pending"] == 0))
        chk("expected " + bid, tuple(x[k] for k in SCRAPE_DATA_KEYS[1:7]) == expect[bid])
        chk("job keys/status " + bid, all(
            list(j) == ["job_id", "url", "status", "items_extracted"]
            and j["status"] in ("pending", "processing", "completed", "failed")
            and type(j["items_extracted"]) is int for j in jobs))
    _, d = c.json(sp("batch_large300"))
    jobs = d["data"]["jobs"]
    chk("large300 ids", jobs[0]["job_id"] == "job_large300_001"
        and jobs[299]["job_id"] == "job_large300_300"
        and jobs[0]["url"] == "https://shop.example.com/products?page=1"
        and [j["status"] for j in jobs[:5]] == ["completed", "completed", "processing",
                                                 "failed", "pending"])
    s, h, b = c.req(sp("batch_unicode01"))
    d = json.loads(b)["data"]
    chk("unicode raw", "https://example.com/Zürich — 東京".encode() in b
        and b'"https://example.com/caf\\u00e9?q=\\ud83d\\ude00"' in b
        and "https://例え.jp/パス?q=straße".encode() in b)
    chk("unicode parsed", [j["url"] for j in d["jobs"]] == [
        "https://example.com/Zürich — 東京", "https://example.com/café?q=😀",
        "https://例え.jp/パス?q=straße"])
    chk("odd id encoded path", sp("batch odd/id ü?&%#") ==
        "/api/v1/scrape/batch/batch%20odd%2Fid%20%C3%BC%3F%26%25%23/progress")


def scrape_errors(chk, c):
    p = sp("batch_xyz789")
    for hdrs, what in (({}, "missing"), ({"X-API-Key": "nope"}, "wrong"),
                       ({"Authorization": "Bearer test-key"}, "bearer not accepted"),
                       ({"X-API-Key": "test-key "}, "trailing space"),
                       ({"X-API-Key": "Test-Key"}, "case")):
        s, h, b = c.req(p, headers=hdrs)
        chk("401 " + what, s == 401 and json.loads(b) == {
            "success": False, "error": {"code": "unauthorized",
                                        "message": "Invalid or missing API key"}}, (s, b))
    chk("x-api-key name case-insensitive",
        c.req(p, headers={"x-api-key": "test-key"})[0] == 200)
    s, d = c.json(sp("batch_nope"))
    chk("404 batch", s == 404 and d == {"success": False, "error": {
        "code": "batch_not_found", "message": "Batch not found"}}, d)
    for path in ("/api/v1/scrape/batch", "/api/v1/scrape/batch/batch_xyz789",
                 "/api/v1/scrape/batch//progress", "/api/v1/scrape/batch/batch_xyz789/jobs",
                 "/v1/batch/batch_xyz789", "/api/v2/scrape/batch/batch_xyz789/progress"):
        s, d = c.json(path)
        chk("404 path " + path, s == 404 and d == {"success": False, "error": {
            "code": "not_found", "message": "Not found"}}, d)
    s, h, b = c.req(p, method="POST", body=b"{}")
    chk("405", s == 405 and h.get("allow") == "GET" and scrape_err(b)[0] ==
        "method_not_allowed")
    s, h, b = c.req("/fault=missing_pagination" + p)
    chk("list-only fault unknown", s == 400 and b == b"unknown fault")


def scrape_control(chk, c):
    c.ctl("reset")
    chk("count after reset", c.ctl("count") == "0")
    c.req(sp("batch_xyz789"))
    c.req(sp("batch_xyz789"))
    c.req(sp("batch_nope"))
    c.req("/fault=status/status=500" + sp("batch_done001"))
    c.req("/api/v1/scrape/batch", headers={})
    chk("count total", c.ctl("count") == "5", c.ctl("count"))
    chk("count progress", c.ctl("count?endpoint=progress") == "4")
    chk("count bad endpoint", c.req("/_mock/count?endpoint=list", headers={})[0] == 400)
    st = json.loads(c.ctl("stats"))
    chk("stats", list(st) == ["total", "progress", "unauthorized", "by_path"]
        and st["total"] == 5 and st["progress"] == 4 and st["unauthorized"] == 1
        and st["by_path"] == {"/api/v1/scrape/batch": 1,
                              "/api/v1/scrape/batch/batch_done001/progress": 1,
                              "/api/v1/scrape/batch/batch_nope/progress": 1,
                              "/api/v1/scrape/batch/batch_xyz789/progress": 2}, st)
    c.req(sp("batch_xyz789"), headers={"X-API-Key": "test-key", "User-Agent": "nimble_fdw/0.1",
                                       "Authorization": "Bearer secret"})
    lh = json.loads(c.ctl("last_headers"))
    chk("last_headers", lh.get("x-api-key") == "<redacted>"
        and lh.get("authorization") == "<redacted>" and lh["authorized"] is True
        and lh.get("user-agent") == "nimble_fdw/0.1", lh)
    c.req(sp("batch_xyz789"), headers={})
    chk("last_headers unauthorized", json.loads(c.ctl("last_headers"))["authorized"] is False)
    chk("control not counted", c.ctl("count") == "7")
    reqs = json.loads(c.ctl("requests"))
    chk("requests log", [r["path"] for r in reqs] == [
        sp("batch_xyz789"), sp("batch_xyz789"), sp("batch_nope"),
        "/fault=status/status=500" + sp("batch_done001"), "/api/v1/scrape/batch",
        sp("batch_xyz789"), sp("batch_xyz789")], reqs)
    ts = [r["t"] for r in reqs]
    chk("requests times", ts == sorted(ts) and abs(time.monotonic() - ts[-1]) < 60)
    c.req(sp("batch_xyz789") + "?x=1")
    chk("requests query kept", json.loads(c.ctl("requests"))[-1]["path"] ==
        sp("batch_xyz789") + "?x=1")
    c.ctl("reset", "POST")
    chk("reset clears log", json.loads(c.ctl("requests")) == [] and c.ctl("count") == "0"
        and json.loads(c.ctl("last_headers")) == {})

    # job_state
    before = c.req(sp("batch_xyz789"))[2]
    r1 = c.ctl("job_state", "POST", json.dumps({
        "batch_id": "batch_xyz789", "job_id": "job_abc132", "status": "completed",
        "items_extracted": 5}).encode())
    _, d = c.json(sp("batch_xyz789"))
    x = d["data"]
    chk("job_state one", r1 == "ok" and x["completed"] == 8 and x["pending"] == 1
        and x["total_items_extracted"] == 250 and x["jobs"][9]["status"] == "completed"
        and x["estimated_completion"] == "2024-12-16T10:35:00Z", (r1, x))
    r2 = c.ctl("job_state?batch_id=batch_xyz789&job_id=job_abc129&status=failed")
    _, d = c.json(sp("batch_xyz789"))
    x = d["data"]
    chk("job_state GET, done -> eta null", r2 == "ok" and x["failed"] == 2 and x["pending"] == 0
        and x["estimated_completion"] is None and x["jobs"][6]["items_extracted"] == 0, x)
    r3 = c.ctl("job_state?batch_id=batch_done001&job_id=job_done001_2&status=processing"
               "&items_extracted=3")
    _, d = c.json(sp("batch_done001"))
    x = d["data"]
    chk("job_state reopen -> eta back", r3 == "ok" and x["pending"] == 1
        and x["estimated_completion"] == "2024-12-16T09:00:00Z"
        and x["total_items_extracted"] == 83, x)
    r4 = c.ctl("job_state", "POST", json.dumps({
        "batch_id": "batch odd/id ü?&%#", "job_id": "job_odd_1", "status": "completed"}).encode())
    chk("job_state odd id", r4 == "ok" and c.json(sp("batch odd/id ü?&%#"))[1]["data"]
        ["estimated_completion"] is None)
    for body, want in (({"batch_id": "batch_nope", "job_id": "x", "status": "failed"}, 404),
                       ({"batch_id": "batch_xyz789", "job_id": "x", "status": "failed"}, 404),
                       ({"batch_id": "batch_xyz789", "job_id": "job_abc123", "status": "done"},
                        400),
                       ({"batch_id": "batch_xyz789", "job_id": "job_abc123"}, 400),
                       ({"batch_id": "batch_xyz789", "job_id": "job_abc123",
                         "status": "failed", "items_extracted": -1}, 400),
                       ({"batch_id": "batch_xyz789", "job_id": "job_abc123",
                         "status": "failed", "items_extracted": "3"}, 400)):
        s = c.req("/_mock/job_state", headers={}, method="POST",
                  body=json.dumps(body).encode())[0]
        chk("job_state error %s" % body, s == want, s)
    chk("job_state bad json", c.req("/_mock/job_state", headers={}, method="POST",
                                    body=b"[")[0] == 400)
    c.ctl("reset")
    chk("reset undoes job_state", c.req(sp("batch_xyz789"))[2] == before
        and c.json(sp("batch_done001"))[1]["data"]["pending"] == 0
        and c.json(sp("batch odd/id ü?&%#"))[1]["data"]["pending"] == 1)
    chk("unknown control 404", c.req("/_mock/nope", headers={})[0] == 404)


def scrape_faults(chk, c):
    p = sp("batch_xyz789")
    _, d = c.json("/fault=wrong_type" + p)
    chk("wrong_type", d["data"]["completed"] == "many"
        and d["data"]["jobs"][0]["items_extracted"] == "many")
    _, d = c.json("/fault=wrong_type" + sp("batch_empty000"))
    chk("wrong_type empty", d["data"]["completed"] == "many" and d["data"]["jobs"] == [])
    _, d = c.json("/fault=data_not_array" + p)
    chk("data_not_array", d["data"]["jobs"] == "oops")
    b = c.req("/fault=invalid_utf8" + p)[2]
    chk("invalid_utf8 in url", b'"url":"https://exam\xff\xfeple.com/page1"' in b, b[:300])
    b = c.req("/fault=invalid_utf8" + sp("batch_empty000"))[2]
    chk("invalid_utf8 empty -> batch_id", b"\xff\xfe" in b.split(b'"batch_id":"')[1]
        .split(b'"')[0])
    _, d = c.json("/fault=nul_escape" + p)
    chk("nul_escape in url", "\x00" in d["data"]["jobs"][0]["url"])
    s, h, b = c.req("/fault=deep_nesting/depth=3" + p)
    chk("deep_nesting data.x", json.loads(b)["data"]["x"] == [[[]]])
    s, h, b = c.req("/fault=wrong_type/status=404" + sp("batch_nope"))
    chk("JSON fault leaves 404 body", s == 404 and scrape_err(b)[0] == "batch_not_found")


def scrape_bench(chk):
    t0 = time.monotonic()
    proc, port = start_mock("mock_scrape.py", "--batches", "60", "--jobs-per-batch", "200")
    chk("bench starts fast", time.monotonic() - t0 < 5)
    try:
        c = Client(port, SCRAPE_AUTH)
        for n in (1, 3, 60):
            s, d = c.json(sp("batch_%06d" % n))
            x = d["data"]
            st = [j["status"] for j in x["jobs"]]
            chk("bench %d" % n, s == 200 and x["total_urls"] == 200
                and x["completed"] == st.count("completed") and x["failed"] == st.count("failed")
                and x["pending"] == st.count("pending") + st.count("processing")
                and (x["pending"] > 0) == (n % 3 == 0)
                and (x["estimated_completion"] is None) == (n % 3 != 0)
                and 5 <= x["failed"] <= 40
                and x["jobs"][0]["job_id"] == "job_%06d_000001" % n, x["failed"])
        chk("bench 404", c.req(sp("batch_000061"))[0] == 404)
    finally:
        check_stopped(chk, proc)


def test_scrape(chk, bench):
    proc, port = start_mock("mock_scrape.py")
    try:
        line = proc.stdout.readline().decode()
        chk("listening line", line == "mock_scrape listening on http://127.0.0.1:%d\n" % port,
            line)
        c = Client(port, SCRAPE_AUTH)
        chk.run(scrape_data, c)
        chk.run(scrape_errors, c)
        chk.run(scrape_control, c)
        chk.run(scrape_faults, c)
        chk.run(common_checks, c, port, SCRAPE_AUTH,
                {"progress": sp("batch_xyz789")}, scrape_err)
        p = sp("batch_xyz789")
        chk.run(keepalive_checks, port, SCRAPE_AUTH, [
            (p, None, "GET", 200), (p, {}, "GET", 401), (sp("x"), None, "GET", 404),
            ("/nope", None, "GET", 404), (p, None, "POST", 405), ("/bogus=1" + p, None, "GET", 400),
            ("/fault=status/status=429" + p, None, "GET", 429), (p, None, "GET", 200)])
        chk.run(concurrency_checks, port, SCRAPE_AUTH, [sp(b) for b in SCRAPE_IDS])
        chk.run(ratelimit_checks, c, port, SCRAPE_AUTH, {"X-API-Key": "other-key"}, p)
    finally:
        check_stopped(chk, proc)
    chk.run(window_limit_checks, "mock_scrape.py", SCRAPE_AUTH, {"X-API-Key": "other-key"},
            [p, sp("batch_done001")])
    chk.run(cli_checks, "mock_scrape.py", [["--batches", "3"], ["--jobs-per-batch", "3"],
                                           ["--batches", "0", "--jobs-per-batch", "1"]])
    if bench:
        chk.run(scrape_bench)


# --------------------------------------------------------------------------
# mock_factcheck
# --------------------------------------------------------------------------

FC_KEYS = ["id", "name", "inputFormat", "originalFileName", "status", "totalItems",
           "processedItems", "successCount", "failureCount", "methodsConfig", "context",
           "totalCostCents", "totalInputTokens", "totalOutputTokens", "errorMessage",
           "validationErrors", "createdAt", "startedAt", "completedAt", "expiresAt"]
FC_ORDER = ["batch_pending01", "batch_xyz789", "batch_empty01", "batch_abc123def456",
            "batch_unicode01", "batch_bigcost01", "batch_cancel01", "batch_failed123"]
# the documentation page's three examples (the last two in part)
FC_EXAMPLE_1 = {
    "id": "batch_abc123def456", "name": "Daily fact check", "inputFormat": "json",
    "originalFileName": None, "status": "completed", "totalItems": 50, "processedItems": 50,
    "successCount": 48, "failureCount": 2, "methodsConfig": {"reasoning": 1, "tool": 0.5},
    "context": {"source": "news-aggregator"}, "totalCostCents": 250,
    "totalInputTokens": 12500, "totalOutputTokens": 8700, "errorMessage": None,
    "validationErrors": None, "createdAt": "2024-01-15T10:00:00Z",
    "startedAt": "2024-01-15T10:00:01Z", "completedAt": "2024-01-15T10:02:30Z",
    "expiresAt": "2024-02-14T10:00:00Z"}
FC_EXAMPLE_2 = {"id": "batch_xyz789", "name": "Article verification", "status": "processing",
              "totalItems": 100, "processedItems": 45, "successCount": 44, "failureCount": 1,
              "completedAt": None}
FC_EXAMPLE_3 = {"id": "batch_failed123", "status": "failed", "totalItems": 10,
              "processedItems": 0, "errorMessage": "3 validation error(s)",
              "validationErrors": [{"row": 1, "error": "Content is required"},
                                   {"row": 5, "error": "Content exceeds maximum length"},
                                   {"row": 8, "error": "Content is required"}]}


def fp(bid):
    return "/v1/batch/" + quote(bid, safe="")


def fc_err(b):
    d = json.loads(b)
    assert list(d) == ["error"] and list(d["error"]) == ["code", "message"], d
    return d["error"]["code"], d["error"]["message"]


def fc_data(chk, c):
    s, h, b = c.req(fp("batch_abc123def456"))
    d = json.loads(b)
    chk("example 1 verbatim", s == 200 and d == FC_EXAMPLE_1 and list(d) == list(FC_EXAMPLE_1)
        and list(d["methodsConfig"]) == ["reasoning", "tool"], d)
    chk("compact deterministic", b'": ' not in b and c.req(fp("batch_abc123def456"))[2] == b)
    _, d = c.json(fp("batch_xyz789"))
    chk("example 2", all(d[k] == v for k, v in FC_EXAMPLE_2.items()), d)
    _, d = c.json(fp("batch_failed123"))
    chk("example 3", all(d[k] == v for k, v in FC_EXAMPLE_3.items())
        and d["startedAt"] is None, d)
    s, h, lb = c.req("/v1/batch")
    lst = json.loads(lb)
    chk("list shape", s == 200 and list(lst) == ["data", "pagination"]
        and list(lst["pagination"]) == ["total", "limit", "offset", "hasMore"]
        and lst["pagination"] == {"total": 8, "limit": 20, "offset": 0, "hasMore": False},
        lst.get("pagination"))
    chk("list order newest first", [x["id"] for x in lst["data"]] == FC_ORDER,
        [x["id"] for x in lst["data"]])
    created = [x["createdAt"] for x in lst["data"]]
    chk("list createdAt desc", created == sorted(created, reverse=True))
    for x in lst["data"]:
        i = x["id"]
        s, h, db = c.req(fp(i))
        d = json.loads(db)
        chk("list item == details " + i, s == 200 and d == x and db in lb)
        chk("keys " + i, list(d) == FC_KEYS, list(d))
        chk("status " + i, d["status"] in ("pending", "processing", "completed", "failed",
                                           "cancelled"))
        chk("completedAt rule " + i, (d["completedAt"] is None) ==
            (d["status"] in ("pending", "processing")))
        ca = datetime.strptime(d["createdAt"], "%Y-%m-%dT%H:%M:%SZ")
        ex = datetime.strptime(d["expiresAt"], "%Y-%m-%dT%H:%M:%SZ")
        chk("expiresAt +30d " + i, ex - ca == timedelta(days=30))
        chk("types " + i, all(type(d[k]) is int for k in FC_KEYS[5:9] + FC_KEYS[11:14])
            and isinstance(d["methodsConfig"], dict) and isinstance(d["context"], dict)
            and (d["validationErrors"] is None or isinstance(d["validationErrors"], list)))
        chk("counts sane " + i, d["successCount"] + d["failureCount"] == d["processedItems"]
            <= d["totalItems"])
    by = {x["id"]: x for x in lst["data"]}
    chk("pending nulls", by["batch_pending01"]["startedAt"] is None
        and by["batch_pending01"]["completedAt"] is None
        and by["batch_pending01"]["originalFileName"] is None)
    chk("empty batch", by["batch_empty01"]["totalItems"] == 0
        and by["batch_empty01"]["methodsConfig"] == {} and by["batch_empty01"]["context"] == {})
    bc = by["batch_bigcost01"]
    chk("big numbers", bc["totalCostCents"] == 3500000000 and bc["totalInputTokens"] ==
        6000000000 and bc["totalOutputTokens"] == 4294967296 and all(
            bc[k] > 2 ** 31 for k in ("totalCostCents", "totalInputTokens", "totalOutputTokens"))
        and b'"totalInputTokens":6000000000' in lb)
    raw_u = c.req(fp("batch_unicode01"))[2]
    chk("unicode", by["batch_unicode01"]["name"] == "Zürich — 東京 ✓ Faktencheck"
        and "Zürich — 東京 ✓".encode() in raw_u
        and b'"source":"caf\\u00e9 \\ud83d\\ude00"' in raw_u
        and by["batch_unicode01"]["context"]["source"] == "café 😀"
        and by["batch_unicode01"]["originalFileName"] == "prüfung_東京.csv")
    chk("cancelled", by["batch_cancel01"]["status"] == "cancelled"
        and by["batch_cancel01"]["errorMessage"] == "Batch cancelled by user")


def fc_pagination(chk, c):
    ids, off, pages = [], 0, 0
    while pages < 10:
        s, d = c.json("/v1/batch?limit=3&offset=%d" % off)
        pages += 1
        pg = d["pagination"]
        chk("page %d pagination" % pages, pg["total"] == 8 and pg["limit"] == 3
            and pg["offset"] == off and pg["hasMore"] == (off + 3 < 8), pg)
        ids += [x["id"] for x in d["data"]]
        if not pg["hasMore"]:
            break
        off += len(d["data"])
    chk("walk limit 3: 3 pages", pages == 3 and ids == FC_ORDER, (pages, ids))
    for q, n, more, first in (("limit=1", 1, True, FC_ORDER[0]),
                              ("limit=7", 7, True, FC_ORDER[0]),
                              ("limit=8", 8, False, FC_ORDER[0]),
                              ("limit=100", 8, False, FC_ORDER[0]),
                              ("limit=1&offset=7", 1, False, FC_ORDER[7]),
                              ("offset=5", 3, False, FC_ORDER[5]),
                              ("limit=2&offset=6", 2, False, FC_ORDER[6]),
                              ("limit=2&offset=5", 2, True, FC_ORDER[5]),
                              ("limit=007&offset=0", 7, True, FC_ORDER[0]),
                              ("offset=8", 0, False, None),
                              ("offset=1000&limit=5", 0, False, None),
                              ("status=completed&x=1", 8, False, FC_ORDER[0])):
        s, d = c.json("/v1/batch?" + q)
        chk("edge " + q, s == 200 and len(d["data"]) == n and d["pagination"]["hasMore"] is more
            and (d["data"][0]["id"] if d["data"] else None) == first
            and d["pagination"]["total"] == 8, d["pagination"])
    s, d = c.json("/v1/batch?offset=1000&limit=5")
    chk("past end echoes", d["pagination"] == {"total": 8, "limit": 5, "offset": 1000,
                                               "hasMore": False} and d["data"] == [])
    for q in ("limit=0", "limit=101", "limit=abc", "limit=-1", "limit=", "limit=1.5",
              "limit=%2B5", "offset=-1", "offset=abc", "offset=", "offset=1e3"):
        s, d = c.json("/v1/batch?" + q)
        want = ("limit must be an integer between 1 and 100" if q.startswith("limit")
                else "offset must be a non-negative integer")
        chk("400 " + q, s == 400 and d == {"error": {"code": "invalid_request",
                                                     "message": want}}, (s, d))


def fc_errors(chk, c):
    p = fp("batch_abc123def456")
    for hdrs, what in (({}, "missing"), ({"Authorization": "Bearer nope"}, "wrong"),
                       ({"X-API-Key": "test-key"}, "x-api-key not accepted"),
                       ({"Authorization": "test-key"}, "no scheme"),
                       ({"Authorization": "Basic test-key"}, "basic")):
        s, h, b = c.req(p, headers=hdrs)
        chk("401 " + what, s == 401 and json.loads(b) == {
            "error": {"code": "unauthorized", "message": "Invalid API key"}}, (s, b))
    for scheme in ("bearer", "BEARER", "BeArEr"):
        chk("scheme " + scheme, c.req(p, headers={"Authorization": scheme + " test-key"})[0]
            == 200)
    s, d = c.json("/v1/batch?limit=0", headers={})
    chk("auth before 400", s == 401)
    s, d = c.json(fp("batch_nope"))
    chk("404 batch", s == 404 and d == {"error": {"code": "not_found",
                                                  "message": "Batch not found"}}, d)
    for path in ("/v1/batches", "/v1/batch/", "/v1/batch/batch_xyz789/progress", "/v2/batch",
                 "/api/v1/batch", "/"):
        s, d = c.json(path)
        chk("404 path " + path, s == 404 and d == {"error": {"code": "not_found",
                                                             "message": "Not found"}}, d)
    for m in ("POST", "DELETE", "PUT"):
        s, h, b = c.req("/v1/batch", method=m, body=b"{}")
        chk("405 " + m, s == 405 and h.get("allow") == "GET"
            and fc_err(b) == ("method_not_allowed", "Method not allowed"))
    s, h, b = c.req(p, method="HEAD")
    chk("405 HEAD", s == 405 and b == b"")


def fc_control(chk, c):
    c.ctl("reset")
    c.req("/v1/batch")
    c.req("/v1/batch?limit=3&offset=3")
    c.req(fp("batch_xyz789"))
    c.req(fp("batch_nope"))
    c.req("/v1/batch?limit=0")
    c.req("/v1/batch", headers={})
    c.req("/v1/nope")
    chk("count total", c.ctl("count") == "7", c.ctl("count"))
    chk("count list", c.ctl("count?endpoint=list") == "4")
    chk("count details", c.ctl("count?endpoint=details") == "2")
    chk("count bad", c.req("/_mock/count?endpoint=progress", headers={})[0] == 400)
    st = json.loads(c.ctl("stats"))
    chk("stats", list(st) == ["total", "list", "details", "unauthorized", "by_path"]
        and st["unauthorized"] == 1 and st["by_path"] == {
            "/v1/batch": 4, "/v1/batch/batch_nope": 1, "/v1/batch/batch_xyz789": 1,
            "/v1/nope": 1}, st)
    c.req("/v1/batch", headers={"Authorization": "Bearer test-key", "Accept": "application/json",
                                "X-API-Key": "leak"})
    lh = json.loads(c.ctl("last_headers"))
    chk("last_headers", lh.get("authorization") == "<redacted>" and lh.get("x-api-key") ==
        "<redacted>" and lh["authorized"] is True and lh.get("accept") == "application/json", lh)
    reqs = json.loads(c.ctl("requests"))
    chk("requests log", [r["path"] for r in reqs] == [
        "/v1/batch", "/v1/batch?limit=3&offset=3", fp("batch_xyz789"), fp("batch_nope"),
        "/v1/batch?limit=0", "/v1/batch", "/v1/nope", "/v1/batch"], reqs)
    c.ctl("reset")
    chk("reset", c.ctl("count") == "0" and json.loads(c.ctl("requests")) == [])

    # batch_state
    before_list = c.req("/v1/batch")[2]
    r = c.ctl("batch_state", "POST", json.dumps({"id": "batch_pending01", "status": "processing",
                                                 "processedItems": 10, "successCount": 9,
                                                 "failureCount": 1}).encode())
    _, d = c.json(fp("batch_pending01"))
    chk("batch_state processing", r == "ok" and d["status"] == "processing"
        and d["processedItems"] == 10 and d["startedAt"] == "2024-06-01T12:00:00Z"
        and d["completedAt"] is None and list(d) == FC_KEYS, d)
    r = c.ctl("batch_state?id=batch_pending01&status=completed&processedItems=25"
              "&successCount=24&totalCostCents=3000000000")
    _, d = c.json(fp("batch_pending01"))
    _, lst = c.json("/v1/batch?limit=1")
    chk("batch_state GET completed", r == "ok" and d["status"] == "completed"
        and d["completedAt"] == "2024-06-01T12:00:00Z" and d["totalCostCents"] == 3000000000
        and lst["data"][0] == d, d)
    r = c.ctl("batch_state", "POST", json.dumps({
        "id": "batch_xyz789", "status": "failed", "errorMessage": "boom",
        "validationErrors": [{"row": 2, "error": "bad"}],
        "completedAt": "2024-01-17T11:00:00Z"}).encode())
    _, d = c.json(fp("batch_xyz789"))
    chk("batch_state explicit", r == "ok" and d["status"] == "failed"
        and d["completedAt"] == "2024-01-17T11:00:00Z" and d["validationErrors"] ==
        [{"row": 2, "error": "bad"}] and d["errorMessage"] == "boom", d)
    r = c.ctl("batch_state?id=batch_abc123def456&status=processing&errorMessage=null")
    _, d = c.json(fp("batch_abc123def456"))
    chk("batch_state back to processing", r == "ok" and d["completedAt"] is None
        and d["startedAt"] == "2024-01-15T10:00:01Z")
    r = c.ctl("batch_state?id=batch_empty01&status=pending")
    r2 = c.ctl("batch_state?id=batch_empty01&status=cancelled")
    _, d = c.json(fp("batch_empty01"))
    chk("batch_state cancelled sets completedAt", r == r2 == "ok" and d["status"] == "cancelled"
        and d["completedAt"] == "2024-06-01T12:00:00Z", d)
    for body, want in (({"id": "batch_nope", "status": "failed"}, 404),
                       ({"status": "failed"}, 400),
                       ({"id": "batch_xyz789", "status": "done"}, 400),
                       ({"id": "batch_xyz789", "createdAt": "x"}, 400),
                       ({"id": "batch_xyz789", "bogus": 1}, 400),
                       ({"id": "batch_xyz789", "processedItems": "3"}, 400),
                       ({"id": "batch_xyz789", "processedItems": -3}, 400),
                       ({"id": "batch_xyz789", "validationErrors": "x"}, 400)):
        s = c.req("/_mock/batch_state", headers={}, method="POST",
                  body=json.dumps(body).encode())[0]
        chk("batch_state error %s" % body, s == want, s)
    chk("batch_state GET bad int", c.req("/_mock/batch_state?id=batch_xyz789&totalItems=x",
                                         headers={})[0] == 400)
    c.ctl("reset", "POST")
    chk("reset undoes batch_state", c.req("/v1/batch")[2] == before_list)


def fc_faults(chk, c):
    _, d = c.json("/fault=data_not_array/v1/batch")
    chk("data_not_array", d["data"] == {} and d["pagination"]["total"] == 8)
    _, d = c.json("/fault=data_not_array" + fp("batch_xyz789"))
    chk("data_not_array details unchanged", d["id"] == "batch_xyz789")
    _, d = c.json("/fault=missing_pagination/v1/batch?limit=3")
    chk("missing_pagination", list(d) == ["data"] and len(d["data"]) == 3)
    _, d = c.json("/fault=always_more/v1/batch?offset=100")
    chk("always_more", d["pagination"]["hasMore"] is True and d["data"] == [])
    _, d = c.json("/fault=wrong_type/v1/batch")
    chk("wrong_type list", d["data"][0]["processedItems"] == "many")
    _, d = c.json("/fault=wrong_type/v1/batch?offset=100")
    chk("wrong_type empty page", d["pagination"]["total"] == "many")
    _, d = c.json("/fault=wrong_type" + fp("batch_xyz789"))
    chk("wrong_type details", d["processedItems"] == "many" and list(d) == FC_KEYS)
    b = c.req("/fault=invalid_utf8/v1/batch")[2]
    chk("invalid_utf8 list name", b"\xff\xfe" in b.split(b'"name":"')[1].split(b'"')[0])
    b = c.req("/fault=invalid_utf8" + fp("batch_xyz789"))[2]
    chk("invalid_utf8 details name", b'"name":"Article ve\xff\xferification"' in b, b[:80])
    _, d = c.json("/fault=nul_escape" + fp("batch_xyz789"))
    chk("nul_escape details", "\x00" in d["name"])
    _, d = c.json("/fault=deep_nesting/depth=2/v1/batch")
    chk("deep_nesting list", d["data"][0]["context"] == [[]])
    _, d = c.json("/fault=deep_nesting/depth=2/v1/batch?offset=50")
    chk("deep_nesting empty page", d["x"] == [[]])
    _, d = c.json("/fault=deep_nesting/depth=2" + fp("batch_xyz789"))
    chk("deep_nesting details", d["context"] == [[]])
    s, d = c.json("/fault=missing_pagination/v1/batch?limit=0")
    chk("JSON fault leaves 400", s == 400 and d["error"]["code"] == "invalid_request")
    s, h, b = c.req("/fault=missing_pagination" + fp("batch_xyz789"))
    chk("list fault on details unchanged", s == 200 and json.loads(b)["id"] == "batch_xyz789")
    s, h, b = c.req("/fault=html/on=details/v1/batch")
    chk("on=details spares list", s == 200)


def fc_bench(chk):
    t0 = time.monotonic()
    proc, port = start_mock("mock_factcheck.py", "--batches", "500")
    chk("bench starts fast", time.monotonic() - t0 < 5)
    try:
        c = Client(port, FC_AUTH)
        ids, off = [], 0
        while True:
            s, d = c.json("/v1/batch?limit=100&offset=%d" % off)
            ids += [x["id"] for x in d["data"]]
            if not d["pagination"]["hasMore"]:
                break
            off += 100
        chk("bench walk", ids == ["batch_%08d" % n for n in range(500, 0, -1)]
            and d["pagination"]["total"] == 500, len(ids))
        _, d10 = c.json(fp("batch_00000010"))
        _, d17 = c.json(fp("batch_00000017"))
        _, d1 = c.json(fp("batch_00000001"))
        chk("bench states", d10["status"] == "processing" and d10["completedAt"] is None
            and d17["status"] == "failed" and d1["status"] == "completed"
            and list(d1) == FC_KEYS and d1["successCount"] + d1["failureCount"] ==
            d1["processedItems"])
    finally:
        check_stopped(chk, proc)


def test_factcheck(chk, bench):
    proc, port = start_mock("mock_factcheck.py")
    try:
        line = proc.stdout.readline().decode()
        chk("listening line",
            line == "mock_factcheck listening on http://127.0.0.1:%d\n" % port, line)
        c = Client(port, FC_AUTH)
        chk.run(fc_data, c)
        chk.run(fc_pagination, c)
        chk.run(fc_errors, c)
        chk.run(fc_control, c)
        chk.run(fc_faults, c)
        chk.run(common_checks, c, port, FC_AUTH,
                {"details": fp("batch_xyz789"), "list": "/v1/batch"}, fc_err)
        p = fp("batch_xyz789")
        chk.run(keepalive_checks, port, FC_AUTH, [
            (p, None, "GET", 200), ("/v1/batch?limit=3", None, "GET", 200),
            (p, {}, "GET", 401), (fp("x"), None, "GET", 404), ("/v1/batch?limit=0", None, "GET",
                                                               400),
            ("/nope", None, "GET", 404), (p, None, "POST", 405),
            ("/bogus=1" + p, None, "GET", 400), ("/fault=status/status=429" + p, None, "GET",
                                                 429), (p, None, "GET", 200)])
        chk.run(concurrency_checks, port, FC_AUTH, [fp(b) for b in FC_ORDER] + [
            "/v1/batch?limit=3&offset=%d" % o for o in (0, 3, 6)])
        chk.run(ratelimit_checks, c, port, FC_AUTH, {"Authorization": "Bearer other-key"}, p)
    finally:
        check_stopped(chk, proc)
    chk.run(window_limit_checks, "mock_factcheck.py", FC_AUTH,
            {"Authorization": "Bearer other-key"}, [p, "/v1/batch?limit=2"])
    chk.run(cli_checks, "mock_factcheck.py", [["--batches", "0"], ["--jobs-per-batch", "3"]])
    if bench:
        chk.run(fc_bench)


# --------------------------------------------------------------------------

def main():
    bench = "--no-bench" not in sys.argv
    t0 = time.monotonic()
    results = []
    for name, fn in (("mock_scrape", test_scrape), ("mock_factcheck", test_factcheck)):
        chk = Checks(name)
        try:
            fn(chk, bench)
        except Exception:
            traceback.print_exc()
            chk(name + " raised", False)
        results.append(chk)
    for chk in results:
        if chk.failed:
            print("%s: %d checks passed, %d FAILED" % (chk.name, chk.passed, len(chk.failed)))
        else:
            print("%s: %d checks passed" % (chk.name, chk.passed))
    print("(%.1f s)" % (time.monotonic() - t0))
    return 1 if any(chk.failed for chk in results) else 0


if __name__ == "__main__":
    sys.exit(main())
