#!/usr/bin/env python3
"""mock_scrape.py - a deterministic mock of a scraping batch API for nimble_fdw tests.

Python 3.11 standard library only.  Shaped like the scraping API's
documentation page "Get Batch Progress" (GET /api/v1/scrape/batch/
{batch_id}/progress): its field tables and its example.  The server,
prefix, fault and control machinery are test/lib/mock_common.py's, shared
with test/mock_nimble.py and test/mock_factcheck.py.

RUNNING
    python3 test/mock_scrape.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                                [--api-key test-key] [--latency-ms 0]
                                [--batches N --jobs-per-batch M]
                                [--quiet | --verbose]

    Binds to a loopback address only.  --port 0 picks a free port, written to
    --port-file (temp file + rename) once listening; then
    "mock_scrape listening on http://127.0.0.1:PORT" is printed.  Nothing else
    is logged unless --verbose.  SIGTERM / SIGINT exit 0.  HTTP/1.1
    keep-alive, Content-Length on every response except the deliberate faults.
    --latency-ms sleeps before each API request (never control requests).

AUTH
    "X-API-Key: <api-key>" (exact value).  "Authorization: Bearer <key>" is
    NOT accepted (the documentation's header table says Bearer; its
    examples, and nimble_fdw, send X-API-Key).  Otherwise 401
    {"success":false,"error":{"code":"unauthorized",
                              "message":"Invalid or missing API key"}}.
    Order of checks: prefix syntax (400) -> latency -> auth (401) -> path (404)
    -> method (405) -> fault / normal answer.

URL LAYOUT
    {prefix}/api/v1/scrape/batch/{batch_id}/progress     endpoint "progress"
    batch_id is one percent-decoded path segment (so "/" in an id is %2F).
    There is no list endpoint: /api/v1/scrape/batch -> 404 not_found.
    200 body, keys in this order (the documentation's):
      {"success":true,"data":{"batch_id":s,"total_urls":n,"completed":n,
        "failed":n,"pending":n,"total_items_extracted":n,
        "estimated_completion":"ISO 8601"|null,
        "jobs":[{"job_id":s,"url":s,"status":s,"items_extracted":n},..]}}
    Job status: "pending" | "processing" | "completed" | "failed".
    Derived from the jobs: total_urls = number of jobs; completed / failed =
    jobs in that status; pending = jobs pending or processing;
    total_items_extracted = sum of items_extracted over all jobs;
    estimated_completion = the batch's fixed estimate while pending > 0, null
    once pending = 0 (also for the empty batch).
    Errors (our assumption; the documentation is silent), all
      {"success":false,"error":{"code":C,"message":M}}:
      401 unauthorized "Invalid or missing API key"
      404 batch_not_found "Batch not found"      (unknown batch id)
      404 not_found "Not found"                  (unknown path)
      405 method_not_allowed "Method not allowed" (non-GET; Allow: GET)
      429 rate_limited "Rate limit exceeded";  500 internal_error
      "Internal server error";  400 invalid_request;  402 payment_required;
      403 forbidden;  408 request_timeout;  409 conflict;  502 bad_gateway;
      503 service_unavailable;  504 gateway_timeout;  others "error" + the
      HTTP reason phrase.

DEFAULT DATA SET (7 batches, fixed values, no randomness)
    batch_id            jobs  completed failed pending items estimated_completion
    batch_xyz789          10        7      1      2    245  2024-12-16T10:35:00Z
        the documentation's example; jobs job_abc123..job_abc132, urls
        https://example.com/page1..page10; job 1 = the example's job
        (completed, 25 items); job 4 failed, job 7 processing, job 10 pending
    batch_empty000         0        0      0      0      0  null
    batch_large300       300      120     60    120   1500  2024-12-16T12:00:00Z
        job k (1..300) job_large300_{k:03d}, url
        https://shop.example.com/products?page=k, status cycling (k-1)%5 ->
        completed, completed, processing, failed, pending; items: completed
        (7k mod 20)+1, processing 2, others 0
    batch_done001          4        4      0      0    100  null
        job_done001_1..4 completed with 10, 20, 30, 40 items
    batch_unicode01        3        2      0      1     10  2024-12-16T11:00:00Z
        urls "https://example.com/Zürich — 東京" (completed 7),
        "https://example.com/café?q=😀" written with \\u escapes
        ("caf\\u00e9?q=\\ud83d\\ude00"; completed 3),
        "https://例え.jp/パス?q=straße" (processing 0)
    batch_failed01         3        1      2      0     12  null
        completed 12, failed 0 (x2): a finished batch with failures
    "batch odd/id ü?&%#"   1        0      0      1      0  2024-12-16T10:00:00Z
        an id that must be percent-encoded:
        /api/v1/scrape/batch/batch%20odd%2Fid%20%C3%BC%3F%26%25%23/progress;
        its job (job_odd_1, https://example.com/a?b=c&d=e, pending)
    --batches N --jobs-per-batch M generates a bench set instead: batch n
    "batch_{n:06d}", job k "job_{n:06d}_{k:06d}", url
    https://example.com/b{n}/p{k}; every third batch (n % 3 == 0) has job k
    pending when k % 7 == 0, processing when k % 11 == 0; other jobs failed
    when (31n + 17k) % 10 == 0 (~10%), else completed with (n + k) % 50
    items; estimated_completion 2024-12-16T10:35:00Z while pending.

CONTROL ENDPOINTS (no auth, never counted, never delayed)
    GET /_mock/count[?endpoint=progress]  -> text integer
    GET /_mock/stats -> {"total","progress","unauthorized","by_path":{..}}
    GET|POST /_mock/reset -> "ok" (also undoes job_state changes)
    GET /_mock/last_headers -> names lower-cased, x-api-key and authorization
        values "<redacted>", plus "authorized": bool
    GET /_mock/requests -> [{"path","t"},..] (as mock_nimble)
    POST /_mock/job_state {"batch_id","job_id","status"[,"items_extracted"]}
        (or GET with those query parameters) -> "ok"; 404 "not found" for an
        unknown batch or job; 400 for a status outside the four above or a
        bad items_extracted.  Sets the job and recomputes the derived fields.

FAULTS (prefix segments; as mock_nimble)
    fault=KIND on=progress after=N times=N; latency=MS; retry_after=V and
    retry_after_ms=V on faulted answers.  Kinds:
      status          status=CODE (default 500) with the error body above
      stall_headers   send nothing for stall=S (default 600) s, then close
      stall_body      full Content-Length, first half of the body, stall, close
      reset           TCP RST without answering
      truncate        full Content-Length, first half of the body, close
      html            status=CODE (default 502) nginx-like text/html page
      not_json        200 "upstream said: this is not json"
      empty           200 Content-Length: 0
      invalid_utf8    raw bytes \\xff\\xfe in the first job's url (empty batch:
                      data.batch_id)
      nul_escape      the escape \\u0000 at the same place
      wrong_type      data.completed "many" and the first job's
                      items_extracted "many"
      deep_nesting    depth=N levels of [...] as an extra key data.x
      data_not_array  data.jobs "oops"
      huge            about size=BYTES (default 100 MB) of valid JSON: a leading
                      "padding":"xxx..." key, then the normal body
      slow_body       chunk=BYTES pieces delay_ms=MS apart
      redirect        302 to http://127.0.0.2:PORT{path w/o prefix}
    JSON-modifying kinds leave non-200 answers unchanged.
"""

import copy
import os
import sys
import threading
from urllib.parse import unquote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import mock_common as mc  # noqa: E402

JOB_STATES = ("pending", "processing", "completed", "failed")


def job(jid, url, status, items=0):
    return {"job_id": jid, "url": url, "status": status, "items_extracted": items}


def batch(bid, eta, jobs):
    return {"batch_id": bid, "eta": eta, "jobs": jobs}


def default_dataset():
    out = []
    items = [25, 40, 30, 0, 35, 45, 0, 50, 20, 0]
    states = ["completed"] * 3 + ["failed"] + ["completed"] * 2 + ["processing"] + \
        ["completed"] * 2 + ["pending"]
    out.append(batch("batch_xyz789", "2024-12-16T10:35:00Z", [
        job("job_abc%d" % (123 + i), "https://example.com/page%d" % (i + 1), s, n)
        for i, (s, n) in enumerate(zip(states, items))]))
    out.append(batch("batch_empty000", "2024-12-16T10:05:00Z", []))
    cyc = ("completed", "completed", "processing", "failed", "pending")
    jobs = []
    for k in range(1, 301):
        s = cyc[(k - 1) % 5]
        n = (7 * k) % 20 + 1 if s == "completed" else 2 if s == "processing" else 0
        jobs.append(job("job_large300_%03d" % k,
                        "https://shop.example.com/products?page=%d" % k, s, n))
    out.append(batch("batch_large300", "2024-12-16T12:00:00Z", jobs))
    out.append(batch("batch_done001", "2024-12-16T09:00:00Z", [
        job("job_done001_%d" % k, "https://example.com/done/%d" % k, "completed", 10 * k)
        for k in range(1, 5)]))
    out.append(batch("batch_unicode01", "2024-12-16T11:00:00Z", [
        job("job_unicode01_1", "https://example.com/Zürich — 東京", "completed", 7),
        job("job_unicode01_2", mc.RawJSON('"https://example.com/caf\\u00e9?q=\\ud83d\\ude00"'),
            "completed", 3),
        job("job_unicode01_3", "https://例え.jp/パス?q=straße", "processing", 0)]))
    out.append(batch("batch_failed01", "2024-12-16T09:30:00Z", [
        job("job_failed01_1", "https://example.com/ok", "completed", 12),
        job("job_failed01_2", "https://example.com/missing", "failed", 0),
        job("job_failed01_3", "https://example.com/forbidden", "failed", 0)]))
    out.append(batch("batch odd/id ü?&%#", "2024-12-16T10:00:00Z", [
        job("job_odd_1", "https://example.com/a?b=c&d=e", "pending", 0)]))
    return out


def bench_dataset(nb, nj):
    out = []
    for n in range(1, nb + 1):
        jobs = []
        for k in range(1, nj + 1):
            if n % 3 == 0 and k % 7 == 0:
                s = "pending"
            elif n % 3 == 0 and k % 11 == 0:
                s = "processing"
            elif (31 * n + 17 * k) % 10 == 0:
                s = "failed"
            else:
                s = "completed"
            jobs.append(job("job_%06d_%06d" % (n, k), "https://example.com/b%d/p%d" % (n, k),
                            s, (n + k) % 50 if s == "completed" else 0))
        out.append(batch("batch_%06d" % n, "2024-12-16T10:35:00Z", jobs))
    return out


def render(b):
    jobs = b["jobs"]
    completed = sum(1 for j in jobs if j["status"] == "completed")
    failed = sum(1 for j in jobs if j["status"] == "failed")
    pending = sum(1 for j in jobs if j["status"] in ("pending", "processing"))
    items = sum(j["items_extracted"] for j in jobs)
    return mc.dumps({"success": True, "data": {
        "batch_id": b["batch_id"], "total_urls": len(jobs), "completed": completed,
        "failed": failed, "pending": pending, "total_items_extracted": items,
        "estimated_completion": b["eta"] if pending else None, "jobs": jobs}})


def err(code, name=None, message=None):
    c, m = mc.error_code(code)
    return mc.dumps({"success": False, "error": {"code": name or c, "message": message or m}})


class ScrapeApi(mc.Api):
    name = "mock_scrape"
    endpoints = ("progress",)
    fault_kinds = mc.BASE_FAULTS | {"data_not_array"}
    secret_headers = ("x-api-key", "authorization")
    unauthorized = err(401, message="Invalid or missing API key")
    not_found = err(404)
    batch_not_found = err(404, "batch_not_found", "Batch not found")
    method_not_allowed = err(405)
    controls = ("job_state",)

    def __init__(self, batches, api_key):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.batches = {b["batch_id"]: b for b in batches}
        self.rendered = {k: render(b) for k, b in self.batches.items()}
        self.originals = {}

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--batches", type=int)
        ap.add_argument("--jobs-per-batch", type=int)

    @classmethod
    def from_args(cls, a, ap):
        if (a.batches is None) != (a.jobs_per_batch is None):
            ap.error("--batches and --jobs-per-batch go together")
        if a.batches is not None:
            if not (1 <= a.batches <= 999999 and 0 <= a.jobs_per_batch <= 999999):
                ap.error("--batches must be 1..999999, --jobs-per-batch 0..999999")
            return cls(bench_dataset(a.batches, a.jobs_per_batch), a.api_key)
        return cls(default_dataset(), a.api_key)

    def authorized(self, headers):
        return headers.get("X-API-Key") == self.api_key

    def route(self, parts):
        if (len(parts) == 6 and parts[:4] == ["api", "v1", "scrape", "batch"]
                and parts[4] and parts[5] == "progress"):
            return "progress", unquote(parts[4])
        return None, None

    def normal(self, endpoint, arg, query, prefix):
        body = self.rendered.get(arg)
        if body is None:
            return 404, self.batch_not_found
        return 200, body

    def error_body(self, code):
        if code == 401:
            return self.unauthorized
        if code == 404:
            return self.batch_not_found
        return err(code)

    def modify_json(self, kind, endpoint, obj, p):
        d = obj["data"]
        first = d["jobs"][0] if d["jobs"] else None
        if kind in ("invalid_utf8", "nul_escape"):
            if first:
                first["url"] = mc.mid(first["url"], mc.corrupt_text(kind))
            else:
                d["batch_id"] = mc.mid(d["batch_id"], mc.corrupt_text(kind))
        elif kind == "wrong_type":
            d["completed"] = "many"
            if first:
                first["items_extracted"] = "many"
        elif kind == "deep_nesting":
            d["x"] = mc.DEEP
        elif kind == "data_not_array":
            d["jobs"] = "oops"
        else:
            return False
        return True

    def control(self, name, q):
        if not all(isinstance(q.get(k), str) for k in ("batch_id", "job_id", "status")):
            return 400, "need batch_id, job_id, status"
        if q["status"] not in JOB_STATES:
            return 400, "bad status"
        items = q.get("items_extracted")
        if items is not None:
            if isinstance(items, str) and not q.get("__json__") and items.isascii() \
                    and items.isdigit():
                items = int(items)
            if not isinstance(items, int) or isinstance(items, bool) or items < 0:
                return 400, "bad items_extracted"
        with self.lock:
            b = self.batches.get(q["batch_id"])
            if b is None:
                return 404, "not found"
            pos = next((i for i, j in enumerate(b["jobs"]) if j["job_id"] == q["job_id"]),
                       None)
            if pos is None:
                return 404, "not found"
            if b["batch_id"] not in self.originals:
                self.originals[b["batch_id"]] = copy.deepcopy(b)
            j = dict(b["jobs"][pos], status=q["status"])
            if items is not None:
                j["items_extracted"] = items
            b["jobs"][pos] = j
            self.rendered[b["batch_id"]] = render(b)
        return 200, "ok"

    def reset_data(self):
        with self.lock:
            for bid, orig in self.originals.items():
                self.batches[bid] = orig
                self.rendered[bid] = render(orig)
            self.originals = {}


if __name__ == "__main__":
    sys.exit(mc.run(ScrapeApi))
