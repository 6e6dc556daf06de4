#!/usr/bin/env python3
"""mock_factcheck.py - a deterministic mock of a fact-check batch API for nimble_fdw tests.

Python 3.11 standard library only.  Shaped like the fact-check API's
documentation page "Get Batch" (GET /v1/batch/:id): its three example
batches and its field list.  The server, prefix, fault and control
machinery are test/lib/mock_common.py's, shared with test/mock_nimble.py
and test/mock_scrape.py.

RUNNING
    python3 test/mock_factcheck.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                                   [--api-key test-key] [--latency-ms 0]
                                   [--batches N] [--quiet | --verbose]

    Binds to a loopback address only.  --port 0 picks a free port, written to
    --port-file (temp file + rename) once listening; then
    "mock_factcheck listening on http://127.0.0.1:PORT" is printed.  Nothing
    else is logged unless --verbose.  SIGTERM / SIGINT exit 0.  HTTP/1.1
    keep-alive, Content-Length on every response except the deliberate faults.
    --latency-ms sleeps before each API request (never control requests).

AUTH
    "Authorization: Bearer <api-key>" (scheme case-insensitive, key exact).
    Otherwise 401 {"error":{"code":"unauthorized","message":"Invalid API key"}}.
    Order of checks: prefix syntax (400) -> latency -> auth (401) -> path (404)
    -> method (405) -> fault / normal answer.

URL LAYOUT
    {prefix}/v1/batch/{id}                    endpoint "details"
    {prefix}/v1/batch?limit=L&offset=O        endpoint "list"
    id is one percent-decoded path segment.  /v1/batches (plural) and
    /v1/batch/ (empty id) -> 404 not_found.
    details: the batch object itself, no envelope, all 20 keys always present,
      in the documentation's order:
        id, name, inputFormat, originalFileName (s|null), status, totalItems,
        processedItems, successCount, failureCount, methodsConfig {..},
        context {..}, totalCostCents, totalInputTokens, totalOutputTokens,
        errorMessage (s|null), validationErrors (null|[{"row":n,"error":s}..]),
        createdAt, startedAt (s|null), completedAt (s|null), expiresAt
      status: pending | processing | completed | failed | cancelled;
      timestamps "YYYY-MM-DDTHH:MM:SSZ"; expiresAt = createdAt + 30 days;
      completedAt is null exactly while pending/processing.
    list (our assumption; the documentation is silent):
      {"data":[batch objects, byte-identical to details],
       "pagination":{"total":N,"limit":L,"offset":O,"hasMore":bool}}
      newest first (createdAt descending, then id descending); limit default
      20, 1..100; offset default 0, >= 0 (decimal digits only); hasMore =
      offset + limit < total; an offset at or past the end -> "data":[] and
      hasMore false.  Bad limit/offset -> 400 invalid_request.
    Errors, all {"error":{"code":C,"message":M}}:
      400 invalid_request "limit must be an integer between 1 and 100" /
          "offset must be a non-negative integer"
      401 unauthorized "Invalid API key"
      404 not_found "Batch not found" (unknown id) / "Not found" (unknown path)
      405 method_not_allowed "Method not allowed" (non-GET; Allow: GET)
      429 rate_limited "Rate limit exceeded";  500 internal_error
      "Internal server error";  402 payment_required;  403 forbidden;
      408 request_timeout;  409 conflict;  502 bad_gateway;
      503 service_unavailable;  504 gateway_timeout;  others "error" + the
      HTTP reason phrase.

DEFAULT DATA SET (8 batches, fixed values; list order = this table)
    id                  status      total processed ok fail  notes
    batch_pending01     pending       25      0      0    0  startedAt, completedAt null
    batch_xyz789        processing   100     45     44    1  example 2; completedAt null
    batch_empty01       completed      0      0      0    0  empty batch; methodsConfig {},
                                                             context {}
    batch_abc123def456  completed     50     50     48    2  example 1, verbatim
    batch_unicode01     completed      3      3      3    0  name "Zürich — 東京 ✓ Faktencheck",
                        originalFileName "prüfung_東京.csv", context.source
                        "café 😀" written with \\u escapes
    batch_bigcost01     completed 1000000 1000000 999000 1000  totalCostCents 3500000000,
                        totalInputTokens 6000000000, totalOutputTokens 4294967296 (> 2^31)
    batch_cancel01      cancelled    200     80     79    1  errorMessage "Batch cancelled by user"
    batch_failed123     failed        10      0      0    0  example 3: errorMessage
                        "3 validation error(s)", validationErrors rows 1, 5, 8;
                        startedAt null
    createdAt: batch_failed123 2024-01-11T10:00:00Z, then one day apart in
    reverse table order up to batch_pending01 2024-01-18T10:00:00Z (example
    1, batch_abc123def456, is 2024-01-15T10:00:00Z).  Null originalFileName:
    batch_pending01, batch_abc123def456, batch_cancel01.  A walk with limit=3
    takes 3 pages (3, 3, 2).
    --batches N generates a bench set instead: id "batch_{n:08d}", name
    "Bench batch n", createdAt 2024-01-01T00:00:00Z + n minutes (so batch N
    is first), totalItems 50 + n % 50; n % 10 == 0 processing (half done),
    else n % 17 == 0 failed, else completed with failureCount n % 3.

CONTROL ENDPOINTS (no auth, never counted, never delayed)
    GET /_mock/count[?endpoint=list|details]  -> text integer
    GET /_mock/stats -> {"total","list","details","unauthorized","by_path":{..}}
    GET|POST /_mock/reset -> "ok" (also undoes batch_state changes)
    GET /_mock/last_headers -> names lower-cased, authorization and x-api-key
        values "<redacted>", plus "authorized": bool
    GET /_mock/requests -> [{"path","t"},..] (as mock_nimble)
    POST /_mock/batch_state {"id", "status"?, and any of name, totalItems,
        processedItems, successCount, failureCount, totalCostCents,
        totalInputTokens, totalOutputTokens, errorMessage, validationErrors,
        startedAt, completedAt, originalFileName, methodsConfig, context}
        (or GET with query parameters: integers in decimal, "null" for null,
        validationErrors/methodsConfig/context as JSON text) -> "ok";
        404 "not found" for an unknown id; 400 for an unknown field or a bad
        value.  Changing status without giving the timestamps: a terminal
        status sets a null completedAt to 2024-06-01T12:00:00Z; pending /
        processing set completedAt null; processing / completed set a null
        startedAt to 2024-06-01T12:00:00Z.

FAULTS (prefix segments; as mock_nimble)
    fault=KIND on=list|details after=N times=N; latency=MS; retry_after=V
    and retry_after_ms=V on faulted answers.  Kinds:
      status          status=CODE (default 500) with the error body above
      stall_headers   send nothing for stall=S (default 600) s, then close
      stall_body      full Content-Length, first half of the body, stall, close
      reset           TCP RST without answering
      truncate        full Content-Length, first half of the body, close
      html            status=CODE (default 502) nginx-like text/html page
      not_json        200 "upstream said: this is not json"
      empty           200 Content-Length: 0
      invalid_utf8    raw bytes \\xff\\xfe in the name (list: first item's)
      nul_escape      the escape \\u0000 at the same place
      wrong_type      processedItems "many" (list: first item's; empty page:
                      pagination.total "many")
      deep_nesting    depth=N levels of [...] as context (list: first item's;
                      empty page: an extra top-level key "x")
      data_not_array  list: "data":{}
      missing_pagination  list: no "pagination" key
      always_more     list: "hasMore":true on every page, even empty ones
      huge            about size=BYTES (default 100 MB) of valid JSON: a leading
                      "padding":"xxx..." key, then the normal body
      slow_body       chunk=BYTES pieces delay_ms=MS apart
      redirect        302 to http://127.0.0.2:PORT{path w/o prefix}
    JSON-modifying kinds leave non-200 answers, and endpoints or empty pages
    they do not apply to, unchanged.
"""

import copy
import json
import os
import re
import sys
import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import mock_common as mc  # noqa: E402

KEYS = ("id", "name", "inputFormat", "originalFileName", "status", "totalItems",
        "processedItems", "successCount", "failureCount", "methodsConfig", "context",
        "totalCostCents", "totalInputTokens", "totalOutputTokens", "errorMessage",
        "validationErrors", "createdAt", "startedAt", "completedAt", "expiresAt")
STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
INT_FIELDS = ("totalItems", "processedItems", "successCount", "failureCount",
              "totalCostCents", "totalInputTokens", "totalOutputTokens")
NULLABLE_STR = ("errorMessage", "startedAt", "completedAt", "originalFileName")
OBJ_FIELDS = ("methodsConfig", "context")
SETTABLE = ("status", "name", "validationErrors") + INT_FIELDS + NULLABLE_STR + OBJ_FIELDS
LATER_TS = "2024-06-01T12:00:00Z"
DIGITS = re.compile(r"[0-9]+")


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def plus(s, **kw):
    return ts(parse_ts(s) + timedelta(**kw))


def fc(bid, name, fmt, fname, status, total, processed, ok, fail, methods, ctx,
       cost, tin, tout, errmsg, verrs, created, started, completed):
    return {"id": bid, "name": name, "inputFormat": fmt, "originalFileName": fname,
            "status": status, "totalItems": total, "processedItems": processed,
            "successCount": ok, "failureCount": fail, "methodsConfig": methods,
            "context": ctx, "totalCostCents": cost, "totalInputTokens": tin,
            "totalOutputTokens": tout, "errorMessage": errmsg, "validationErrors": verrs,
            "createdAt": created, "startedAt": started, "completedAt": completed,
            "expiresAt": plus(created, days=30)}


def default_dataset():
    def day(d):
        return "2024-01-%02dT10:00:00Z" % d
    return [
        fc("batch_failed123", "Bulk import", "csv", "claims.csv", "failed", 10, 0, 0, 0,
           {"reasoning": 1, "tool": 0.5}, {}, 0, 0, 0, "3 validation error(s)",
           [{"row": 1, "error": "Content is required"},
            {"row": 5, "error": "Content exceeds maximum length"},
            {"row": 8, "error": "Content is required"}],
           day(11), None, plus(day(11), seconds=2)),
        fc("batch_cancel01", "Weekly sweep", "json", None, "cancelled", 200, 80, 79, 1,
           {"tool": 1}, {"source": "scheduler", "run": 42}, 320, 40000, 28000,
           "Batch cancelled by user", None, day(12), plus(day(12), seconds=1),
           plus(day(12), minutes=5)),
        fc("batch_bigcost01", "Archive backfill", "csv", "archive_2023.csv", "completed",
           1000000, 1000000, 999000, 1000, {"reasoning": 1, "tool": 0.5},
           {"source": "archive"}, 3500000000, 6000000000, 4294967296, None, None,
           day(13), plus(day(13), seconds=1), plus(day(13), hours=8, minutes=30)),
        fc("batch_unicode01", "Zürich — 東京 ✓ Faktencheck", "csv", "prüfung_東京.csv",
           "completed", 3, 3, 3, 0, {"reasoning": 1},
           mc.RawJSON('{"source":"caf\\u00e9 \\ud83d\\ude00","city":"Zürich"}'),
           15, 900, 600, None, None, day(14), plus(day(14), seconds=1),
           plus(day(14), seconds=20)),
        fc("batch_abc123def456", "Daily fact check", "json", None, "completed", 50, 50, 48, 2,
           {"reasoning": 1, "tool": 0.5}, {"source": "news-aggregator"}, 250, 12500, 8700,
           None, None, day(15), "2024-01-15T10:00:01Z", "2024-01-15T10:02:30Z"),
        fc("batch_empty01", "Empty upload", "json", "empty.json", "completed", 0, 0, 0, 0,
           {}, {}, 0, 0, 0, None, None, day(16), plus(day(16), seconds=1),
           plus(day(16), seconds=2)),
        fc("batch_xyz789", "Article verification", "csv", "articles.csv", "processing",
           100, 45, 44, 1, {"reasoning": 1}, {"source": "cms", "priority": "high"},
           110, 5600, 3900, None, None, day(17), plus(day(17), seconds=1), None),
        fc("batch_pending01", "Queued claims", "json", None, "pending", 25, 0, 0, 0,
           {"reasoning": 1}, {}, 0, 0, 0, None, None, day(18), None, None),
    ]


def bench_dataset(nb):
    base = "2024-01-01T00:00:00Z"
    out = []
    for n in range(1, nb + 1):
        created = plus(base, minutes=n)
        total = 50 + n % 50
        if n % 10 == 0:
            status, processed, fail = "processing", total // 2, 0
        elif n % 17 == 0:
            status, processed, fail = "failed", 0, 0
        else:
            status, processed, fail = "completed", total, n % 3
        out.append(fc("batch_%08d" % n, "Bench batch %d" % n, "json", None, status, total,
                      processed, processed - fail, fail, {"reasoning": 1}, {"n": n},
                      processed * 5, processed * 250, processed * 170,
                      "Processing failed" if status == "failed" else None, None, created,
                      None if status == "failed" else plus(created, seconds=1),
                      None if status == "processing" else plus(created, seconds=30)))
    return out


def err(code, name=None, message=None):
    c, m = mc.error_code(code)
    return mc.dumps({"error": {"code": name or c, "message": message or m}})


def render(b):
    return mc.dumps({k: b[k] for k in KEYS})


class FactcheckApi(mc.Api):
    name = "mock_factcheck"
    endpoints = ("list", "details")
    fault_kinds = mc.BASE_FAULTS | {"data_not_array", "missing_pagination", "always_more"}
    secret_headers = ("authorization", "x-api-key")
    unauthorized = err(401)
    not_found = err(404)
    batch_not_found = err(404, message="Batch not found")
    method_not_allowed = err(405)
    controls = ("batch_state",)

    def __init__(self, batches, api_key):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.batches = sorted(batches, key=lambda b: (b["createdAt"], b["id"]), reverse=True)
        self.index = {b["id"]: i for i, b in enumerate(self.batches)}
        self.rendered = [render(b) for b in self.batches]
        self.originals = {}

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--batches", type=int)

    @classmethod
    def from_args(cls, a, ap):
        if a.batches is not None:
            if not 1 <= a.batches <= 99999999:
                ap.error("--batches must be 1..99999999")
            return cls(bench_dataset(a.batches), a.api_key)
        return cls(default_dataset(), a.api_key)

    def authorized(self, headers):
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.api_key

    def route(self, parts):
        if len(parts) >= 2 and parts[0] == "v1" and parts[1] == "batch":
            if len(parts) == 2:
                return "list", None
            if len(parts) == 3 and parts[2]:
                return "details", unquote(parts[2])
        return None, None

    def normal(self, endpoint, arg, query, prefix):
        rendered = self.rendered  # swapped whole by batch_state / reset
        if endpoint == "details":
            i = self.index.get(arg)
            if i is None:
                return 404, self.batch_not_found
            return 200, rendered[i]
        q = mc.query_dict(query)
        limit, off = 20, 0
        if "limit" in q:
            v = q["limit"]
            if not DIGITS.fullmatch(v) or not 1 <= int(v) <= 100:
                return 400, err(400, message="limit must be an integer between 1 and 100")
            limit = int(v)
        if "offset" in q:
            v = q["offset"]
            if not DIGITS.fullmatch(v):
                return 400, err(400, message="offset must be a non-negative integer")
            off = int(v)
        total = len(rendered)
        pag = {"total": total, "limit": limit, "offset": off, "hasMore": off + limit < total}
        return 200, (b'{"data":[' + b",".join(rendered[off:off + limit]) +
                     b'],"pagination":' + mc.dumps(pag) + b"}")

    def error_body(self, code):
        if code == 401:
            return self.unauthorized
        if code == 404:
            return self.batch_not_found
        return err(code)

    def modify_json(self, kind, endpoint, obj, p):
        if endpoint == "list":
            first = obj["data"][0] if obj["data"] else None
            if kind in ("invalid_utf8", "nul_escape") and first:
                first["name"] = mc.mid(first["name"], mc.corrupt_text(kind))
            elif kind == "wrong_type":
                if first:
                    first["processedItems"] = "many"
                else:
                    obj["pagination"]["total"] = "many"
            elif kind == "deep_nesting":
                if first:
                    first["context"] = mc.DEEP
                else:
                    obj["x"] = mc.DEEP
            elif kind == "data_not_array":
                obj["data"] = {}
            elif kind == "missing_pagination":
                del obj["pagination"]
            elif kind == "always_more":
                obj["pagination"]["hasMore"] = True
            else:
                return False
            return True
        if kind in ("invalid_utf8", "nul_escape"):
            obj["name"] = mc.mid(obj["name"], mc.corrupt_text(kind))
        elif kind == "wrong_type":
            obj["processedItems"] = "many"
        elif kind == "deep_nesting":
            obj["context"] = mc.DEEP
        else:
            return False
        return True

    def control(self, name, q):
        from_json = q.pop("__json__", False)
        bid = q.pop("id", None)
        if not isinstance(bid, str):
            return 400, "need id"
        ch = {}
        for k, v in q.items():
            if k not in SETTABLE:
                return 400, "unknown field " + k
            if not from_json:
                try:
                    if k in INT_FIELDS:
                        v = int(v) if DIGITS.fullmatch(v) else None
                    elif k in NULLABLE_STR and v == "null":
                        v = None
                    elif k in OBJ_FIELDS or k == "validationErrors":
                        v = json.loads(v)
                except ValueError:
                    return 400, "bad value for " + k
            ok = {"status": lambda x: x in STATUSES,
                  "name": lambda x: isinstance(x, str),
                  "validationErrors": lambda x: x is None or (
                      isinstance(x, list) and all(isinstance(e, dict) for e in x))}.get(k)
            if ok is None:
                if k in INT_FIELDS:
                    ok = lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0  # noqa
                elif k in NULLABLE_STR:
                    ok = lambda x: x is None or isinstance(x, str)  # noqa
                else:
                    ok = lambda x: isinstance(x, dict)  # noqa
            if not ok(v):
                return 400, "bad value for " + k
            ch[k] = v
        with self.lock:
            i = self.index.get(bid)
            if i is None:
                return 404, "not found"
            if i not in self.originals:
                self.originals[i] = copy.deepcopy(self.batches[i])
            b = dict(self.batches[i], **ch)
            st = ch.get("status")
            if st is not None:
                if "completedAt" not in ch:
                    if st in TERMINAL:
                        b["completedAt"] = b["completedAt"] or LATER_TS
                    else:
                        b["completedAt"] = None
                if "startedAt" not in ch and st in ("processing", "completed"):
                    b["startedAt"] = b["startedAt"] or LATER_TS
            self.batches[i] = b
            rendered = list(self.rendered)
            rendered[i] = render(b)
            self.rendered = rendered
        return 200, "ok"

    def reset_data(self):
        with self.lock:
            if not self.originals:
                return
            rendered = list(self.rendered)
            for i, orig in self.originals.items():
                self.batches[i] = orig
                rendered[i] = render(orig)
            self.rendered = rendered
            self.originals = {}


if __name__ == "__main__":
    sys.exit(mc.run(FactcheckApi))
