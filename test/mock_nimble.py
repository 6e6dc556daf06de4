#!/usr/bin/env python3
"""mock_nimble.py - a deterministic mock of the Nimble batch API for nimble_fdw tests.

Python 3.11 standard library only.  Responses are shaped like the OpenAPI
excerpts of the real API (GET /v1/batches, /v1/batches/{id},
/v1/batches/{id}/progress).

RUNNING
    python3 test/mock_nimble.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                                [--api-key test-key] [--latency-ms 0]
                                [--batches N --tasks-per-batch M]
                                [--quiet | --verbose]

    Binds to a loopback address only (default 127.0.0.1).  --port 0 picks a
    free port.  Once listening, the port is written to --port-file (written to
    a temp file then renamed, so readers never see a partial file) and
    "mock_nimble listening on http://127.0.0.1:PORT" is printed to stdout.
    Nothing else is logged unless --verbose (one line per request on stderr);
    --quiet is accepted and is the default.  SIGTERM / SIGINT exit cleanly
    (status 0).  HTTP/1.1 keep-alive: every response carries Content-Length,
    except the deliberate faults below.  --latency-ms sleeps that long before
    answering each API request (never control requests).

AUTH
    API requests need "Authorization: Bearer <api-key>" (scheme is
    case-insensitive, key is exact).  Otherwise 401
    {"status":"failed","msg":"Unauthorized: invalid or missing API key"}.
    Order of checks: prefix syntax (400) -> latency -> auth (401) -> path (404)
    -> method (405) -> fault / normal answer.

URL LAYOUT
    {prefix}/v1/{endpoint}   (/v2/... is accepted identically)
    The prefix is zero or more path segments "name=value" (percent-decoded).
    Unknown names -> 400 text "unknown prefix parameter: NAME"; bad values ->
    400 text "bad value for NAME".
      GET /v1/batches?cursor=C&limit=N          endpoint "list"
      GET /v1/batches/{id}                      endpoint "details"
      GET /v1/batches/{id}/progress             endpoint "progress"
      GET /v1/tasks?cursor=C&limit=N            endpoint "tasks"
      GET /v1/tasks/{id}                        endpoint "task"
      GET /v1/tasks/{id}/results                endpoint "results"
    list: newest first; limit default 100, 1..1000; bad limit or bad cursor ->
      400 Error400 ({"status":"failed","msg":"Invalid request parameters",
      "error":"PARAMETERS_FAILED_JSON_SCHEMA_VALIDATION_ERROR","details":{..}}).
      Body {"data":[{id,account_name,completed,created_at,tasks[,username]}..],
            "pagination":{"has_next":b,"next_cursor":s|null,"total":n}}
      "tasks" = ids of the batch's non-null tasks, in order.
      Cursor = "cur_" + urlsafe base64 (no "=" padding) of the decimal offset,
      e.g. offset 5 -> "cur_NQ", offset 10 -> "cur_MTA".  Only canonical
      cursors with 0 <= offset < total are valid.  The last page has
      has_next false and next_cursor null.
    details: {"status":"success",id,completed,completed_count,progress,
      created_at[,completed_at],tasks:[task|null,..]}; task keys in seed order
      id,state,output_url,status_url,download_url,error,error_type,created_at,
      modified_at,account_name,input,_query,batch_id,status_code,api_type
      (optional keys are absent, never null, where they do not apply).
    progress: {"status":"success",id,completed,completed_count[,completed_at],
      progress}.
    tasks: every non-null task of every batch, batches newest first, tasks in
      array order; paged exactly as list (same limit and cursor rules);
      body {"data":[task..],"pagination":{..}}, tasks as in details.
    task: {"task": task} (the same object as in details).
    results: a task in state success|completed -> its result,
      {"status":"success","task_id","url","status_code","data":{"html_content",
      "parsing":{"title","price","tags":[..]}}} ("url" from input.url or
      null; price = k * 1.25; batch 5's tasks have non-ASCII titles);
      other states -> 404 {"status":"failed","error":"Task results not found"}.
    Unknown task -> 404 {"status":"failed","error":"Task not found"}.
    Unknown batch -> 404 {"status":"failed","error":"Batch not found"};
    unknown path -> 404 {"status":"failed","error":"Not found"};
    non-GET on an API path -> 405 {"status":"failed","msg":"Method Not Allowed"}.
    Derived values are identical on all routes: completed_count = tasks in
    state success|error; progress = round(completed_count / non-null tasks, 3)
    (an integral value is written as 0 / 1; empty batch -> 0); completed = at
    least one task and all are success|error; completed_at (only when
    completed) = max modified_at (created_at for tasks without modified_at).

DEFAULT DATA SET (12 batches, fixed timestamps, no randomness)
    batch n id  b1000000-0000-4000-8000-{n:012x}
    task k id   7a000000-{n:04x}-4000-8000-{k:012x}  (k = 1-based array position)
    batch created_at 2026-03-01T00:00:00.000Z + n hours; task created_at =
    batch created_at + k s; modified_at = task created_at + 5 min.
    _query is null for odd k, {"engine":api_type,"k":k} for even k.
     1 alice        [success x3]                          completed
     2 bob          []                                     not completed, 0
     3 carol        1000 tasks cycling pending,queued,in_progress,success,error
                    api_type cycling web,serp,ecommerce   400 done, 0.4
     4 dave         [success,null,error,null,success] (task ids k=1,3,5) completed
     5 björn — 東京 ✓  (username; account_name "Zürich Labs")
                    [error "Zeitüberschreitung — タイムアウト" with input
                    {"query":"caf\\u00e9 \\ud83d\\ude00"} written with \\u escapes,
                    success with raw UTF-8 input, success]  completed
     6 (no username) [pending,queued,pending], required keys only   0
     7 erin         [success,completed,failed,error]      2 done, 0.5
     8 frank        [success,success]                     completed
     9 grace        [success,error,in_progress]           0.667
    10 heidi        [error,success,error,success]         completed
    11 (no username) account "globex" [pending,queued,in_progress,success,error] 0.4
    12 ivan         [success,success,error]               completed
    --batches N --tasks-per-batch M generates a bench set instead: same id
    scheme, username "user{n%17}", ~10% error tasks, every third batch has
    pending/in_progress tasks (not completed), the others are completed.

CONTROL ENDPOINTS (no auth, never counted, never delayed)
    GET /_mock/count[?endpoint=list|details|progress|tasks|task|results]
        -> text integer
    GET /_mock/stats -> {"total","list","details","progress","tasks","task",
                         "results","unauthorized",
                         "by_path":{"/v1/batches":n,..}}  (path w/o prefix/query)
    GET|POST /_mock/reset -> "ok": zero counters, after/times state, last
                         headers, and undo task_state changes
    POST /_mock/task_state {"batch_id","task_id","state"} (or GET with query
        params) -> "ok" | 404 "not found": set the state, set the task's
        modified_at to 2026-06-01T12:00:00.000Z, recompute derived values.
    GET /_mock/last_headers -> headers of the last API request, names
        lower-cased, authorization value "<redacted>", plus "authorized":bool
    GET /_mock/requests -> [{"path","t"},..]: the API requests since the last
        reset, in arrival order (at most the last 2,000,000).  "path" is the
        request target as sent (fault prefix and query string included);
        "t" is time.monotonic() when its headers had been read (CLOCK_MONOTONIC,
        comparable with other processes' monotonic clocks), before any latency.
        Control requests are not logged; unauthorized and faulted ones are.
    Counted: every non-/_mock request, including 400/401/404/405 and faults.

FAULTS (prefix segments)
    fault=KIND   on=list|details|progress (only those requests are faulted)
    after=N      the first N matching requests behave normally
    times=N      fault at most N matching requests, then behave normally
    Counters for after/times are keyed by the full prefix string and cleared
    by /_mock/reset.  latency=MS overrides --latency-ms (also without fault).
    retry_after=V (Retry-After: V verbatim, or "date+S"/"date-S" = an HTTP
    date S seconds from now) and retry_after_ms=V (retry-after-ms: V) are
    added to any faulted response that has headers.
    Unknown kind -> 400 text "unknown fault".  Kinds:
      status          status=CODE (default 500) with the seed body for it:
                      400 Error400, 401 unauthorized, 402 trial expired,
                      403 Forbidden, 404 Batch not found, 408/409, 429 Rate
                      limit exceeded, 500 Error500, others {"status":"failed",
                      "msg":REASON}
      stall_headers   read the request, send nothing for stall=S (default 600)
                      seconds (ends early if the client closes), then close
      stall_body      full Content-Length, first half of the body, stall, close
      reset           close with TCP RST (SO_LINGER 0) without answering
      truncate        full Content-Length, first half of the body, close
      html            status=CODE (default 502) nginx-like text/html page
      not_json        200 application/json "upstream said: this is not json"
      empty           200 Content-Length: 0
      invalid_utf8    200, raw bytes \\xff\\xfe inside a string: list -> first
                      item's account_name; details -> first task's state (or
                      created_at of an empty batch); progress -> id
      nul_escape      same places, containing the escape \\u0000
      wrong_type      list: first item completed "maybe"; details: first
                      task status_code "two hundred" (empty batch:
                      completed_count); progress: completed_count {"n":1}
      deep_nesting    depth=N (default 100000) levels of [...]: details ->
                      first task's input (empty batch: extra key "x");
                      list/progress -> extra key "x" (first item for list)
      huge            valid JSON of about size=BYTES (default 100 MB): the
                      normal body with a leading "padding":"xxx..." field,
                      streamed in 64 KiB chunks
      repeat_cursor   list: has_next true, next_cursor always "cur_MA"
      null_cursor     list: has_next true, next_cursor null
      data_not_array  list: "data":{}; details: "tasks":"oops"
      missing_pagination  list: no "pagination" key
      slow_body       body in chunk=BYTES (default 64) pieces, delay_ms=MS
                      (default 50) apart
      redirect        302, Location http://127.0.0.2:PORT{path w/o prefix}
      shapes          details: "tasks" replaced by SHAPE_TASKS, values in
                      the many spellings JSON and the API allow (timestamps
                      with offsets, fractions, leap days and seconds; numbers
                      as 1e2, -0, 3.0; flat, nested, repeated-key and escaped
                      objects), for checking decoding against PostgreSQL's
      dup_item        list/tasks: each page's first item comes again at its
                      end (a misbehaving API, or an offset list that shifted)
      echo_auth       status=CODE (default 401), {"status":"failed","msg":
                      "bad key: <the request's Authorization header>"}, and
                      the same value in an X-Echo header (an API or proxy that
                      echoes credentials)
      echo_auth_location  302 to http://127.0.0.2:PORT/login?auth=<the
                      Authorization header>
      big_header      the normal answer with one X-Big header of size=BYTES
                      (default 300000) bytes
      many_headers    the normal answer with count=N (default 5000) headers
                      of about 100 bytes each
    ids=upper (with or without a fault): the data set's batch and task ids
    are spelled in upper case everywhere the API writes them, and only the
    upper-case spelling finds a batch or task (the lower-case one is 404).
    tasks/task/results take only data_not_array (tasks: "data":{}; task:
    "task":["oops"]) and wrong_type (task: status_code "two hundred").
    JSON-modifying kinds leave non-200 answers and endpoints they do not
    apply to unchanged.  Only stall_body and truncate send "Connection: close"
    (stall_headers and reset close without sending any header).
"""

import argparse
import base64
import collections
import copy
import email.utils
import http
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

# --------------------------------------------------------------------------
# data set
# --------------------------------------------------------------------------

BASE_TIME = datetime(2026, 3, 1, tzinfo=timezone.utc)
LATER_TS = "2026-06-01T12:00:00.000Z"
TASK_KEYS = ("id", "state", "output_url", "status_url", "download_url", "error",
             "error_type", "created_at", "modified_at", "account_name", "input",
             "_query", "batch_id", "status_code", "api_type")
DONE_STATES = ("success", "error")
API_TYPES = ("web", "serp", "ecommerce")
ENDPOINTS = ("list", "details", "progress", "tasks", "task", "results")


class RawJSON:
    """A value emitted verbatim (used for the \\u-escaped input of batch 5)."""
    registry = {}

    def __init__(self, text):
        self.placeholder = "@@RAW@@%d" % len(RawJSON.registry)
        RawJSON.registry[self.placeholder] = text.encode("utf-8")

    def __deepcopy__(self, memo):
        return self


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                            default=lambda o: o.placeholder)


def dumps(obj):
    out = _encoder.encode(obj).encode("utf-8")
    if b"@@RAW@@" in out:
        for ph, raw in RawJSON.registry.items():
            out = out.replace(b'"' + ph.encode() + b'"', raw)
    return out


def iso(dt):
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (dt.year, dt.month, dt.day, dt.hour,
                                                  dt.minute, dt.second, dt.microsecond // 1000)


def batch_id(n):
    return "b1000000-0000-4000-8000-%012x" % n


def task_id(n, k):
    return "7a000000-%04x-4000-8000-%012x" % (n, k)


def make_task(n, k, state, api_type="web", full=True, account="acme",
              inp=None, error=None, error_type=None, status_code=None):
    bid, tid = batch_id(n), task_id(n, k)
    created = BASE_TIME + timedelta(hours=n, seconds=k)
    status_url = "https://sdk.nimbleway.com/api/v2/tasks/" + tid
    ok = state in ("success", "completed")
    if state == "error" and error is None:
        error, error_type = "Connection timeout", "timeout_error"
    if status_code is None:
        status_code = 200 if ok else 500 if state == "error" else None
    t = {"id": tid, "state": state}
    if full and ok:
        t["output_url"] = "s3://nimble-results/%s/%s.json" % (bid, tid)
    t["status_url"] = status_url
    if full and ok:
        t["download_url"] = status_url + "/results"
    if full and error is not None:
        t["error"] = error
        t["error_type"] = error_type
    t["created_at"] = iso(created)
    if full:
        t["modified_at"] = iso(created + timedelta(minutes=5))
        t["account_name"] = account
    t["input"] = inp if inp is not None else {"url": "https://example.com/p/%d" % k,
                                              "render": False}
    t["_query"] = None if k % 2 else {"engine": api_type, "k": k}
    if full:
        t["batch_id"] = bid
        if status_code is not None:
            t["status_code"] = status_code
        t["api_type"] = api_type
    return t


def make_batch(n, tasks, username=None, account="acme"):
    b = {"id": batch_id(n), "account_name": account,
         "created_at": iso(BASE_TIME + timedelta(hours=n)), "tasks": tasks}
    if username is not None:
        b["username"] = username
    return b


def make_result(t):
    """A finished task's result (GET /tasks/{id}/results), or None."""
    if t["state"] not in ("success", "completed"):
        return None
    n, k = int(t["id"][9:13], 16), int(t["id"][-12:], 16)
    inp = t["input"] if isinstance(t["input"], dict) else {}
    title = ("Produkt %d — 東京" % k) if n == 5 else "Product %d" % k
    return {"status": "success", "task_id": t["id"], "url": inp.get("url"),
            "status_code": t.get("status_code", 200),
            "data": {"html_content": "<html><title>%s</title></html>" % title,
                     "parsing": {"title": title, "price": k * 1.25,
                                 "tags": ["t%d" % (k % 3), "batch%d" % n]}}}


def simple_batch(n, states, username, account="acme"):
    return make_batch(n, [make_task(n, k, s, API_TYPES[(k - 1) % 3], account=account)
                          for k, s in enumerate(states, 1)], username, account)


def default_dataset():
    cyc = ("pending", "queued", "in_progress", "success", "error")
    b = [simple_batch(1, ["success"] * 3, "alice"),
         make_batch(2, [], "bob"),
         simple_batch(3, [cyc[(k - 1) % 5] for k in range(1, 1001)], "carol"),
         make_batch(4, [make_task(4, 1, "success"), None,
                        make_task(4, 3, "error", "serp"), None,
                        make_task(4, 5, "success", "ecommerce")], "dave")]
    zl = "Zürich Labs"
    b.append(make_batch(5, [
        make_task(5, 1, "error", account=zl, error="Zeitüberschreitung — タイムアウト",
                  error_type="timeout_error",
                  inp=RawJSON('{"query":"caf\\u00e9 \\ud83d\\ude00"}')),
        make_task(5, 2, "success", "serp", account=zl,
                  inp={"query": "Straße 東京", "render": False}),
        make_task(5, 3, "success", "ecommerce", account=zl)],
        "björn — 東京 ✓", zl))
    b.append(make_batch(6, [make_task(6, k, s, full=False)
                            for k, s in enumerate(["pending", "queued", "pending"], 1)]))
    b.append(make_batch(7, [
        make_task(7, 1, "success"), make_task(7, 2, "completed", "serp"),
        make_task(7, 3, "failed", "ecommerce", error="Upstream refused",
                  error_type="upstream_error", status_code=502),
        make_task(7, 4, "error")], "erin"))
    b.append(simple_batch(8, ["success", "success"], "frank"))
    b.append(simple_batch(9, ["success", "error", "in_progress"], "grace"))
    b.append(simple_batch(10, ["error", "success", "error", "success"], "heidi"))
    b.append(simple_batch(11, list(cyc), None, "globex"))
    b.append(simple_batch(12, ["success", "success", "error"], "ivan"))
    return b


def bench_dataset(nb, nt):
    out = []
    for n in range(1, nb + 1):
        states = []
        for k in range(1, nt + 1):
            if n % 3 == 0 and k % 7 == 0:
                states.append("pending")
            elif n % 3 == 0 and k % 11 == 0:
                states.append("in_progress")
            else:
                states.append("error" if (n * 31 + k * 17) % 10 == 0 else "success")
        out.append(simple_batch(n, states, "user%d" % (n % 17)))
    return out


def summarize(batch):
    tasks = [t for t in batch["tasks"] if t is not None]
    done = sum(1 for t in tasks if t["state"] in DONE_STATES)
    completed = bool(tasks) and done == len(tasks)
    progress = round(done / len(tasks), 3) if tasks else 0
    if progress == int(progress):
        progress = int(progress)
    completed_at = None
    if completed:
        completed_at = max(t.get("modified_at", t["created_at"]) for t in tasks)
    return completed, done, progress, completed_at


def render(batch):
    """-> (details bytes, progress bytes, list item bytes)"""
    completed, done, progress, completed_at = summarize(batch)
    d = {"status": "success", "id": batch["id"], "completed": completed,
         "completed_count": done, "progress": progress,
         "created_at": batch["created_at"]}
    if completed_at is not None:
        d["completed_at"] = completed_at
    d["tasks"] = batch["tasks"]
    p = {"status": "success", "id": batch["id"], "completed": completed,
         "completed_count": done}
    if completed_at is not None:
        p["completed_at"] = completed_at
    p["progress"] = progress
    item = {"id": batch["id"], "account_name": batch["account_name"],
            "completed": completed, "created_at": batch["created_at"],
            "tasks": [t["id"] for t in batch["tasks"] if t is not None]}
    if "username" in batch:
        item["username"] = batch["username"]
    return dumps(d), dumps(p), dumps(item)


def encode_cursor(off):
    return "cur_" + base64.urlsafe_b64encode(str(off).encode()).decode().rstrip("=")


def decode_cursor(cur, total):
    try:
        raw = cur[4:]
        off = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii"))
    except Exception:
        return None
    if encode_cursor(off) != cur or off < 0 or (off >= total and off != 0):
        return None
    return off


# --------------------------------------------------------------------------
# server state
# --------------------------------------------------------------------------

REQUEST_LOG_MAX = 2000000  # entries kept for /_mock/requests


class MockState:
    def __init__(self, batches):
        self.lock = threading.Lock()
        self.batches = batches[::-1]  # newest first
        self.index = {b["id"]: i for i, b in enumerate(self.batches)}
        self.rendered = [render(b) for b in self.batches]
        self.list_items = [r[2] for r in self.rendered]
        self._index_tasks()
        self.originals = {}
        self.reset()

    def _index_tasks(self):
        """The /tasks list, and where each task is (batch index, position)."""
        self.task_index, items = {}, []
        for i, b in enumerate(self.batches):
            for pos, t in enumerate(b["tasks"]):
                if t is not None:
                    self.task_index[t["id"]] = (i, pos)
                    items.append(dumps(t))
        self.task_items = items

    def task(self, tid):
        with self.lock:
            where = self.task_index.get(tid)
            return None if where is None else self.batches[where[0]]["tasks"][where[1]]

    def reset(self):
        with self.lock:
            self.counts = {"total": 0, "list": 0, "details": 0, "progress": 0,
                           "tasks": 0, "task": 0, "results": 0, "unauthorized": 0}
            self.by_path = {}
            self.requests = collections.deque(maxlen=REQUEST_LOG_MAX)
            self.fault_seen = {}
            self.last_headers = {}
            for i, orig in self.originals.items():
                self.batches[i] = orig
                self._rerender(i)
            self.originals = {}

    def _rerender(self, i):
        self.rendered[i] = render(self.batches[i])
        items = list(self.list_items)
        items[i] = self.rendered[i][2]
        self.list_items = items  # swap atomically for readers
        self._index_tasks()

    def record(self, endpoint, path, headers, authorized, target=None, t=None):
        with self.lock:
            if target is not None:
                self.requests.append((target, t))
            self.counts["total"] += 1
            if endpoint:
                self.counts[endpoint] += 1
            if not authorized:
                self.counts["unauthorized"] += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            self.last_headers = headers

    def should_fault(self, key, after, times):
        with self.lock:
            i = self.fault_seen.get(key, 0)
            self.fault_seen[key] = i + 1
        return i >= after and (times is None or i - after < times)

    def set_task_state(self, bid, tid, state):
        with self.lock:
            i = self.index.get(bid)
            if i is None:
                return False
            batch = self.batches[i]
            pos = next((j for j, t in enumerate(batch["tasks"])
                        if t is not None and t["id"] == tid), None)
            if pos is None:
                return False
            if i not in self.originals:
                self.originals[i] = copy.deepcopy(batch)
            t = dict(batch["tasks"][pos], state=state, modified_at=LATER_TS)
            batch["tasks"][pos] = {k: t[k] for k in TASK_KEYS if k in t}
            self._rerender(i)
            return True


# --------------------------------------------------------------------------
# canned bodies
# --------------------------------------------------------------------------

def error400(details=None):
    if details is None:
        details = {"schema_validation_errors": [{
            "instancePath": "", "schemaPath": "#/required", "keyword": "required",
            "params": {"missingProperty": "search_engine"},
            "message": "must have required property 'search_engine'"}]}
    return dumps({"status": "failed", "msg": "Invalid request parameters",
                  "error": "PARAMETERS_FAILED_JSON_SCHEMA_VALIDATION_ERROR",
                  "details": details})


def param_error(name, keyword, message):
    return error400({"schema_validation_errors": [{
        "instancePath": "/" + name, "schemaPath": "#/properties/%s/%s" % (name, keyword),
        "keyword": keyword, "params": {}, "message": message}]})


UNAUTHORIZED = dumps({"status": "failed", "msg": "Unauthorized: invalid or missing API key"})
BATCH_NOT_FOUND = dumps({"status": "failed", "error": "Batch not found"})
TASK_NOT_FOUND = dumps({"status": "failed", "error": "Task not found"})
RESULTS_NOT_FOUND = dumps({"status": "failed", "error": "Task results not found"})
NOT_FOUND = dumps({"status": "failed", "error": "Not found"})
METHOD_NOT_ALLOWED = dumps({"status": "failed", "msg": "Method Not Allowed"})
ERROR500 = dumps({"success": "false", "task_id": "1ed1dbeb-8f34-4fd1-bb2d-a72bacae2ef3",
                  "message": "can't download the query response - please try again"})
STATUS_MSGS = {402: "trial expired", 403: "Forbidden: account blocked",
               408: "Request timeout", 409: "Conflict", 429: "Rate limit exceeded",
               555: "Unknown Error"}


def reason(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return STATUS_MSGS.get(code, "Error %d" % code)


def status_body(code):
    if code == 400:
        return error400()
    if code == 401:
        return UNAUTHORIZED
    if code == 404:
        return BATCH_NOT_FOUND
    if code == 500:
        return ERROR500
    return dumps({"status": "failed", "msg": STATUS_MSGS.get(code, reason(code))})


def html_page(code):
    line = "%d %s" % (code, reason(code))
    return ("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n"
            "<center><h1>%s</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
            "</body>\r\n</html>\r\n" % (line, line)).encode()


PREFIX_PARAMS = {"fault": str, "on": str, "after": int, "times": int, "status": int,
                 "retry_after": str, "retry_after_ms": str, "stall": float,
                 "delay_ms": float, "chunk": int, "depth": int, "size": int,
                 "latency": float, "count": int, "ids": str}
FAULT_KINDS = {"status", "stall_headers", "stall_body", "reset", "truncate", "html",
               "not_json", "empty", "invalid_utf8", "nul_escape", "wrong_type",
               "deep_nesting", "huge", "repeat_cursor", "null_cursor",
               "data_not_array", "missing_pagination", "slow_body", "redirect",
               "shapes", "dup_item", "echo_auth", "echo_auth_location",
               "big_header", "many_headers"}
JSON_FAULTS = {"invalid_utf8", "nul_escape", "wrong_type", "deep_nesting",
               "repeat_cursor", "null_cursor", "data_not_array", "missing_pagination",
               "shapes", "dup_item"}
# the ids of the data set, which ids=upper spells in upper case
ID_PATTERN = re.compile(rb"\b(?:b1000000-0000-4000-8000-[0-9a-f]{12}|"
                        rb"7a000000-[0-9a-f]{4}-4000-8000-[0-9a-f]{12})\b")
BAD_UTF8, DEEP = "@@INVALID_UTF8@@", "@@DEEP@@"


def _shape(n, created_at, status_code=None, inp=None, query=None):
    t = {"id": "shape-%02d" % n, "state": "success", "created_at": created_at}
    if status_code is not None:
        t["status_code"] = RawJSON(status_code)
    if inp is not None:
        t["input"] = RawJSON(inp)
    if query is not None:
        t["_query"] = RawJSON(query)
    return t


# fault=shapes: one value per spelling (raw JSON text where the spelling
# matters); the decode suite compares each column with PostgreSQL's own
# reading of the same text
SHAPE_TASKS = [
    _shape(1, "2026-03-01T03:00:01.000Z", "200", '{"url":"https://example.com/p/1","render":false}'),
    _shape(2, "2026-03-01T03:00:01Z", "-0", '{}'),
    _shape(3, "2026-03-01T03:00:01.5Z", "3.0", '{"b":1,"a":2}'),
    _shape(4, "2026-03-01T03:00:01.123456Z", "1e2", '{"aa":1,"b":2,"a":3,"ab":4,"ba":5}'),
    _shape(5, "2026-03-01T03:00:01.1234567Z", "1E+2",
           '{"url":"x","render":true,"n":null,"f":1.5,"e":1e3,"neg":-0,'
           '"big":12345678901234567890,"tiny":0.000001,"m":-7}'),
    _shape(6, "2026-03-01 03:00:01+05:30", "2147483647", '{"a":1,"a":2}'),
    _shape(7, "2026-03-01T03:00:01.25-08:00", "-2147483648",
           '{' + ','.join('"k%02d":%d' % (i, i) for i in range(17)) + '}'),
    _shape(8, "2024-02-29T23:59:59.999999+00:00", "0",
           '{' + ','.join('"k%02d":"v%d"' % (i, i) for i in range(16)) + '}'),
    _shape(9, "0001-01-01T00:00:00Z", "404", '{"a":{"b":[1,2,{"c":null}]},"d":[]}'),
    _shape(10, "9999-12-31T23:59:59.999999Z", "500", '{"q":"caf\\u00e9","t":"a\\tb"}'),
    _shape(11, "2026-12-31T23:59:60Z", "201", '{"ключ":"значение","k":"✓","ü":"ÿ"}'),
    _shape(12, "2026-03-01T03:00:01z", "202", '[1,"a",null,true,{"x":1}]'),
    _shape(13, "infinity", "203", '"just text"'),
    _shape(14, "2026-03-01T03:00:01+14", "204", '42'),
    _shape(15, "2026-03-01T03:00:01.000+15:59", "205", '{ "sp" : "aced" , "x" : [ ] }'),
    _shape(16, "1999-12-31T23:59:59.000-00:30", "206", '{"":"empty key","ab":true,"aa":false}',
           '{"engine":"serp","k":12}'),
    _shape(17, "2000-02-29T12:00:00Z", "207", '[' + ','.join(str(i) for i in range(40)) + ']'),
]


def parse_prefix(segs):
    p = {}
    for seg in segs:
        name, _, value = seg.partition("=")
        name, value = unquote(name), unquote(value)
        if name not in PREFIX_PARAMS:
            raise ValueError("unknown prefix parameter: " + name)
        try:
            p[name] = PREFIX_PARAMS[name](value)
        except ValueError:
            raise ValueError("bad value for " + name) from None
        if PREFIX_PARAMS[name] is not str and p[name] < 0:
            raise ValueError("bad value for " + name)
    if "fault" in p and p["fault"] not in FAULT_KINDS:
        raise ValueError("unknown fault")
    if p.get("on", "list") not in ENDPOINTS:
        raise ValueError("bad value for on")
    if p.get("ids", "lower") not in ("lower", "upper"):
        raise ValueError("bad value for ids")
    if not 200 <= p.get("status", 500) <= 599:
        raise ValueError("bad value for status")
    return p


def _mid(s, ins):
    return s[:len(s) // 2] + ins + s[len(s) // 2:]


def modify_json(kind, endpoint, body, p):
    if kind == "dup_item":
        # a list page whose first item comes again at its end
        if endpoint in ("list", "tasks"):
            obj = json.loads(body)
            if obj["data"]:
                obj["data"].append(obj["data"][0])
            return dumps(obj)
        return body
    obj = json.loads(body)
    if endpoint == "list":
        first = obj["data"][0] if obj["data"] else None
        if kind in ("invalid_utf8", "nul_escape") and first:
            first["account_name"] = _mid(first["account_name"],
                                         BAD_UTF8 if kind == "invalid_utf8" else "\x00")
        elif kind == "wrong_type" and first:
            first["completed"] = "maybe"
        elif kind == "deep_nesting" and first:
            first["x"] = DEEP
        elif kind == "repeat_cursor":
            obj["pagination"].update(has_next=True, next_cursor=encode_cursor(0))
        elif kind == "null_cursor":
            obj["pagination"].update(has_next=True, next_cursor=None)
        elif kind == "data_not_array":
            obj["data"] = {}
        elif kind == "missing_pagination":
            del obj["pagination"]
        else:
            return body
    elif endpoint == "details":
        task = next((t for t in obj["tasks"] if t is not None), None)
        if kind in ("invalid_utf8", "nul_escape"):
            ins = BAD_UTF8 if kind == "invalid_utf8" else "\x00"
            if task:
                task["state"] = _mid(task["state"], ins)
            else:
                obj["created_at"] = _mid(obj["created_at"], ins)
        elif kind == "wrong_type":
            if task:
                task["status_code"] = "two hundred"
                ordered = {k: task[k] for k in TASK_KEYS if k in task}
                task.clear()
                task.update(ordered)
            else:
                obj["completed_count"] = "two hundred"
        elif kind == "deep_nesting":
            if task:
                task["input"] = DEEP
            else:
                obj["x"] = DEEP
        elif kind == "data_not_array":
            obj["tasks"] = "oops"
        elif kind == "shapes":
            obj["tasks"] = copy.deepcopy(SHAPE_TASKS)
        else:
            return body
    elif endpoint in ("tasks", "task", "results"):
        if kind == "data_not_array" and endpoint == "tasks":
            obj["data"] = {}
        elif kind == "data_not_array" and endpoint == "task":
            obj["task"] = ["oops"]
        elif kind == "wrong_type" and endpoint == "task":
            obj["task"]["status_code"] = "two hundred"
        else:
            return body
    else:  # progress
        if kind in ("invalid_utf8", "nul_escape"):
            obj["id"] = _mid(obj["id"], BAD_UTF8 if kind == "invalid_utf8" else "\x00")
        elif kind == "wrong_type":
            obj["completed_count"] = {"n": 1}
        elif kind == "deep_nesting":
            obj["x"] = DEEP
        else:
            return body
    out = dumps(obj)
    out = out.replace(BAD_UTF8.encode(), b"\xff\xfe")
    if kind == "deep_nesting":
        d = p.get("depth", 100000)
        out = out.replace(b'"' + DEEP.encode() + b'"', b"[" * d + b"]" * d)
    return out


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock_nimble/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self):
        self._dispatch("HEAD")

    # ---- plumbing ----
    def _dispatch(self, method):
        try:
            body = self._read_body()
            path, _, query = self.path.partition("?")
            if path == "/_mock" or path.startswith("/_mock/"):
                self._control(method, path, query, body)
            else:
                self._api(method, path, query)
        except (BrokenPipeError, ConnectionResetError,
                ConnectionAbortedError, TimeoutError, OSError):
            self.close_connection = True

    def _read_body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # not supported: just drop the conn after
            return b""
        n = int(self.headers.get("Content-Length") or 0)
        if n > (1 << 20):
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def _head(self, code, ctype, length, extra=(), close=False):
        self.send_response(code, reason(code))
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")

    def _flush_head(self, more=b""):
        self._headers_buffer.append(more)
        data = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(data)

    def _send(self, code, body, ctype="application/json", extra=(), close=False):
        self._head(code, ctype, len(body), extra, close)
        self._flush_head(b"" if self.command == "HEAD" else body)

    def _text(self, code, text):
        self._send(code, text.encode(), "text/plain; charset=utf-8")

    def _stall(self, seconds):
        """Wait, but return early if the client closes its side."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                r, _, _ = select.select([sock], [], [], min(remaining, 5.0))
                if r and not sock.recv(65536):
                    return
            except (OSError, ValueError):
                return

    # ---- control endpoints ----
    def _control(self, method, path, query, body):
        st = self.server.state
        q = {k: v[0] for k, v in parse_qs(query).items()}
        name = path[len("/_mock/"):]
        if name == "count" and method == "GET":
            ep = q.get("endpoint")
            if ep is not None and ep not in ENDPOINTS:
                return self._text(400, "bad endpoint")
            with st.lock:
                n = st.counts[ep or "total"]
            return self._text(200, str(n))
        if name == "stats" and method == "GET":
            with st.lock:
                d = dict(st.counts, by_path=dict(sorted(st.by_path.items())))
            return self._send(200, dumps(d))
        if name == "requests" and method == "GET":
            with st.lock:
                reqs = list(st.requests)
            return self._send(200, dumps([{"path": pth, "t": t} for pth, t in reqs]))
        if name == "reset" and method in ("GET", "POST"):
            st.reset()
            return self._text(200, "ok")
        if name == "task_state" and method in ("GET", "POST"):
            if method == "POST":
                try:
                    q = json.loads(body or b"{}")
                    assert isinstance(q, dict)
                except Exception:
                    return self._text(400, "bad json")
            if not all(isinstance(q.get(k), str) for k in ("batch_id", "task_id", "state")):
                return self._text(400, "need batch_id, task_id, state")
            if st.set_task_state(q["batch_id"], q["task_id"], q["state"]):
                return self._text(200, "ok")
            return self._text(404, "not found")
        if name == "last_headers" and method == "GET":
            with st.lock:
                h = st.last_headers
            return self._send(200, dumps(h))
        return self._text(404, "not found")

    # ---- API ----
    def _api(self, method, path, query):
        arrived = time.monotonic()
        srv, st = self.server, self.server.state
        parts = path.split("/")[1:] if path.startswith("/") else []
        i = 0
        while i < len(parts) and "=" in parts[i]:
            i += 1
        prefix_segs, rest_parts = parts[:i], parts[i:]
        rest = "/" + "/".join(rest_parts)
        endpoint, bid = None, None
        if len(rest_parts) >= 2 and rest_parts[0] in ("v1", "v2") and rest_parts[1] == "batches":
            if len(rest_parts) == 2:
                endpoint = "list"
            elif len(rest_parts) == 3 and rest_parts[2]:
                endpoint, bid = "details", unquote(rest_parts[2])
            elif len(rest_parts) == 4 and rest_parts[2] and rest_parts[3] == "progress":
                endpoint, bid = "progress", unquote(rest_parts[2])
        elif len(rest_parts) >= 2 and rest_parts[0] in ("v1", "v2") and rest_parts[1] == "tasks":
            if len(rest_parts) == 2:
                endpoint = "tasks"
            elif len(rest_parts) == 3 and rest_parts[2]:
                endpoint, bid = "task", unquote(rest_parts[2])
            elif len(rest_parts) == 4 and rest_parts[2] and rest_parts[3] == "results":
                endpoint, bid = "results", unquote(rest_parts[2])

        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        authorized = scheme.lower() == "bearer" and token.strip() == srv.api_key
        hdrs = {}
        for k, v in self.headers.items():
            hdrs[k.lower()] = "<redacted>" if k.lower() == "authorization" else v
        hdrs["authorized"] = authorized
        st.record(endpoint, rest, hdrs, authorized, self.path, arrived)

        try:
            p = parse_prefix(prefix_segs)
        except ValueError as e:
            return self._text(400, str(e))
        latency = p.get("latency", srv.latency_ms)
        if latency > 0:
            time.sleep(latency / 1000.0)
        if not authorized:
            return self._send(401, UNAUTHORIZED)
        if endpoint is None:
            return self._send(404, NOT_FOUND)
        if method != "GET":
            return self._send(405, METHOD_NOT_ALLOWED, extra=[("Allow", "GET")])

        upper = p.get("ids") == "upper"
        if upper and bid is not None:
            # the API knows its ids in upper case only
            bid = bid.lower() if bid == bid.upper() else "\0not-an-id"
        code, body = self._normal(endpoint, bid, query)
        if upper:
            body = ID_PATTERN.sub(lambda m: m.group(0).upper(), body)
        kind = p.get("fault")
        if kind and p.get("on", endpoint) == endpoint and st.should_fault(
                "/".join(prefix_segs), p.get("after", 0), p.get("times")):
            return self._fault(kind, p, endpoint, code, body, rest, query)
        return self._send(code, body)

    def _normal(self, endpoint, bid, query):
        st = self.server.state
        if endpoint in ("list", "tasks"):
            q = parse_qs(query, keep_blank_values=True)
            items = st.list_items if endpoint == "list" else st.task_items
            total = len(items)
            limit = 100
            if "limit" in q:
                try:
                    limit = int(q["limit"][0])
                    if not 1 <= limit <= 1000:
                        raise ValueError
                except ValueError:
                    return 400, param_error("limit", "maximum",
                                            "must be an integer between 1 and 1000")
            off = 0
            if "cursor" in q:
                off = decode_cursor(q["cursor"][0], total)
                if off is None:
                    return 400, param_error("cursor", "format", "invalid cursor")
            has_next = off + limit < total
            pag = {"has_next": has_next,
                   "next_cursor": encode_cursor(off + limit) if has_next else None,
                   "total": total}
            return 200, (b'{"data":[' + b",".join(items[off:off + limit]) +
                         b'],"pagination":' + dumps(pag) + b"}")
        if endpoint in ("task", "results"):
            t = st.task(bid)
            if t is None:
                return 404, TASK_NOT_FOUND
            if endpoint == "task":
                return 200, dumps({"task": t})
            result = make_result(t)
            return (200, dumps(result)) if result else (404, RESULTS_NOT_FOUND)
        i = st.index.get(bid)
        if i is None:
            return 404, BATCH_NOT_FOUND
        return 200, st.rendered[i][0 if endpoint == "details" else 1]

    def _fault(self, kind, p, endpoint, code, body, rest, query):
        extra = []
        ra = p.get("retry_after")
        if ra is not None:
            if ra.startswith("date+") or ra.startswith("date-"):
                try:
                    ra = email.utils.formatdate(time.time() + float(ra[4:]), usegmt=True)
                except ValueError:
                    pass
            extra.append(("Retry-After", ra))
        if p.get("retry_after_ms") is not None:
            extra.append(("retry-after-ms", p["retry_after_ms"]))

        if kind == "status":
            c = p.get("status", 500)
            return self._send(c, status_body(c), extra=extra)
        if kind == "echo_auth":
            c = p.get("status", 401)
            auth = self.headers.get("Authorization") or self.headers.get("X-API-Key") or ""
            return self._send(c, dumps({"status": "failed", "msg": "bad key: " + auth}),
                              extra=extra + [("X-Echo", auth)])
        if kind == "echo_auth_location":
            auth = self.headers.get("Authorization") or self.headers.get("X-API-Key") or ""
            loc = "http://127.0.0.2:%d/login?auth=%s" % (self.server.server_address[1], auth)
            return self._send(302, b"", extra=extra + [("Location", loc)])
        if kind == "big_header":
            n = max(1, p.get("size", 300000))
            return self._send(code, body, extra=extra + [("X-Big", "x" * n)])
        if kind == "many_headers":
            n = max(1, p.get("count", 5000))
            return self._send(code, body,
                              extra=extra + [("X-Many-%d" % i, "y" * 90) for i in range(n)])
        if kind == "html":
            c = p.get("status", 502)
            return self._send(c, html_page(c), "text/html", extra=extra)
        if kind == "not_json":
            return self._send(200, b"upstream said: this is not json", extra=extra)
        if kind == "empty":
            return self._send(200, b"", extra=extra)
        if kind == "redirect":
            loc = "http://127.0.0.2:%d%s%s" % (self.server.server_address[1], rest,
                                                "?" + query if query else "")
            return self._send(302, b"", extra=extra + [("Location", loc)])
        if kind == "stall_headers":
            self.close_connection = True
            self._stall(p.get("stall", 600))
            return
        if kind == "reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            return
        if kind in JSON_FAULTS:
            if code == 200:
                body = modify_json(kind, endpoint, body, p)
            return self._send(code, body, extra=extra)
        if kind in ("truncate", "stall_body"):
            self.close_connection = True
            self._head(code, "application/json", len(body), extra, close=True)
            self._flush_head(body[:len(body) // 2])
            if kind == "stall_body":
                self._stall(p.get("stall", 600))
            return
        if kind == "slow_body":
            chunk, delay = max(1, p.get("chunk", 64)), p.get("delay_ms", 50) / 1000.0
            self._head(code, "application/json", len(body), extra)
            self._flush_head()
            for off in range(0, len(body), chunk):
                if off:
                    time.sleep(delay)
                self.wfile.write(body[off:off + chunk])
            return
        if kind == "huge":
            head, tail = b'{"padding":"', b'",' + body[1:]
            n = max(0, p.get("size", 100 * 1000 * 1000) - len(head) - len(tail))
            self._head(code, "application/json", len(head) + n + len(tail), extra)
            self._flush_head(head)
            block = b"x" * 65536
            while n > 0:
                self.wfile.write(block[:min(n, len(block))])
                n -= len(block)
            self.wfile.write(tail)
            return


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Mock Nimble batch API (see module docstring)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--api-key", default="test-key")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--batches", type=int)
    ap.add_argument("--tasks-per-batch", type=int)
    ap.add_argument("--quiet", action="store_true", help="no request logging (default)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    a = ap.parse_args(argv)
    if a.host not in ("localhost", "::1") and not a.host.startswith("127."):
        ap.error("--host must be a loopback address")
    if (a.batches is None) != (a.tasks_per_batch is None):
        ap.error("--batches and --tasks-per-batch go together")
    if a.batches is not None:
        if not (1 <= a.batches <= 0xFFFF and 0 <= a.tasks_per_batch):
            ap.error("--batches must be 1..65535, --tasks-per-batch >= 0")
        data = bench_dataset(a.batches, a.tasks_per_batch)
    else:
        data = default_dataset()

    srv = MockServer((a.host, a.port), Handler)
    srv.state = MockState(data)
    srv.api_key = a.api_key
    srv.latency_ms = a.latency_ms
    srv.verbose = a.verbose and not a.quiet
    port = srv.server_address[1]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True)
    t.start()
    if a.port_file:
        tmp = "%s.tmp.%d" % (a.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    print("mock_nimble listening on http://%s:%d" % (a.host, port), flush=True)
    while not stop.wait(0.5):
        pass
    srv.shutdown()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
