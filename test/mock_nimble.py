#!/usr/bin/env python3
"""mock_nimble.py - a deterministic mock of the Nimble batch API for nimble_fdw tests.

Python 3.11 standard library only.  Responses are shaped like the OpenAPI
excerpts of the real API (GET /v1/batches, /v1/batches/{id},
/v1/batches/{id}/progress).  The server, prefix, fault and control machinery
are test/lib/mock_common.py's, shared with test/mock_scrape.py and
test/mock_factcheck.py; this file describes the API and its data.

RUNNING
    python3 test/mock_nimble.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                                [--api-key test-key] [--latency-ms 0]
                                [--window-limit N/S] [--window-headers on|off]
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
    answering each API request (never control requests).  --window-limit N/S
    admits at most N API requests in any S seconds per API key, and
    --window-headers (default on) whether the answers say so: see RATE
    LIMIT below.

AUTH
    API requests need "Authorization: Bearer <api-key>" (scheme is
    case-insensitive, key is exact).  Otherwise 401
    {"status":"failed","msg":"Unauthorized: invalid or missing API key"}.
    Order of checks: prefix syntax (400) -> window limit (429; decided on
    arrival, sent after the latency) -> latency -> auth (401) -> path (404)
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
      created_at[,completed_at],tasks:[task|null,..]}; task keys in the
      excerpts' order id,state,output_url,status_url,download_url,error,
      error_type,created_at,modified_at,account_name,input,_query,batch_id,
      status_code,api_type
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
    task k id   7a000000-{n:04x}-4000-8000-{k:012x}  (k = 1-based array position;
                both from test/lib/ids.py)
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
                         "results","unauthorized",["refused","max_in_window",]
                         "by_path":{"/v1/batches":n,..}}  (path w/o prefix/query)
        refused: the 429s the window limit sent (not fault=status's);
        max_in_window: the most admitted requests seen in one window of a
        limit (a client that kept to it never exceeds N).  Both are there
        only under --window-limit, or once a request under ratelimit= came
        since the last reset (so that the suites' printed stats stay as
        they were).
    GET|POST /_mock/reset -> "ok": zero counters, after/times state, last
                         headers, window limits (their logs, refused,
                         max_in_window), and undo task_state changes
    POST /_mock/task_state {"batch_id","task_id","state"} (or GET with query
        params) -> "ok" | 404 "not found": set the state, set the task's
        modified_at to 2026-06-01T12:00:00.000Z, recompute derived values.
    GET /_mock/last_headers -> headers of the last API request, names
        lower-cased, authorization value "<redacted>", plus "authorized":bool
    GET /_mock/requests -> [{"path","t","status"},..]: the API requests since
        the last reset, in arrival order (at most the last 2,000,000).  "path"
        is the request target as sent (fault prefix and query string
        included); "t" is time.monotonic() when its headers had been read
        (CLOCK_MONOTONIC, comparable with other processes' monotonic clocks),
        before any latency; "status" the status code answered (set when the
        answer's headers go out, so after the latency: null until then, and
        for stall_headers and reset, which send none).  Control requests are
        not logged; unauthorized, refused and faulted ones are.
    Counted: every non-/_mock request, including 400/401/404/405 and faults.

FAULTS (prefix segments)
    fault=KIND   on=ENDPOINT, one of the six above (only those requests are faulted)
    after=N      the first N matching requests behave normally
    times=N      fault at most N matching requests, then behave normally
    Counters for after/times are keyed by the full prefix string and cleared
    by /_mock/reset.  latency=MS overrides --latency-ms (also without fault).
    retry_after=V (Retry-After: V verbatim, or "date+S"/"date-S" = an HTTP
    date S seconds from now) and retry_after_ms=V (retry-after-ms: V) are
    added to any faulted response that has headers.
    Unknown kind -> 400 text "unknown fault".  Kinds:
      status          status=CODE (default 500) with the excerpts' body for it:
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
      shapes          details: "tasks" replaced by SHAPE_TASKS (each with an
                      array "labels" from SHAPE_LABELS), values in
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

RATE LIMIT (prefix segments and flags; the same in all three mocks)
    ratelimit=N/S  at most N (integer >= 1) requests in any S (seconds, > 0)
                 seconds, a sliding window: "/ratelimit=200/5/v1/batches"
                 (the "/" may also be written %2F).  Bad value -> 400 text
                 "bad value for ratelimit".  One budget per (full prefix
                 string, Authorization value): two API keys, or two
                 prefixes, have their own.  An arrival is the request's "t"
                 (time.monotonic() when its headers were read, before any
                 latency).  A request over the limit is refused: 429 with
                 the body of fault=status status=429 and "Retry-After: D",
                 D = the whole seconds (rounded up, at least 1) until the
                 window's oldest arrival leaves it.  A refused request
                 spends no budget (it is not in the window) but is counted,
                 logged in /_mock/requests (status 429) and in "refused".
                 Requests whose prefix is a 400 are not limited.
    --window-limit N/S  the same for every API request, with one budget per
                 Authorization value across all prefixes; a prefix's own
                 ratelimit= replaces it for that prefix's requests.
    Every answer with headers to a request under a limit (admitted or
    refused, 401/404/405 and faulted ones too) announces it:
        ratelimit-limit: N
        ratelimit-remaining: max(0, N - arrivals in the window, this one
                     included if admitted)
        ratelimit-reset: whole seconds (rounded up) until the window's oldest
                     arrival leaves it; 0 if the window is empty
        ratelimit-policy: N;w=S  (S as an integer when it is one: 200;w=5)
    rlheaders=0  keep the limit, send none of those four (an API that
                 enforces without saying); the 429's Retry-After is still
                 sent.  --window-headers off is the same for every request;
                 rlheaders=1 turns them back on for a prefix.
    rl_limit=L rl_remaining=R rl_reset=D rl_policy=TEXT  fixed announcements,
                 enforcing nothing: each given one adds ratelimit-limit,
                 -remaining, -reset or -policy with its value verbatim (percent-
                 decoded, so ";" "=" may be written as is or %3B %3D; CR, LF,
                 NUL -> 400) to every answer with headers of that prefix,
                 replacing a computed one of the same name.
"""
import base64
import copy
import os
import sys
import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import mock_common as mc  # noqa: E402
from ids import ANY_ID, batch_id, task_id, task_numbers  # noqa: E402

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


def iso(dt):
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (dt.year, dt.month, dt.day, dt.hour,
                                                  dt.minute, dt.second, dt.microsecond // 1000)


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
    n, k = task_numbers(t["id"])
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
                  inp=mc.RawJSON('{"query":"caf\\u00e9 \\ud83d\\ude00"}')),
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
    return mc.dumps(d), mc.dumps(p), mc.dumps(item)


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
# canned bodies
# --------------------------------------------------------------------------

def error400(details=None):
    if details is None:
        details = {"schema_validation_errors": [{
            "instancePath": "", "schemaPath": "#/required", "keyword": "required",
            "params": {"missingProperty": "search_engine"},
            "message": "must have required property 'search_engine'"}]}
    return mc.dumps({"status": "failed", "msg": "Invalid request parameters",
                     "error": "PARAMETERS_FAILED_JSON_SCHEMA_VALIDATION_ERROR",
                     "details": details})


def param_error(name, keyword, message):
    return error400({"schema_validation_errors": [{
        "instancePath": "/" + name, "schemaPath": "#/properties/%s/%s" % (name, keyword),
        "keyword": keyword, "params": {}, "message": message}]})


UNAUTHORIZED = mc.dumps({"status": "failed", "msg": "Unauthorized: invalid or missing API key"})
BATCH_NOT_FOUND = mc.dumps({"status": "failed", "error": "Batch not found"})
TASK_NOT_FOUND = mc.dumps({"status": "failed", "error": "Task not found"})
RESULTS_NOT_FOUND = mc.dumps({"status": "failed", "error": "Task results not found"})
NOT_FOUND = mc.dumps({"status": "failed", "error": "Not found"})
METHOD_NOT_ALLOWED = mc.dumps({"status": "failed", "msg": "Method Not Allowed"})
ERROR500 = mc.dumps({"success": "false", "task_id": "1ed1dbeb-8f34-4fd1-bb2d-a72bacae2ef3",
                     "message": "can't download the query response - please try again"})
STATUS_MSGS = {402: "trial expired", 403: "Forbidden: account blocked",
               408: "Request timeout", 409: "Conflict", 429: "Rate limit exceeded",
               555: "Unknown Error"}


# each shape task's "labels": arrays of every kind of element, for the
# decoding of array columns (escapes, nesting, nulls, numbers, literals)
SHAPE_LABELS = [
    '[]',
    '["a","b"]',
    '["caf\\u00e9","a\\"b","tab\\tx","\\ud83d\\ude00",""]',
    '[1,2.5,-0,1e3,12345678901234567890]',
    '[true,false,null]',
    '[[1,2],{"k":"v","n":[null]},[]]',
    '[ "sp" , [ "n" ] , { } ]',
    '[null]',
]


def _shape(n, created_at, status_code=None, inp=None, query=None):
    t = {"id": "shape-%02d" % n, "state": "success", "created_at": created_at,
         "labels": mc.RawJSON(SHAPE_LABELS[(n - 1) % len(SHAPE_LABELS)])}
    if status_code is not None:
        t["status_code"] = mc.RawJSON(status_code)
    if inp is not None:
        t["input"] = mc.RawJSON(inp)
    if query is not None:
        t["_query"] = mc.RawJSON(query)
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


# --------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------

# collection -> its endpoints: the list, one item, the item's sub-resource
# (whose path segment is its name)
ROUTES = {"batches": ("list", "details", "progress"),
          "tasks": ("tasks", "task", "results")}


class NimbleApi(mc.Api):
    name = "mock_nimble"
    description = "Mock Nimble batch API (see module docstring)"
    endpoints = ("list", "details", "progress", "tasks", "task", "results")
    fault_kinds = mc.BASE_FAULTS | mc.HEADER_FAULTS | {
        "repeat_cursor", "null_cursor", "data_not_array", "missing_pagination", "shapes",
        "dup_item"}
    prefix_params = dict(mc.PREFIX_PARAMS, count=int, ids=str)
    prefix_choices = {"ids": ("lower", "upper")}
    secret_headers = ("authorization",)
    unauthorized = UNAUTHORIZED
    not_found = NOT_FOUND
    method_not_allowed = METHOD_NOT_ALLOWED
    controls = ("task_state",)
    # a blank control parameter ("state=", "endpoint=") is not given at all
    keep_blank_control_values = False

    def __init__(self, batches, api_key):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.batches = batches[::-1]  # newest first
        self.index = {b["id"]: i for i, b in enumerate(self.batches)}
        self.rendered = [render(b) for b in self.batches]
        self.list_items = [r[2] for r in self.rendered]
        self._index_tasks()
        self.originals = {}

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--batches", type=int)
        ap.add_argument("--tasks-per-batch", type=int)

    @classmethod
    def from_args(cls, a, ap):
        if (a.batches is None) != (a.tasks_per_batch is None):
            ap.error("--batches and --tasks-per-batch go together")
        if a.batches is not None:
            if not (1 <= a.batches <= 0xFFFF and 0 <= a.tasks_per_batch):
                ap.error("--batches must be 1..65535, --tasks-per-batch >= 0")
            return cls(bench_dataset(a.batches, a.tasks_per_batch), a.api_key)
        return cls(default_dataset(), a.api_key)

    # ---- the data, and task_state's changes to it ----
    def _index_tasks(self):
        """The /tasks list, and where each task is (batch index, position)."""
        self.task_index, items = {}, []
        for i, b in enumerate(self.batches):
            for pos, t in enumerate(b["tasks"]):
                if t is not None:
                    self.task_index[t["id"]] = (i, pos)
                    items.append(mc.dumps(t))
        self.task_items = items

    def task(self, tid):
        with self.lock:
            where = self.task_index.get(tid)
            return None if where is None else self.batches[where[0]]["tasks"][where[1]]

    def _rerender(self, i):
        self.rendered[i] = render(self.batches[i])
        items = list(self.list_items)
        items[i] = self.rendered[i][2]
        self.list_items = items  # swap atomically for readers
        self._index_tasks()

    def control(self, name, q):
        if not all(isinstance(q.get(k), str) for k in ("batch_id", "task_id", "state")):
            return 400, "need batch_id, task_id, state"
        with self.lock:
            i = self.index.get(q["batch_id"])
            if i is None:
                return 404, "not found"
            batch = self.batches[i]
            pos = next((j for j, t in enumerate(batch["tasks"])
                        if t is not None and t["id"] == q["task_id"]), None)
            if pos is None:
                return 404, "not found"
            if i not in self.originals:
                self.originals[i] = copy.deepcopy(batch)
            t = dict(batch["tasks"][pos], state=q["state"], modified_at=LATER_TS)
            batch["tasks"][pos] = {k: t[k] for k in TASK_KEYS if k in t}
            self._rerender(i)
        return 200, "ok"

    def reset_data(self):
        with self.lock:
            for i, orig in self.originals.items():
                self.batches[i] = orig
                self._rerender(i)
            self.originals = {}

    # ---- requests ----
    def authorized(self, headers):
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.api_key

    def route(self, parts):
        """/v1/batches[/{id}[/progress]], /v1/tasks[/{id}[/results]]; /v2 alike."""
        if len(parts) < 2 or parts[0] not in ("v1", "v2") or parts[1] not in ROUTES:
            return None, None
        collection, one, sub = ROUTES[parts[1]]
        if len(parts) == 2:
            return collection, None
        if len(parts) == 3 and parts[2]:
            return one, unquote(parts[2])
        if len(parts) == 4 and parts[2] and parts[3] == sub:
            return sub, unquote(parts[2])
        return None, None

    def normal(self, endpoint, arg, query, prefix):
        upper = prefix.get("ids") == "upper"
        if upper and arg is not None:
            # the API knows its ids in upper case only
            arg = arg.lower() if arg == arg.upper() else "\0not-an-id"
        code, body = self._answer(endpoint, arg, query)
        if upper:
            body = ANY_ID.sub(lambda m: m.group(0).upper(), body)
        return code, body

    def _answer(self, endpoint, arg, query):
        if endpoint in ("list", "tasks"):
            q = mc.query_dict(query)
            items = self.list_items if endpoint == "list" else self.task_items
            total = len(items)
            limit = 100
            if "limit" in q:
                try:
                    limit = int(q["limit"])
                    if not 1 <= limit <= 1000:
                        raise ValueError
                except ValueError:
                    return 400, param_error("limit", "maximum",
                                            "must be an integer between 1 and 1000")
            off = 0
            if "cursor" in q:
                off = decode_cursor(q["cursor"], total)
                if off is None:
                    return 400, param_error("cursor", "format", "invalid cursor")
            has_next = off + limit < total
            pag = {"has_next": has_next,
                   "next_cursor": encode_cursor(off + limit) if has_next else None,
                   "total": total}
            return 200, (b'{"data":[' + b",".join(items[off:off + limit]) +
                         b'],"pagination":' + mc.dumps(pag) + b"}")
        if endpoint in ("task", "results"):
            t = self.task(arg)
            if t is None:
                return 404, TASK_NOT_FOUND
            if endpoint == "task":
                return 200, mc.dumps({"task": t})
            result = make_result(t)
            return (200, mc.dumps(result)) if result else (404, RESULTS_NOT_FOUND)
        i = self.index.get(arg)
        if i is None:
            return 404, BATCH_NOT_FOUND
        return 200, self.rendered[i][0 if endpoint == "details" else 1]

    def error_body(self, code):
        if code == 400:
            return error400()
        if code == 401:
            return UNAUTHORIZED
        if code == 404:
            return BATCH_NOT_FOUND
        if code == 500:
            return ERROR500
        return mc.dumps({"status": "failed", "msg": STATUS_MSGS.get(code, mc.reason(code))})

    def modify_json(self, kind, endpoint, obj, p):
        if kind == "dup_item":
            # a list page whose first item comes again at its end
            if endpoint in ("list", "tasks") and obj["data"]:
                obj["data"].append(obj["data"][0])
                return True
            return False
        if endpoint == "list":
            first = obj["data"][0] if obj["data"] else None
            if kind in ("invalid_utf8", "nul_escape") and first:
                first["account_name"] = mc.mid(first["account_name"], mc.corrupt_text(kind))
            elif kind == "wrong_type" and first:
                first["completed"] = "maybe"
            elif kind == "deep_nesting" and first:
                first["x"] = mc.DEEP
            elif kind == "repeat_cursor":
                obj["pagination"].update(has_next=True, next_cursor=encode_cursor(0))
            elif kind == "null_cursor":
                obj["pagination"].update(has_next=True, next_cursor=None)
            elif kind == "data_not_array":
                obj["data"] = {}
            elif kind == "missing_pagination":
                del obj["pagination"]
            else:
                return False
        elif endpoint == "details":
            task = next((t for t in obj["tasks"] if t is not None), None)
            if kind in ("invalid_utf8", "nul_escape"):
                if task:
                    task["state"] = mc.mid(task["state"], mc.corrupt_text(kind))
                else:
                    obj["created_at"] = mc.mid(obj["created_at"], mc.corrupt_text(kind))
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
                    task["input"] = mc.DEEP
                else:
                    obj["x"] = mc.DEEP
            elif kind == "data_not_array":
                obj["tasks"] = "oops"
            elif kind == "shapes":
                obj["tasks"] = copy.deepcopy(SHAPE_TASKS)
            else:
                return False
        elif endpoint in ("tasks", "task", "results"):
            if kind == "data_not_array" and endpoint == "tasks":
                obj["data"] = {}
            elif kind == "data_not_array" and endpoint == "task":
                obj["task"] = ["oops"]
            elif kind == "wrong_type" and endpoint == "task":
                obj["task"]["status_code"] = "two hundred"
            else:
                return False
        else:  # progress
            if kind in ("invalid_utf8", "nul_escape"):
                obj["id"] = mc.mid(obj["id"], mc.corrupt_text(kind))
            elif kind == "wrong_type":
                obj["completed_count"] = {"n": 1}
            elif kind == "deep_nesting":
                obj["x"] = mc.DEEP
            else:
                return False
        return True


if __name__ == "__main__":
    sys.exit(mc.run(NimbleApi))
