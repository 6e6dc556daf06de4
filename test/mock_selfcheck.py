#!/usr/bin/env python3
"""Self-check for test/mock_nimble.py (stdlib only).

    python3 test/mock_selfcheck.py [--no-bench]

Starts the mock on a free port as a subprocess, exercises every endpoint,
the cross-endpoint consistency rules, auth, pagination, every fault kind,
after/times, reset and task_state, the window limit (ratelimit=,
rlheaders=, rl_*, then two more mocks with --window-limit and
--window-headers off), then starts a bench data set (--batches 1000
--tasks-per-batch 100) and checks that it comes up quickly.  The helpers
are test/lib/mockcheck.py's, shared with test/mock_apis_selfcheck.py.
Prints "N passed, M failed"; exits 1 on any failure.  Takes about 8 s
(11 s with the bench data set): the window checks wait for windows to
slide.
"""

import email.utils
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from ids import batch_id as bid, task_id as tid  # noqa: E402
from mockcheck import (TEST_DIR, Checks, Client, check_stopped, not_utf8, raw,  # noqa: E402
                       read_all, split_resp, start_mock, stop_mock)

MOCK = "mock_nimble.py"
AUTH = {"Authorization": "Bearer test-key"}
OTHER_KEY = {"Authorization": "Bearer other-key"}
RL_NAMES = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


def rl(h):
    """An answer's ratelimit-* headers, in the order of RL_NAMES (None: absent)."""
    return tuple(h.get(k) for k in RL_NAMES)


# --------------------------------------------------------------------------

def test_basic(chk, c):
    # list
    s, d = c.json("/v1/batches")
    chk("list 200", s == 200)
    ids = [b["id"] for b in d["data"]]
    chk("list order newest first", ids == [bid(n) for n in range(12, 0, -1)], ids)
    chk("list pagination last", d["pagination"] == {"has_next": False, "next_cursor": None,
                                                    "total": 12}, d["pagination"])
    chk("list item keys", list(d["data"][0]) == ["id", "account_name", "completed",
                                                 "created_at", "tasks", "username"])
    by = {b["id"]: b for b in d["data"]}
    chk("username absent on 6 and 11",
        "username" not in by[bid(6)] and "username" not in by[bid(11)]
        and sum("username" in b for b in d["data"]) == 10)
    chk("batch created_at", by[bid(1)]["created_at"] == "2026-03-01T01:00:00.000Z"
        and by[bid(12)]["created_at"] == "2026-03-01T12:00:00.000Z")
    chk("batch 5 non-ascii", by[bid(5)]["account_name"] == "Zürich Labs"
        and by[bid(5)]["username"] == "björn — 東京 ✓")
    chk("batch 2 empty", by[bid(2)]["tasks"] == [] and by[bid(2)]["completed"] is False)

    # determinism
    b1 = c.req("/v1/batches/" + bid(3))[2]
    b2 = c.req("/v1/batches/" + bid(3))[2]
    chk("details byte-identical", b1 == b2 and len(b1) > 400000, len(b1))
    chk("compact json", b'": ' not in b1[:2000] and b'", "' not in b1[:2000])

    # consistency for every batch
    for n in range(1, 13):
        s1, det = c.json("/v1/batches/" + bid(n))
        s2, pro = c.json("/v1/batches/%s/progress" % bid(n))
        item = by[bid(n)]
        real = [t for t in det["tasks"] if t is not None]
        done = sum(t["state"] in ("success", "error") for t in real)
        comp = bool(real) and done == len(real)
        prog = round(done / len(real), 3) if real else 0
        ok = (s1 == 200 and s2 == 200 and det["id"] == pro["id"] == bid(n)
              and det["completed"] == pro["completed"] == item["completed"] == comp
              and det["completed_count"] == pro["completed_count"] == done
              and det["progress"] == pro["progress"] == prog
              and det.get("completed_at") == pro.get("completed_at")
              and ("completed_at" in det) == comp
              and item["tasks"] == [t["id"] for t in real]
              and det["created_at"] == item["created_at"])
        if comp:
            ok = ok and det["completed_at"] == max(t.get("modified_at", t["created_at"])
                                                   for t in real)
        chk("consistency batch %d" % n, ok, (det.get("completed"), pro, item["completed"]))
        chk("details key order %d" % n, [k for k in det if k != "completed_at"] ==
            ["status", "id", "completed", "completed_count", "progress", "created_at", "tasks"])
        for t in real:
            if not all(k in t for k in ("id", "state", "status_url", "created_at", "input",
                                        "_query")):
                chk("required task keys %d" % n, False, t)
                break
            if t["id"] != tid(n, det["tasks"].index(t) + 1):
                chk("task id scheme %d" % n, False, t["id"])
                break

    # specific batches
    _, d1 = c.json("/v1/batches/" + bid(1))
    chk("batch 1", [t["state"] for t in d1["tasks"]] == ["success"] * 3
        and d1["completed"] is True and d1["progress"] == 1)
    _, d2 = c.json("/v1/batches/" + bid(2))
    chk("batch 2 details", d2["tasks"] == [] and d2["progress"] == 0
        and d2["completed"] is False and "completed_at" not in d2)
    _, d3 = c.json("/v1/batches/" + bid(3))
    states = [t["state"] for t in d3["tasks"]]
    chk("batch 3 1000 tasks", len(states) == 1000 and states[:5] == [
        "pending", "queued", "in_progress", "success", "error"] and d3["completed_count"] == 400
        and d3["progress"] == 0.4 and d3["completed"] is False)
    e = d3["tasks"][4]
    chk("batch 3 error task", e["error"] == "Connection timeout"
        and e["error_type"] == "timeout_error" and e["status_code"] == 500
        and d3["tasks"][3]["status_code"] == 200)
    chk("batch 3 api_type", [t["api_type"] for t in d3["tasks"][:4]] ==
        ["web", "serp", "ecommerce", "web"])
    chk("optional keys absent not null", "error" not in d3["tasks"][0]
        and "output_url" not in d3["tasks"][0] and "output_url" in d3["tasks"][3])
    chk("_query null/object", d3["tasks"][0]["_query"] is None
        and d3["tasks"][1]["_query"] == {"engine": "serp", "k": 2})
    t1 = d3["tasks"][3]
    chk("task urls", t1["status_url"] == "https://sdk.nimbleway.com/api/v2/tasks/" + t1["id"]
        and t1["download_url"] == t1["status_url"] + "/results"
        and t1["output_url"] == "s3://nimble-results/%s/%s.json" % (bid(3), t1["id"])
        and t1["batch_id"] == bid(3))
    _, d4 = c.json("/v1/batches/" + bid(4))
    chk("batch 4 nulls", d4["tasks"][1] is None and d4["tasks"][3] is None
        and len(d4["tasks"]) == 5 and d4["completed"] is True and d4["completed_count"] == 3)
    raw5 = c.req("/v1/batches/" + bid(5))[2]
    _, d5 = c.json("/v1/batches/" + bid(5))
    chk("batch 5 escapes", b'"caf\\u00e9 \\ud83d\\ude00"' in raw5
        and d5["tasks"][0]["input"] == {"query": "café 😀"}
        and d5["tasks"][0]["error"] == "Zeitüberschreitung — タイムアウト"
        and "Zürich Labs".encode() in raw5)
    _, d6 = c.json("/v1/batches/" + bid(6))
    chk("batch 6 required keys only", all(
        list(t) == ["id", "state", "status_url", "created_at", "input", "_query"]
        for t in d6["tasks"]) and d6["completed"] is False)
    _, d7 = c.json("/v1/batches/" + bid(7))
    chk("batch 7 unknown states", [t["state"] for t in d7["tasks"]] ==
        ["success", "completed", "failed", "error"] and d7["progress"] == 0.5)
    _, p9 = c.json("/v1/batches/%s/progress" % bid(9))
    chk("progress 3 decimals", p9["progress"] == 0.667)
    chk("progress key order", list(p9) == ["status", "id", "completed", "completed_count",
                                           "progress"])
    # v2 alias
    chk("v2 alias", c.req("/v2/batches/" + bid(1))[2] == c.req("/v1/batches/" + bid(1))[2])


def test_errors(chk, c):
    s, h, b = c.req("/v1/batches", headers={})
    chk("401 missing", s == 401 and json.loads(b) == {
        "status": "failed", "msg": "Unauthorized: invalid or missing API key"})
    s, h, b = c.req("/v1/batches", headers={"Authorization": "Bearer nope"})
    chk("401 wrong key", s == 401)
    s, d = c.json("/v1/batches/nonexistent")
    chk("404 details", s == 404 and d == {"status": "failed", "error": "Batch not found"})
    s, d = c.json("/v1/batches/nonexistent/progress")
    chk("404 progress", s == 404 and d == {"status": "failed", "error": "Batch not found"})
    s, d = c.json("/v1/nothing")
    chk("404 path", s == 404 and d == {"status": "failed", "error": "Not found"})
    s, h, b = c.req("/v1/batches", method="POST", body=b"{}")
    chk("405", s == 405)
    for q in ("limit=0", "limit=1001", "limit=abc", "cursor=bogus", "cursor=cur_OTk"):
        s, d = c.json("/v1/batches?" + q)
        chk("400 " + q, s == 400 and d["status"] == "failed"
            and d["msg"] == "Invalid request parameters"
            and d["error"] == "PARAMETERS_FAILED_JSON_SCHEMA_VALIDATION_ERROR"
            and isinstance(d["details"], dict), d)
    s, d = c.json("/v1/batches?limit=1000")
    chk("limit 1000 ok", s == 200 and len(d["data"]) == 12)


def test_pagination(chk, c):
    ids, cursor, pages, totals = [], None, 0, set()
    while True:
        q = "/v1/batches?limit=5" + ("&cursor=" + cursor if cursor else "")
        s, d = c.json(q)
        pages += 1
        ids += [b["id"] for b in d["data"]]
        totals.add(d["pagination"]["total"])
        if not d["pagination"]["has_next"]:
            chk("last page cursor null", d["pagination"]["next_cursor"] is None)
            break
        cursor = d["pagination"]["next_cursor"]
        if pages == 1:
            chk("cursor format", cursor == "cur_NQ", cursor)
        if pages > 5:
            break
    chk("pagination walk", ids == [bid(n) for n in range(12, 0, -1)] and pages == 3
        and totals == {12}, (pages, ids))


def test_tasks(chk, c):
    """GET /tasks, /tasks/{id}, /tasks/{id}/results."""
    details = {n: c.json("/v1/batches/" + bid(n))[1] for n in range(1, 13)}
    expected = [t for n in range(12, 0, -1) for t in details[n]["tasks"] if t is not None]
    got, cursor, pages = [], None, 0
    while True:
        s, d = c.json("/v1/tasks?limit=250" + ("&cursor=" + cursor if cursor else ""))
        chk("tasks page 200", s == 200, s)
        got += d["data"]
        pages += 1
        if not d["pagination"]["has_next"]:
            break
        cursor = d["pagination"]["next_cursor"]
    chk("tasks walk = every non-null task, newest batch first", got == expected,
        (len(got), len(expected)))
    chk("tasks walk pages/total", pages == 5 and d["pagination"]["total"] == 1033,
        (pages, d["pagination"]))
    s, d = c.json("/v1/tasks")
    chk("tasks default limit 100", s == 200 and len(d["data"]) == 100)
    s, d = c.json("/v1/tasks?limit=0")
    chk("tasks bad limit 400", s == 400 and d["status"] == "failed")
    s, d = c.json("/v1/tasks/" + tid(7, 3))
    chk("task wraps the details object", s == 200 and d == {"task": details[7]["tasks"][2]})
    s, d = c.json("/v1/tasks/nope")
    chk("task unknown 404", s == 404 and d == {"status": "failed", "error": "Task not found"})
    s, d = c.json("/v1/tasks/%s/results" % tid(1, 1))
    chk("results of a success task", s == 200 and d["task_id"] == tid(1, 1)
        and d["url"] == "https://example.com/p/1" and d["data"]["parsing"]["price"] == 1.25,
        d)
    s, d = c.json("/v1/tasks/%s/results" % tid(5, 2))
    chk("results non-ascii title", d["data"]["parsing"]["title"] == "Produkt 2 — 東京", d)
    s, d = c.json("/v1/tasks/%s/results" % tid(6, 1))
    chk("results of a pending task 404", s == 404 and d["error"] == "Task results not found")
    s, d = c.json("/v1/tasks/nope/results")
    chk("results unknown task 404", s == 404 and d["error"] == "Task not found")
    s, d = c.json("/fault=data_not_array/on=task/v1/tasks/" + tid(1, 1))
    chk("task data_not_array", d == {"task": ["oops"]})
    c.ctl("task_state", "POST", json.dumps({"batch_id": bid(1), "task_id": tid(1, 2),
                                            "state": "error"}).encode())
    s, d = c.json("/v1/tasks/" + tid(1, 2))
    chk("task_state reaches /tasks/{id}", d["task"]["state"] == "error", d)
    s, d = c.json("/v1/tasks/%s/results" % tid(1, 2))
    chk("task_state reaches results", s == 404)
    c.ctl("reset")
    s, d = c.json("/v1/tasks/" + tid(1, 2))
    chk("reset restores the task", d["task"]["state"] == "success")


def test_control(chk, c):
    c.ctl("reset")
    chk("count after reset", c.ctl("count") == "0")
    c.req("/v1/batches")
    c.req("/v1/batches/" + bid(1))
    c.req("/v1/batches/%s/progress" % bid(1))
    c.req("/v1/batches/%s/progress" % bid(2))
    c.req("/fault=status/status=500/v1/batches/" + bid(1))
    c.req("/v1/batches", headers={})
    chk("count total", c.ctl("count") == "6", c.ctl("count"))
    chk("count list", c.ctl("count?endpoint=list") == "2")
    chk("count details", c.ctl("count?endpoint=details") == "2")
    chk("count progress", c.ctl("count?endpoint=progress") == "2")
    st = json.loads(c.ctl("stats"))
    chk("stats", st["total"] == 6 and st["unauthorized"] == 1
        and st["by_path"]["/v1/batches"] == 2
        and st["by_path"]["/v1/batches/" + bid(1)] == 2, st)
    c.req("/v1/batches", headers={"Authorization": "Bearer test-key",
                                  "User-Agent": "nimble_fdw/0.1", "Accept": "application/json"})
    lh = json.loads(c.ctl("last_headers"))
    chk("last_headers", lh.get("authorization") == "<redacted>" and lh["authorized"] is True
        and lh.get("user-agent") == "nimble_fdw/0.1"
        and lh.get("accept") == "application/json", lh)
    chk("control not counted", c.ctl("count") == "7")
    reqs = json.loads(c.ctl("requests"))
    chk("requests log", [r["path"] for r in reqs] == [
        "/v1/batches", "/v1/batches/" + bid(1), "/v1/batches/%s/progress" % bid(1),
        "/v1/batches/%s/progress" % bid(2), "/fault=status/status=500/v1/batches/" + bid(1),
        "/v1/batches", "/v1/batches"], reqs)
    ts = [r["t"] for r in reqs]
    chk("requests log times", ts == sorted(ts) and abs(time.monotonic() - ts[-1]) < 60, ts)
    c.req("/v1/batches?limit=2&cursor=cur_MA")
    chk("requests log query", json.loads(c.ctl("requests"))[-1]["path"]
        == "/v1/batches?limit=2&cursor=cur_MA")
    c.ctl("reset")
    chk("requests log reset", json.loads(c.ctl("requests")) == [])

    # task_state
    before = c.req("/v1/batches/" + bid(6))[2]
    for k in (1, 2, 3):
        r = c.ctl("task_state", "POST", json.dumps(
            {"batch_id": bid(6), "task_id": tid(6, k), "state": "success"}).encode())
        chk("task_state ok", r == "ok", r)
    _, det = c.json("/v1/batches/" + bid(6))
    _, pro = c.json("/v1/batches/%s/progress" % bid(6))
    _, lst = c.json("/v1/batches")
    item = [b for b in lst["data"] if b["id"] == bid(6)][0]
    chk("task_state effect", det["completed"] and pro["completed"] and item["completed"]
        and det["completed_at"] == pro["completed_at"] == "2026-06-01T12:00:00.000Z"
        and det["progress"] == 1 and det["tasks"][0]["modified_at"]
        == "2026-06-01T12:00:00.000Z", det)
    r = c.ctl("task_state?batch_id=%s&task_id=%s&state=error" % (bid(1), tid(1, 2)))
    _, p1 = c.json("/v1/batches/%s/progress" % bid(1))
    chk("task_state GET", r == "ok" and p1["completed"] is True)
    chk("task_state 404", c.req("/_mock/task_state?batch_id=x&task_id=y&state=z",
                                headers={})[0] == 404)
    c.ctl("reset", "POST")
    chk("reset undoes data", c.req("/v1/batches/" + bid(6))[2] == before)


def test_faults(chk, c, port):
    c.ctl("reset")
    # status + retry headers
    s, h, b = c.req("/fault=status/status=429/retry_after=3/retry_after_ms=2500/v1/batches")
    chk("status 429", s == 429 and json.loads(b) == {"status": "failed",
                                                     "msg": "Rate limit exceeded"}
        and h.get("retry-after") == "3" and h.get("retry-after-ms") == "2500", (s, h))
    s, h, b = c.req("/fault=status/v1/batches/" + bid(1))
    chk("status 500 default", s == 500 and json.loads(b)["success"] == "false")
    s, h, b = c.req("/fault=status/status=503/retry_after=date%2B2/v1/batches")
    dt = email.utils.parsedate_to_datetime(h.get("retry-after", "x, 1 Jan 1970"))
    chk("retry_after date", s == 503 and 0 < dt.timestamp() - time.time() < 4, h)
    for code, key in ((400, "msg"), (402, "msg"), (403, "msg"), (404, "error"), (502, "msg"),
                      (555, "msg")):
        s, h, b = c.req("/fault=status/status=%d/v1/batches" % code)
        chk("status %d" % code, s == code and key in json.loads(b))
    # times / after / on
    path = "/fault=status/status=503/times=2/v1/batches/" + bid(1)
    got = [c.req(path)[0] for _ in range(4)]
    chk("times=2", got == [503, 503, 200, 200], got)
    c.ctl("reset")
    chk("reset clears times", c.req(path)[0] == 503)
    path = "/fault=status/status=502/after=1/v1/batches"
    got = [c.req(path)[0] for _ in range(3)]
    chk("after=1", got == [200, 502, 502], got)
    got = [c.req("/fault=status/on=details/v1/batches")[0],
           c.req("/fault=status/on=details/v1/batches/" + bid(1))[0]]
    chk("on=details", got == [200, 500], got)
    # html, not_json, empty
    s, h, b = c.req("/fault=html/v1/batches")
    chk("html", s == 502 and h["content-type"].startswith("text/html") and b"nginx" in b)
    s, h, b = c.req("/fault=not_json/v1/batches")
    chk("not_json", s == 200 and b == b"upstream said: this is not json")
    s, h, b = c.req("/fault=empty/v1/batches")
    chk("empty", s == 200 and b == b"" and h["content-length"] == "0")
    # invalid utf8
    for ep in ("/v1/batches", "/v1/batches/" + bid(1), "/v1/batches/%s/progress" % bid(1)):
        s, h, b = c.req("/fault=invalid_utf8" + ep)
        chk("invalid_utf8 " + ep, s == 200 and not_utf8(b) and b"\xff\xfe" in b)
    s, h, b = c.req("/fault=nul_escape/v1/batches")
    chk("nul_escape list", b"\\u0000" in b and "\x00" in json.loads(b)["data"][0]["account_name"])
    s, h, b = c.req("/fault=nul_escape/v1/batches/" + bid(1))
    chk("nul_escape details", "\x00" in json.loads(b)["tasks"][0]["state"])
    # wrong_type
    chk("wrong_type list", c.json("/fault=wrong_type/v1/batches")[1]["data"][0]["completed"]
        == "maybe")
    chk("wrong_type details", c.json("/fault=wrong_type/v1/batches/" + bid(1))[1]["tasks"][0]
        ["status_code"] == "two hundred")
    chk("wrong_type progress", c.json("/fault=wrong_type/v1/batches/%s/progress" % bid(1))[1]
        ["completed_count"] == {"n": 1})
    # deep nesting (default depth; can't json.loads it)
    s, h, b = c.req("/fault=deep_nesting/v1/batches/" + bid(1))
    chk("deep_nesting details", s == 200 and b"[" * 100000 + b"]" * 100000 in b
        and b'"input":[[[' in b)
    s, h, b = c.req("/fault=deep_nesting/depth=50/v1/batches")
    chk("deep_nesting list", json.loads(b)["data"][0]["x"] is not None)
    # huge
    s, h, b = c.req("/fault=huge/size=3000000/v1/batches")
    d = json.loads(b)
    chk("huge", s == 200 and abs(len(b) - 3000000) < 10 and len(d["data"]) == 12
        and int(h["content-length"]) == len(b), len(b))
    # cursor faults
    _, d = c.json("/fault=repeat_cursor/v1/batches?limit=5")
    _, d2 = c.json("/fault=repeat_cursor/v1/batches?limit=5&cursor=" +
                   d["pagination"]["next_cursor"])
    chk("repeat_cursor", d["pagination"]["has_next"] and d["pagination"]["next_cursor"]
        == d2["pagination"]["next_cursor"] is not None)
    _, d = c.json("/fault=null_cursor/v1/batches")
    chk("null_cursor", d["pagination"]["has_next"] is True
        and d["pagination"]["next_cursor"] is None)
    chk("data_not_array list", c.json("/fault=data_not_array/v1/batches")[1]["data"] == {})
    chk("data_not_array details", c.json("/fault=data_not_array/v1/batches/" + bid(1))[1]
        ["tasks"] == "oops")
    chk("missing_pagination", "pagination" not in c.json(
        "/fault=missing_pagination/v1/batches")[1])
    # slow body
    normal = c.req("/v1/batches/" + bid(1))[2]
    t0 = time.monotonic()
    s, h, b = c.req("/fault=slow_body/chunk=512/delay_ms=20/v1/batches/" + bid(1))
    el = time.monotonic() - t0
    n_chunks = (len(normal) + 511) // 512
    chk("slow_body", b == normal and el >= 0.02 * (n_chunks - 1) * 0.9, (el, n_chunks))
    # redirect
    s, h, b = c.req("/fault=redirect/v1/batches?limit=2")
    chk("redirect", s == 302 and h.get("location") ==
        "http://127.0.0.2:%d/v1/batches?limit=2" % port, h)
    # a page whose first item comes again at its end
    s, h, b = c.req("/fault=dup_item/v1/batches?limit=3")
    ids = [i["id"] for i in json.loads(b)["data"]]
    chk("dup_item list", s == 200 and ids == [bid(12), bid(11), bid(10), bid(12)], ids)
    s, h, b = c.req("/fault=dup_item/v1/tasks?limit=2")
    ids = [i["id"] for i in json.loads(b)["data"]]
    chk("dup_item tasks", s == 200 and len(ids) == 3 and ids[0] == ids[2], ids)
    s, h, b = c.req("/fault=dup_item/v1/batches/" + bid(1))
    chk("dup_item leaves details alone", b == c.req("/v1/batches/" + bid(1))[2])
    # credentials echoed, in a body and a header, or in a redirect
    s, h, b = c.req("/fault=echo_auth/v1/batches")
    chk("echo_auth", s == 401 and json.loads(b)["msg"] == "bad key: Bearer test-key"
        and h.get("x-echo") == "Bearer test-key", (s, b, h))
    s, h, b = c.req("/fault=echo_auth/status=400/v1/batches")
    chk("echo_auth status", s == 400, s)
    s, h, b = c.req("/fault=echo_auth_location/v1/batches")
    chk("echo_auth_location", s == 302 and h.get("location") ==
        "http://127.0.0.2:%d/login?auth=Bearer test-key" % port, h)
    # oversized headers
    # (a header line beyond what http.client reads: a raw socket, until the
    # keep-alive answer has come whole)
    sock = raw(port, "/fault=big_header/size=300000/v1/batches/" + bid(1),
               headers=dict(AUTH, Connection="close"))
    s, h, b = split_resp(read_all(sock)[0])
    sock.close()
    chk("big_header", s == 200 and len(h.get("x-big", "")) == 300000, (s, len(h.get("x-big", ""))))
    sock = raw(port, "/fault=many_headers/count=5000/v1/batches/" + bid(1),
               headers=dict(AUTH, Connection="close"))
    s, h, b = split_resp(read_all(sock)[0])
    sock.close()
    chk("many_headers", s == 200 and sum(1 for k in h if k.startswith("x-many-")) == 5000)
    # ids spelled in upper case, found only so
    s, h, b = c.req("/ids=upper/v1/batches?limit=2")
    d = json.loads(b)
    chk("ids=upper list", [i["id"] for i in d["data"]] == [bid(12).upper(), bid(11).upper()]
        and d["data"][0]["tasks"][0] == tid(12, 1).upper(), d["data"][0])
    s, h, b = c.req("/ids=upper/v1/batches/" + bid(1).upper() + "/progress")
    chk("ids=upper progress", s == 200 and json.loads(b)["id"] == bid(1).upper(), b)
    s, h, b = c.req("/ids=upper/v1/batches/" + bid(1))
    chk("ids=upper lower case is 404", s == 404, s)
    s, h, b = c.req("/ids=upper/v1/batches/" + bid(1).upper())
    chk("ids=upper details", s == 200 and
        all(t is None or t["id"] == t["id"].upper() for t in json.loads(b)["tasks"]))
    s, h, b = c.req("/ids=sideways/v1/batches")
    chk("ids bad value", s == 400 and b == b"bad value for ids", b)
    # unknown fault
    s, h, b = c.req("/fault=bogus/v1/batches")
    chk("unknown fault", s == 400 and b == b"unknown fault")
    # latency prefix
    t0 = time.monotonic()
    c.req("/latency=300/v1/batches/" + bid(1))
    chk("latency prefix", time.monotonic() - t0 >= 0.3)

    # socket-level faults
    t0 = time.monotonic()
    s = raw(port, "/fault=stall_headers/stall=1/v1/batches", AUTH, timeout=0.5)
    buf, how = read_all(s)
    chk("stall_headers silent", buf == b"" and how == "timeout")
    # meanwhile others are served
    c2 = Client(port, AUTH)
    chk("served during stall", c2.req("/v1/batches")[0] == 200)
    s.settimeout(5)
    buf, how = read_all(s)
    chk("stall_headers closes", buf == b"" and how == "eof"
        and 0.9 < time.monotonic() - t0 < 4, (how, time.monotonic() - t0))
    s.close()

    t0 = time.monotonic()
    s = raw(port, "/fault=stall_body/stall=1/v1/batches/" + bid(1), AUTH)
    buf, how = read_all(s)
    st_, hd, body = split_resp(buf)
    chk("stall_body", st_ == 200 and int(hd["content-length"]) == len(normal)
        and body == normal[:len(normal) // 2] and how == "eof"
        and time.monotonic() - t0 >= 0.9, (how, len(body)))
    s.close()

    s = raw(port, "/fault=truncate/v1/batches/" + bid(1), AUTH)
    buf, how = read_all(s)
    st_, hd, body = split_resp(buf)
    chk("truncate", st_ == 200 and int(hd["content-length"]) == len(normal)
        and len(body) == len(normal) // 2 and how == "eof", (how, len(body)))
    s.close()

    s = raw(port, "/fault=reset/v1/batches", AUTH)
    buf, how = read_all(s)
    chk("reset", buf == b"" and how == "reset", how)
    s.close()

    # client hanging up during huge: server must survive
    s = raw(port, "/fault=huge/v1/batches", AUTH)
    s.recv(1000)
    s.close()
    time.sleep(0.2)
    chk("survives client abort", Client(port, AUTH).req("/v1/batches")[0] == 200)


def test_ratelimit(chk, c, port):
    """ratelimit=N/S, rlheaders=0, rl_*, and what /_mock/* say of them."""
    c.ctl("reset")
    st = json.loads(c.ctl("stats"))
    chk("no window counters without a limit", "refused" not in st
        and "max_in_window" not in st and list(st)[-1] == "by_path", st)
    s, h, b = c.req("/v1/batches/" + bid(1))
    chk("no ratelimit headers by default", rl(h) == (None,) * 4
        and "retry-after" not in h, h)

    # admit N, then 429 with Retry-After, counting down
    p = "/ratelimit=3/2/v1/batches/" + bid(1)
    normal = c.req("/v1/batches/" + bid(1))[2]
    got = [c.req(p) for _ in range(4)]
    chk("ratelimit admits N", [g[0] for g in got] == [200, 200, 200, 429]
        and all(g[2] == normal for g in got[:3]), [g[0] for g in got])
    # (reset: 2 s less the time the requests took, rounded up)
    chk("ratelimit remaining counts down",
        [rl(g[1])[::3] for g in got] == [("3", "3;w=2")] * 4
        and [rl(g[1])[1] for g in got] == ["2", "1", "0", "0"]
        and rl(got[0][1])[2] == "2" and all(rl(g[1])[2] in ("1", "2") for g in got),
        [rl(g[1]) for g in got])
    s, h, b = got[3]
    want429 = c.req("/fault=status/status=429/v1/batches")[2]
    chk("ratelimit 429 body is the API's", b == want429, b)
    chk("ratelimit 429 Retry-After", h.get("retry-after") in ("1", "2"), h)
    chk("ratelimit 200 has no Retry-After", "retry-after" not in got[0][1])
    s, h, b = c.req("/ratelimit=3%2F2/v1/batches/" + bid(1))
    chk("ratelimit %2F is its own budget", s == 200 and rl(h)[1] == "2", (s, h))
    chk("ratelimit policy of a fraction", rl(c.req("/ratelimit=4/0.25/v1/batches")[1])
        == ("4", "3", "1", "4;w=0.25"))

    # another key, another budget; its 401s carry the headers too
    s, h, b = c.req(p, headers=OTHER_KEY)
    chk("ratelimit other key own budget", s == 401 and rl(h)[:2] == ("3", "2"), (s, h))
    s, h, b = c.req(p, headers={})
    chk("ratelimit no key own budget", s == 401 and rl(h)[:2] == ("3", "2"), (s, h))
    chk("ratelimit first key still refused", c.req(p)[0] == 429)
    # (the budget is the prefix's, whatever the path)
    s, h, b = c.req("/ratelimit=2/5/v1/nothing")
    chk("ratelimit headers on 404", s == 404 and rl(h) == ("2", "1", "5", "2;w=5"), h)
    s, h, b = c.req("/ratelimit=2/5/v1/batches", method="POST", body=b"{}")
    chk("ratelimit budget per prefix, headers on 405", s == 405 and rl(h)[:2] == ("2", "0"), h)
    p = "/ratelimit=2/7/fault=status/status=503/v1/batches"
    got = [c.req(p) for _ in range(3)]
    chk("ratelimit headers on a fault", [g[0] for g in got] == [503, 503, 429]
        and [rl(g[1])[1] for g in got] == ["1", "0", "0"], [(g[0], g[1]) for g in got])
    chk("ratelimit refuses before the fault", got[2][2] == want429, got[2])
    s, h, b = c.req("/ratelimit=5/5/fault=big_header/size=10/v1/batches/" + bid(1))
    chk("ratelimit headers with a header fault", s == 200 and h.get("x-big") == "x" * 10
        and rl(h)[1] == "4", h)

    # the window slides: 0.5 s later the budget is back
    p = "/ratelimit=2/0.5/v1/batches/%s/progress" % bid(1)
    got = [c.req(p) for _ in range(3)]
    chk("window 2/0.5", [g[0] for g in got] == [200, 200, 429]
        and got[2][1].get("retry-after") == "1" and rl(got[2][1])[2] == "1",
        [(g[0], g[1]) for g in got])
    time.sleep(0.6)
    s, h, b = c.req(p)
    chk("window slid", s == 200 and rl(h)[1] == "1", (s, h))
    # as fast as one connection goes for 1 s: never 3 admitted in 0.5 s
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 1.0:
        n += c.req(p)[0] == 200
    ts = [r["t"] for r in json.loads(c.ctl("requests")) if r["path"] == p
          and r["status"] == 200]
    chk("window never admits more than N in S", 3 <= n <= 6
        and all(b - a >= 0.5 for a, b in zip(ts, ts[2:])), (n, ts))

    # rlheaders=0: enforced, not said
    p = "/ratelimit=1/5/rlheaders=0/v1/batches"
    (s1, h1, _), (s2, h2, b2) = c.req(p), c.req(p)
    chk("rlheaders=0", s1 == 200 and s2 == 429 and rl(h1) == rl(h2) == (None,) * 4
        and h2.get("retry-after") in ("4", "5") and b2 == want429, (h1, h2))
    s, h, b = c.req("/rlheaders=1/v1/batches")
    chk("rlheaders=1 without a limit", s == 200 and rl(h) == (None,) * 4, h)

    # fixed announcements, nothing enforced
    p = "/rl_limit=100/rl_remaining=7/rl_reset=30/rl_policy=100%3Bw%3D60/v1/batches"
    got = [c.req(p) for _ in range(3)]
    chk("rl_* verbatim", all(g[0] == 200 and rl(g[1]) == ("100", "7", "30", "100;w=60")
                             for g in got), [g[1] for g in got])
    s, h, b = c.req("/rl_remaining=0/v1/batches")
    chk("rl_* only those given", s == 200 and rl(h) == (None, "0", None, None), h)
    s, h, b = c.req("/rl_policy=10;w=1,%20100;w=60/fault=status/status=503/v1/batches")
    chk("rl_* on a fault, written as is", s == 503
        and rl(h) == (None, None, None, "10;w=1, 100;w=60"), h)
    s, h, b = c.req("/rl_remaining=0/v1/batches", headers={})
    chk("rl_* on a 401", s == 401 and rl(h)[1] == "0", h)
    s, h, b = c.req("/ratelimit=2/5/rl_remaining=99/v1/batches/" + bid(2))
    chk("rl_* replace the computed one", s == 200 and rl(h) == ("2", "99", "5", "2;w=5"), h)

    # bad values
    for v in ("0/1", "5", "5/0", "5/-1", "x/1", "1.5/2", "5/abc", "-1/5", "5/inf", "5/nan",
              "5%2F", "%2F5"):
        s, h, b = c.req("/ratelimit=%s/v1/batches" % v)
        chk("ratelimit=%s 400" % v, s == 400 and b == b"bad value for ratelimit", (s, b))
    for pre, name in (("rlheaders=2", "rlheaders"), ("rlheaders=x", "rlheaders"),
                      ("rl_limit=a%0D%0Ab", "rl_limit"), ("rl_policy=%00", "rl_policy")):
        s, h, b = c.req("/%s/v1/batches" % pre)
        chk("%s 400" % pre, s == 400 and b == ("bad value for " + name).encode(), (s, b))
    s, h, b = c.req("/ratelimit=0/1/v1/batches")
    chk("bad ratelimit answer has no headers", rl(h) == (None,) * 4)

    # the counters, the log, and reset
    st = json.loads(c.ctl("stats"))
    reqs = json.loads(c.ctl("requests"))
    refused = sum(r["status"] == 429 and not r["path"].startswith("/fault=") for r in reqs)
    chk("stats refused: the window's 429s", st["refused"] == refused >= 8, (st, refused))
    chk("stats max_in_window", st["max_in_window"] == 3, st)
    chk("stats key order", list(st)[-3:] == ["refused", "max_in_window", "by_path"], list(st))
    by = {}
    for r in reqs:
        by.setdefault(r["path"], []).append(r["status"])
    chk("requests status", by["/ratelimit=3/2/v1/batches/" + bid(1)] == [200, 200, 200, 429,
                                                                         401, 401, 429]
        and by["/v1/batches/" + bid(1)] == [200, 200]
        and by["/fault=status/status=429/v1/batches"] == [429]
        and by["/ratelimit=0/1/v1/batches"] == [400, 400], by)
    chk("requests keys", all(list(r) == ["path", "t", "status"] for r in reqs), reqs[:2])
    c.ctl("reset")
    st = json.loads(c.ctl("stats"))
    chk("reset clears window counters", "refused" not in st and st["total"] == 0, st)
    p = "/ratelimit=1/60/v1/batches"
    got = [c.req(p)[0], c.req(p)[0]]
    c.ctl("reset", "POST")
    got.append(c.req(p)[0])
    chk("reset clears the windows", got == [200, 429, 200], got)
    st = json.loads(c.ctl("stats"))
    chk("reset then one request", st["refused"] == 0 and st["max_in_window"] == 1, st)
    c.ctl("reset")

    # status of answers that are sent late, or not at all
    sock = raw(port, "/latency=300/v1/batches", AUTH)
    time.sleep(0.1)
    pending = json.loads(c.ctl("requests"))
    read_all_until(sock, b"\r\n\r\n")
    sock.close()
    after = json.loads(c.ctl("requests"))
    chk("status null until answered", pending[-1]["status"] is None
        and after[-1]["status"] == 200, (pending, after))
    sock = raw(port, "/fault=reset/v1/batches", AUTH)
    read_all(sock)
    sock.close()
    sock = raw(port, "/fault=truncate/v1/batches/" + bid(1), AUTH)
    read_all(sock)
    sock.close()
    chk("status of stream faults", [r["status"] for r in json.loads(c.ctl("requests"))][-2:]
        == [None, 200])


def read_all_until(sock, marker):
    buf = b""
    while marker not in buf:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf


def test_ratelimit_concurrent(chk, port):
    """40 requests at once against a budget of 10: exactly 10 admitted."""
    c = Client(port, AUTH)
    c.ctl("reset")
    codes, lock = [], threading.Lock()

    def one():
        s = Client(port, AUTH).req("/ratelimit=10/30/v1/batches/" + bid(1))[0]
        with lock:
            codes.append(s)

    ths = [threading.Thread(target=one) for _ in range(40)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    st = json.loads(c.ctl("stats"))
    chk("concurrent window", sorted(codes) == [200] * 10 + [429] * 30
        and st["refused"] == 30 and st["max_in_window"] == 10 and st["total"] == 40,
        (sorted(codes), st))
    c.ctl("reset")


def test_window_limit(chk):
    """--window-limit and --window-headers: the same limit on every request."""
    proc, port = start_mock(MOCK, "--window-limit", "3/0.5")
    try:
        c = Client(port, AUTH)
        st = json.loads(c.ctl("stats"))
        chk("global: window counters from the start", st["refused"] == 0
            and st["max_in_window"] == 0, st)
        # one budget across prefixes and endpoints
        got = [c.req(p) for p in ("/v1/batches", "/latency=0/v1/batches/" + bid(1),
                                  "/fault=status/status=503/v1/batches",
                                  "/v1/batches/%s/progress" % bid(2))]
        chk("global: 3 admitted across prefixes", [g[0] for g in got] == [200, 200, 503, 429]
            and [rl(g[1])[1] for g in got] == ["2", "1", "0", "0"]
            and rl(got[0][1])[::3] == ("3", "3;w=0.5")
            and got[3][1].get("retry-after") == "1", [(g[0], g[1]) for g in got])
        s, h, b = c.req("/v1/batches", headers=OTHER_KEY)
        chk("global: per key", s == 401 and rl(h)[1] == "2", (s, h))
        s, h, b = c.req("/ratelimit=10/5/v1/batches")
        chk("global: a prefix's ratelimit overrides", s == 200
            and rl(h) == ("10", "9", "5", "10;w=5"), (s, h))
        s, h, b = c.req("/rlheaders=0/v1/batches")
        chk("global: rlheaders=0", s == 429 and rl(h) == (None,) * 4
            and h.get("retry-after") == "1", h)
        time.sleep(0.6)
        chk("global: slides", c.req("/v1/batches")[0] == 200)
        st = json.loads(c.ctl("stats"))
        chk("global: stats", st["refused"] == 2 and st["max_in_window"] == 3, st)
        s, h, b = c.req("/ratelimit=x/v1/batches")
        chk("global: a 400 prefix is not limited", s == 400 and rl(h) == (None,) * 4)
        c.ctl("reset")
        st = json.loads(c.ctl("stats"))
        chk("global: reset", st["refused"] == st["max_in_window"] == 0, st)
    finally:
        check_stopped(chk, proc)

    proc, port = start_mock(MOCK, "--window-limit", "1/5", "--window-headers", "off")
    try:
        c = Client(port, AUTH)
        (s1, h1, _), (s2, h2, _) = c.req("/v1/batches"), c.req("/v1/batches")
        chk("--window-headers off", s1 == 200 and s2 == 429 and rl(h1) == rl(h2) == (None,) * 4
            and h2.get("retry-after") in ("4", "5"), (h1, h2))
        s, h, b = c.req("/rlheaders=1/v1/batches")
        chk("--window-headers off, rlheaders=1", s == 429 and rl(h)[:2] == ("1", "0"), h)
    finally:
        check_stopped(chk, proc)

    # (at once: each is a Python start-up)
    bad = (["--window-limit", "0/5"], ["--window-limit", "5"], ["--window-limit", "5/0"],
           ["--window-headers", "maybe"])
    procs = [subprocess.Popen([sys.executable, os.path.join(TEST_DIR, MOCK)] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in bad]
    for args, pr in zip(bad, procs):
        out, err = pr.communicate(timeout=10)
        chk("rejects %s" % args, pr.returncode == 2 and b"error" in err, (pr.returncode, err))


def test_concurrency(chk, port):
    errors, n_threads, per = [], 40, 25
    t0 = time.monotonic()

    def worker(i):
        try:
            c = Client(port, AUTH)
            for j in range(per):
                p = ("/v1/batches", "/v1/batches/" + bid(1 + (i + j) % 12),
                     "/v1/batches/%s/progress" % bid(1 + j % 12))[j % 3]
                if c.req(p)[0] != 200:
                    errors.append(p)
        except Exception as e:  # noqa
            errors.append(repr(e))

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    el = time.monotonic() - t0
    chk("concurrency", not errors, errors[:3])
    print("  concurrency: %d requests in %.2fs (%.0f req/s)" % (
        n_threads * per, el, n_threads * per / el), flush=True)


def test_bench(chk):
    t0 = time.monotonic()
    proc, port = start_mock(MOCK, "--batches", "1000", "--tasks-per-batch", "100")
    el = time.monotonic() - t0
    try:
        print("  bench data set up in %.2fs" % el, flush=True)
        chk("bench starts fast", el < 10, el)
        c = Client(port, AUTH)
        s, d = c.json("/v1/batches?limit=1000")
        chk("bench list", s == 200 and d["pagination"]["total"] == 1000
            and d["data"][0]["id"] == bid(1000) and len(d["data"][0]["tasks"]) == 100)
        n_err = 0
        for n in (1, 3, 500, 999):
            _, det = c.json("/v1/batches/" + bid(n))
            _, pro = c.json("/v1/batches/%s/progress" % bid(n))
            n_err += sum(t["state"] == "error" for t in det["tasks"])
            chk("bench consistency %d" % n, det["completed"] == pro["completed"]
                and det["progress"] == pro["progress"] and len(det["tasks"]) == 100
                and det["completed"] == (n % 3 != 0))
        chk("bench ~10% errors", 20 <= n_err <= 60, n_err)
    finally:
        stop_mock(proc)


def main():
    chk = Checks("mock_nimble")
    proc, port = start_mock(MOCK)
    try:
        line = proc.stdout.readline().decode()
        chk("listening line", line.strip() == "mock_nimble listening on http://127.0.0.1:%d"
            % port, line)
        c = Client(port, AUTH)
        for fn in (test_basic, test_errors, test_pagination, test_tasks, test_control):
            chk.run(fn, c)
        chk.run(test_faults, c, port)
        chk.run(test_ratelimit, Client(port, AUTH), port)
        chk.run(test_ratelimit_concurrent, port)
        chk.run(test_concurrency, port)
    finally:
        check_stopped(chk, proc)
    chk.run(test_window_limit)
    if "--no-bench" not in sys.argv:
        chk.run(test_bench)
    print("%d passed, %d failed" % (chk.passed, len(chk.failed)))
    return 1 if chk.failed else 0


if __name__ == "__main__":
    sys.exit(main())
