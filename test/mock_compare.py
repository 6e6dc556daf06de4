#!/usr/bin/env python3
"""mock_compare.py - the three mocks of this tree against those of another
tree, request for request, byte for byte.

    python3 test/mock_compare.py OLD [--only mock_nimble,...] [-v]

OLD is a git revision (its test/ is taken with git archive) or a directory
holding an older copy of test/.  Each mock is started twice, the old and
this tree's, with the same options; the same requests (every endpoint, list
walks, every fault kind and prefix parameter, the control endpoints, auth,
404/405/400s, bodies a client should not send) go to both over raw sockets,
and the raw answers are compared: status line, headers and body, and how
the connection ended (kept alive, closed, reset).  Only the Date header,
an HTTP-date Retry-After, the mock's port and the arrival times of
/_mock/requests are masked.  The command lines (--help, bad flags, the
listening line, --verbose logging) are compared too.  Prints each
difference and "N requests compared, M differ"; exits 1 when any differs.
"""
import argparse
import base64
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from ids import batch_id as bid, task_id as tid  # noqa: E402
from mockcheck import start_mock, stop_mock  # noqa: E402

NIMBLE = {"Authorization": "Bearer test-key"}
SCRAPE = {"X-API-Key": "test-key"}
FACTCHECK = NIMBLE


def cursor(off):
    """The list cursor of an offset, as test/mock_nimble.py's docstring defines it."""
    return "cur_" + base64.urlsafe_b64encode(str(off).encode()).decode().rstrip("=")


# --------------------------------------------------------------------------
# the requests: (method, target, headers, body); headers None = the API's auth
# --------------------------------------------------------------------------

def req(target, headers=None, method="GET", body=b""):
    return (method, target, headers, body)


# the prefixes of test/lib/mock_common.py's fault kinds (a mock answers 400
# "unknown fault" to those it does not accept)
SHARED_FAULTS = [
    "fault=status", "fault=html", "fault=html/status=503", "fault=not_json", "fault=empty",
    "fault=redirect", "fault=invalid_utf8", "fault=nul_escape", "fault=wrong_type",
    "fault=deep_nesting/depth=5", "fault=deep_nesting", "fault=data_not_array",
    "fault=missing_pagination", "fault=always_more", "fault=huge/size=4000",
    "fault=huge/size=10", "fault=slow_body/chunk=200/delay_ms=1", "fault=truncate",
    "fault=stall_body/stall=0.3", "fault=stall_headers/stall=0.3", "fault=reset",
    "fault=status/status=429/retry_after=3/retry_after_ms=2500",
    "fault=status/status=503/retry_after=date%2B2", "fault=status/status=503/retry_after=datex",
    "fault=html/retry_after_ms=7", "fault=wrong_type/status=404"] + [
    "fault=status/status=%d" % code for code in (200, 400, 401, 402, 403, 404, 405, 408, 409,
                                                  418, 429, 500, 501, 502, 503, 504, 555, 599)]
# prefixes that are wrong, or right in an unusual way
ODD_PREFIXES = [
    "bogus=1", "after=x", "after=-1", "fault=bogus", "fault=status/on=nope", "status=99",
    "status=600", "status=abc", "latency=abc", "latency=0", "latency=-1", "stall=x", "count=5",
    "ids=upper", "ids=x", "ids=x/status=1", "%66ault=st%61tus", "fault=status/fault=bogus",
    "on=list", "times=0/fault=status"]


def shared_faults(paths):
    """Each of SHARED_FAULTS on each (name, path) of paths."""
    out = []
    for _, p in paths:
        out += [req("/" + f + p) for f in SHARED_FAULTS]
        out.append(req("/fault=redirect" + p + ("&" if "?" in p else "?") + "a=1"))
    return out


def prefix_and_auth(p, auth, wrong_auths):
    """Prefix syntax, the order of the checks, methods, and who is authorized."""
    out = [req("/" + f + p) for f in ODD_PREFIXES]
    out += [req("/bogus=1" + p, {}), req("/nope/x", {}), req(p, {}),
            req(p, method="POST", body=b"{}"), req(p, method="PUT"), req(p, method="DELETE"),
            req(p, method="PATCH"), req(p, method="OPTIONS"), req(p, method="HEAD"),
            req(p, {}, method="HEAD"), req("/nope", method="HEAD"),
            req(p, dict(auth, **{"User-Agent": "nimble_fdw/0.1", "Accept": "application/json"})),
            req("/_mock/last_headers", {})]
    for h in wrong_auths:
        out += [req(p, h), req("/_mock/last_headers", {})]
    return out


def after_times(p, other):
    """after= / times= / on= across requests, and the counters they leave."""
    return ([req("/_mock/reset", {})] +
            [req("/fault=status/status=503/times=2" + p)] * 4 +
            [req("/_mock/reset", {}), req("/fault=status/status=503/times=2" + p)] +
            [req("/fault=status/status=502/after=1" + p)] * 3 +
            [req("/fault=status/status=502/after=1/times=1" + p)] * 3 +
            [req("/fault=status/on=%s%s" % (e, p)) for e in other] +
            [req("/_mock/count", {}), req("/_mock/stats", {}), req("/_mock/requests", {}),
             req("/_mock/reset", {}), req("/_mock/requests", {})])


def control_common(endpoints):
    """The control endpoints every mock has, and names and methods it has not."""
    out = [req("/_mock/count", {})]
    out += [req("/_mock/count?endpoint=" + e, {}) for e in endpoints]
    out += [req("/_mock/count?endpoint=bogus", {}), req("/_mock/count?endpoint=", {}),
            req("/_mock/count?endpoint=&endpoint=" + endpoints[0], {}),
            req("/_mock/count?endpoint", {}), req("/_mock/stats", {}), req("/_mock/requests", {}),
            req("/_mock/last_headers", {}), req("/_mock", {}), req("/_mock/", {}),
            req("/_mock/nope", {}), req("/_mock/nope", {}, "POST", b"["),
            req("/_mock/nope", {}, "POST", b"{}"), req("/_mock/stats", {}, "POST", b"["),
            req("/_mock/stats", {}, "POST", b""), req("/_mock/count", {}, "HEAD"),
            req("/_mock/reset", {}, "PUT"), req("/_mock/reset", {}, "DELETE"),
            req("/_mock/count", {"Authorization": "Bearer nope"}),
            req("/_mock/count?x=1", {}), req("/_mock/reset", {}, "POST", b"junk"),
            req("/_mock/count", {})]
    return out


def body_oddities(p, auth):
    """Requests a client should not send: how the mock reads the body."""
    return [req(p, dict(auth, **{"Transfer-Encoding": "chunked"}), "POST", b"0\r\n\r\n"),
            req(p, dict(auth, **{"Content-Length": "abc"})),
            req(p, dict(auth, **{"Content-Length": "-5"})),
            req(p, dict(auth, **{"Content-Length": "2000000"})),
            req(p, dict(auth, **{"Content-Length": " 3"}), "POST", b"abc"),
            req("/_mock/count", {"Content-Length": "abc"}),
            req("/_mock/count", {"Content-Length": "-1"})]


def nimble_requests():
    L = []
    lst = "/v1/batches"
    L += [req(lst), req("/v2/batches"), req(lst + "?limit=1"), req(lst + "?limit=5"),
          req(lst + "?limit=12"), req(lst + "?limit=1000"), req(lst + "?limit=0"),
          req(lst + "?limit=1001"), req(lst + "?limit=abc"), req(lst + "?limit=-1"),
          req(lst + "?limit="), req(lst + "?limit"), req(lst + "?limit=5&limit=7"),
          req(lst + "?cursor=bogus"), req(lst + "?cursor="), req(lst + "?cursor=cur_OTk"),
          req(lst + "?cursor=cur_NQ=="), req(lst + "?cursor=cur_MA"), req(lst + "?cursor=cur_LTE"),
          req(lst + "?x=1&limit=2")]
    for off in range(0, 13, 5):
        L.append(req(lst + "?limit=5&cursor=" + cursor(off)))
    for off in (1, 11, 12):
        L.append(req(lst + "?limit=5&cursor=" + cursor(off)))
    for n in list(range(0, 14)) + [0xfff]:
        L += [req("/v1/batches/" + bid(n)), req("/v1/batches/%s/progress" % bid(n))]
    L += [req("/v2/batches/%s/progress" % bid(1)), req("/v1/batches/" + bid(1).upper()),
          req("/v1/batches/" + bid(1).replace("-", "%2D")), req("/v1/batches//progress"),
          req("/v1/batches/x/y"), req("/v1/batches/%s/progress/x" % bid(1)),
          req("/v1/batches/" + bid(1) + "?limit=0"), req("/v1/nothing"), req("/"), req("/v1"),
          req("/v3/batches"), req("/v1/batches/"), req("/v1//batches"), req("v1/batches"),
          req("/v1/tasks"), req("/v1/tasks?limit=0"), req("/v1/tasks?cursor=bogus")]
    for off in range(0, 1034, 250):
        L.append(req("/v1/tasks?limit=250&cursor=" + cursor(off)))
    for n, k in ((1, 1), (1, 2), (3, 1000), (3, 4), (4, 1), (4, 2), (5, 1), (5, 2), (6, 1),
                 (7, 1), (7, 2), (7, 3), (7, 4), (11, 5), (12, 3)):
        L += [req("/v1/tasks/" + tid(n, k)), req("/v1/tasks/%s/results" % tid(n, k))]
    L += [req("/v1/tasks/nope"), req("/v1/tasks/nope/results"), req("/v1/tasks//results"),
          req("/v2/tasks/" + tid(1, 1))]
    # ids=upper
    for path in ("/v1/batches?limit=3", "/v1/batches/" + bid(1).upper(),
                 "/v1/batches/" + bid(1), "/v1/batches/%s/progress" % bid(5).upper(),
                 "/v1/batches/" + bid(5)[:-1].upper() + "5", "/v1/batches/NOPE",
                 "/v1/tasks?limit=3", "/v1/tasks/" + tid(1, 1).upper(),
                 "/v1/tasks/" + tid(1, 1), "/v1/tasks/%s/results" % tid(5, 2).upper()):
        L += [req("/ids=upper" + path), req("/ids=lower" + path)]
    L += [req("/ids=upper/fault=invalid_utf8/v1/batches/" + bid(1).upper()),
          req("/ids=upper/fault=wrong_type/v1/tasks/" + tid(1, 1).upper()),
          req("/ids=upper/fault=dup_item/v1/batches?limit=2")]
    # the endpoints every fault kind is tried on
    eps = [("list", "/v1/batches?limit=5"), ("list-last", "/v1/batches?limit=5&cursor=cur_MTA"),
           ("list-past", "/v1/batches?limit=5&cursor=cur_MA"),
           ("details", "/v1/batches/" + bid(1)), ("details-empty", "/v1/batches/" + bid(2)),
           ("details-5", "/v1/batches/" + bid(5)), ("details-6", "/v1/batches/" + bid(6)),
           ("progress", "/v1/batches/%s/progress" % bid(9)),
           ("tasks", "/v1/tasks?limit=3"), ("tasks-5", "/v1/tasks?limit=4&cursor=" +
                                           cursor(1021)),
           ("task", "/v1/tasks/" + tid(1, 1)), ("task-6", "/v1/tasks/" + tid(6, 1)),
           ("results", "/v1/tasks/%s/results" % tid(1, 1)),
           ("results-404", "/v1/tasks/%s/results" % tid(6, 1)),
           ("404", "/v1/batches/nope")]
    L += shared_faults(eps)
    for _, p in eps:
        L += [req("/fault=%s%s" % (k, p)) for k in (
            "repeat_cursor", "null_cursor", "shapes", "dup_item", "echo_auth",
            "echo_auth/status=400", "echo_auth_location", "big_header/size=1000",
            "big_header", "big_header/size=0", "many_headers/count=10", "many_headers/count=0",
            "echo_auth/retry_after=5")]
    L += [req("/fault=many_headers" + eps[3][1]),
          req("/fault=echo_auth" + eps[0][1], dict(NIMBLE, **{"X-API-Key": "other"})),
          req("/fault=echo_auth_location" + eps[0][1], {"X-API-Key": "x"}),
          req("/fault=dup_item/v1/batches?limit=5&cursor=cur_MA"),
          req("/fault=shapes/on=details/v1/batches/" + bid(3)),
          req("/fault=deep_nesting/depth=3/v1/batches/" + bid(3))]
    for e in ("list", "details", "progress", "tasks", "task", "results"):
        L += [req("/fault=status/on=%s%s" % (e, p)) for _, p in eps[::3]]
    L += prefix_and_auth("/v1/batches/" + bid(1), NIMBLE, [
        {}, {"Authorization": "Bearer nope"}, {"Authorization": "bearer test-key"},
        {"Authorization": "BEARER  test-key "}, {"Authorization": "test-key"},
        {"Authorization": "Basic test-key"}, {"X-API-Key": "test-key"},
        {"Authorization": "Bearer test-key", "X-API-Key": "leak"}])
    L += after_times("/v1/batches/" + bid(1), ("list", "details", "progress"))
    L += control_common(["list", "details", "progress", "tasks", "task", "results"])
    # task_state
    before = req("/v1/batches/" + bid(6))
    ts = "/_mock/task_state"
    L += [before, req(ts, {}, "POST", json.dumps({"batch_id": bid(6), "task_id": tid(6, 1),
                                                  "state": "success"}).encode()),
          req(ts + "?batch_id=%s&task_id=%s&state=success" % (bid(6), tid(6, 2)), {}),
          req(ts + "?batch_id=%s&task_id=%s&state=" % (bid(6), tid(6, 3)), {}),
          req(ts + "?batch_id=%s&task_id=%s" % (bid(6), tid(6, 3)), {}),
          req(ts + "?batch_id=x&task_id=y&state=z", {}),
          req(ts + "?batch_id=%s&task_id=%s&state=x" % (bid(6), tid(7, 1)), {}),
          req(ts, {}, "POST", b"["), req(ts, {}, "POST", b"[1]"), req(ts, {}, "POST", b""),
          req(ts, {}, "POST", json.dumps({"batch_id": bid(1), "task_id": tid(1, 1),
                                         "state": 1}).encode()),
          req(ts, {}, "POST", json.dumps({"batch_id": bid(1), "task_id": tid(1, 2),
                                         "state": ""}).encode()),
          req(ts, {}, "PUT", b"{}"), req(ts, {}, "HEAD"),
          req("/v1/batches/" + bid(6)), req("/v1/batches/%s/progress" % bid(6)),
          req("/v1/batches/" + bid(1)), req("/v1/batches"), req("/v1/tasks/" + tid(6, 1)),
          req("/v1/tasks/%s/results" % tid(6, 1)), req("/v1/tasks?limit=5&cursor=" + cursor(1020)),
          req("/_mock/reset", {}, "POST"), before, req("/v1/batches"),
          req("/v1/tasks/%s/results" % tid(6, 1))]
    L += body_oddities("/v1/batches/" + bid(1), NIMBLE)
    L += [req("/_mock/stats", {}), req("/_mock/count", {})]
    return L


def scrape_requests():
    def sp(b):
        return "/api/v1/scrape/batch/%s/progress" % quote(b, safe="")
    ids = ["batch_xyz789", "batch_empty000", "batch_large300", "batch_done001",
           "batch_unicode01", "batch_failed01", "batch odd/id ü?&%#", "batch_nope"]
    L = [req(sp(b)) for b in ids]
    L += [req(sp("batch_xyz789") + "?x=1"), req("/api/v1/scrape/batch"),
          req("/api/v1/scrape/batch/batch_xyz789"), req("/api/v1/scrape/batch//progress"),
          req("/api/v1/scrape/batch/batch_xyz789/jobs"), req("/v1/batch/batch_xyz789"),
          req("/api/v2/scrape/batch/batch_xyz789/progress"), req("/"),
          req(sp("batch_xyz789"), {"x-api-key": "test-key"})]
    eps = [("progress", sp("batch_xyz789")), ("empty", sp("batch_empty000")),
           ("404", sp("batch_nope"))]
    L += shared_faults(eps)
    L += [req("/fault=echo_auth" + eps[0][1]), req("/fault=dup_item" + eps[0][1]),
          req("/fault=big_header" + eps[0][1]), req("/count=1" + eps[0][1]),
          req("/ids=upper" + eps[0][1])]
    L += prefix_and_auth(sp("batch_xyz789"), SCRAPE, [
        {}, {"X-API-Key": "nope"}, {"Authorization": "Bearer test-key"},
        {"X-API-Key": "test-key "}, {"X-API-Key": "Test-Key"},
        {"X-API-Key": "test-key", "Authorization": "Bearer secret"}])
    L += after_times(sp("batch_xyz789"), ("progress",))
    L += control_common(["progress"])
    js = "/_mock/job_state"
    L += [req(js, {}, "POST", json.dumps({"batch_id": "batch_xyz789", "job_id": "job_abc132",
                                         "status": "completed", "items_extracted": 5}).encode()),
          req(js + "?batch_id=batch_xyz789&job_id=job_abc129&status=failed", {}),
          req(js + "?batch_id=batch_done001&job_id=job_done001_2&status=processing"
                 "&items_extracted=3", {}),
          req(js + "?batch_id=batch_done001&job_id=job_done001_2&status=", {}),
          req(js + "?batch_id=batch_done001&job_id=job_done001_2&status=failed"
                 "&items_extracted=x", {}),
          req(js + "?batch_id=batch_done001&job_id=job_done001_2&status=failed"
                 "&items_extracted=", {}),
          req(js, {}, "POST", json.dumps({"batch_id": "batch odd/id ü?&%#", "job_id": "job_odd_1",
                                         "status": "completed"}).encode()),
          req(js, {}, "POST", b"["), req(js, {}, "POST", json.dumps(
              {"batch_id": "batch_xyz789", "job_id": "job_abc123", "status": "failed",
               "items_extracted": "3"}).encode()),
          req(js, {}, "POST", json.dumps(
              {"batch_id": "batch_xyz789", "job_id": "job_abc123", "status": "failed",
               "items_extracted": True}).encode()),
          req(js, {}, "POST", json.dumps({"batch_id": "batch_nope", "job_id": "x",
                                         "status": "failed"}).encode())]
    L += [req(sp(b)) for b in ids] + [req("/_mock/reset", {})] + [req(sp(b)) for b in ids]
    L += body_oddities(sp("batch_xyz789"), SCRAPE)
    L += [req("/_mock/stats", {}), req("/_mock/count", {})]
    return L


def factcheck_requests():
    def fp(b):
        return "/v1/batch/" + quote(b, safe="")
    ids = ["batch_pending01", "batch_xyz789", "batch_empty01", "batch_abc123def456",
           "batch_unicode01", "batch_bigcost01", "batch_cancel01", "batch_failed123", "nope"]
    L = [req(fp(b)) for b in ids]
    for q in ("", "?limit=3", "?limit=3&offset=3", "?limit=3&offset=6", "?limit=1",
              "?limit=8", "?limit=100", "?limit=1&offset=7", "?offset=5", "?limit=007&offset=0",
              "?offset=8", "?offset=1000&limit=5", "?status=completed&x=1", "?limit=0",
              "?limit=101", "?limit=abc", "?limit=-1", "?limit=", "?limit=1.5", "?limit=%2B5",
              "?offset=-1", "?offset=abc", "?offset=", "?offset=1e3", "?limit"):
        L.append(req("/v1/batch" + q))
    L += [req("/v1/batches"), req("/v1/batch/"), req("/v1/batch/batch_xyz789/progress"),
          req("/v2/batch"), req("/api/v1/batch"), req("/")]
    eps = [("list", "/v1/batch?limit=3"), ("list-empty", "/v1/batch?offset=100"),
           ("details", fp("batch_xyz789")), ("details-empty", fp("batch_empty01")),
           ("404", fp("nope")), ("400", "/v1/batch?limit=0")]
    L += shared_faults(eps)
    L += [req("/fault=echo_auth" + eps[0][1]), req("/fault=shapes" + eps[2][1]),
          req("/fault=status/on=progress" + eps[0][1])]
    for e in ("list", "details"):
        L += [req("/fault=status/on=%s%s" % (e, p)) for _, p in eps]
    L += prefix_and_auth(fp("batch_abc123def456"), FACTCHECK, [
        {}, {"Authorization": "Bearer nope"}, {"X-API-Key": "test-key"},
        {"Authorization": "test-key"}, {"Authorization": "Basic test-key"},
        {"Authorization": "bearer test-key"}, {"Authorization": "BeArEr test-key"},
        {"Authorization": "Bearer test-key", "X-API-Key": "leak"}])
    L += after_times(fp("batch_xyz789"), ("list", "details"))
    L += control_common(["list", "details"])
    bs = "/_mock/batch_state"
    L += [req(bs, {}, "POST", json.dumps({"id": "batch_pending01", "status": "processing",
                                         "processedItems": 10, "successCount": 9,
                                         "failureCount": 1}).encode()),
          req(bs + "?id=batch_pending01&status=completed&processedItems=25&successCount=24"
                 "&totalCostCents=3000000000", {}),
          req(bs, {}, "POST", json.dumps({
              "id": "batch_xyz789", "status": "failed", "errorMessage": "boom",
              "validationErrors": [{"row": 2, "error": "bad"}],
              "completedAt": "2024-01-17T11:00:00Z"}).encode()),
          req(bs + "?id=batch_abc123def456&status=processing&errorMessage=null", {}),
          req(bs + "?id=batch_empty01&status=pending", {}),
          req(bs + "?id=batch_empty01&status=cancelled", {}),
          req(bs + "?id=batch_cancel01&name=&errorMessage=", {}),
          req(bs + "?id=batch_cancel01&context=%7B%22a%22%3A1%7D&methodsConfig=x", {}),
          req(bs + "?id=batch_cancel01&context=%7B%22a%22%3A1%7D", {}),
          req(bs + "?id=batch_xyz789&totalItems=x", {}), req(bs + "?id=", {}), req(bs, {}),
          req(bs, {}, "POST", b"[")]
    for body in ({"id": "batch_nope", "status": "failed"}, {"status": "failed"},
                 {"id": "batch_xyz789", "status": "done"},
                 {"id": "batch_xyz789", "createdAt": "x"}, {"id": "batch_xyz789", "bogus": 1},
                 {"id": "batch_xyz789", "processedItems": "3"},
                 {"id": "batch_xyz789", "processedItems": -3},
                 {"id": "batch_xyz789", "validationErrors": "x"}, {"id": 5}):
        L.append(req(bs, {}, "POST", json.dumps(body).encode()))
    L += [req(fp(b)) for b in ids] + [req("/v1/batch")] + [req("/_mock/reset", {}, "POST")]
    L += [req(fp(b)) for b in ids] + [req("/v1/batch")]
    L += body_oddities(fp("batch_xyz789"), FACTCHECK)
    L += [req("/_mock/stats", {}), req("/_mock/count", {})]
    return L


# per mock: its auth, its requests, a bench data set's flags and paths, and
# command lines it must refuse
Mock = collections.namedtuple("Mock", "auth requests bench_args bench_paths bad_args")
MOCKS = {
    "mock_nimble": Mock(
        NIMBLE, nimble_requests, ["--batches", "20", "--tasks-per-batch", "7"],
        ["/v1/batches?limit=1000", "/v1/batches/" + bid(3), "/v1/batches/" + bid(20),
         "/v1/batches/%s/progress" % bid(9), "/v1/tasks?limit=1000", "/v1/tasks/" + tid(20, 7)],
        [["--batches", "3"], ["--batches", "0", "--tasks-per-batch", "1"],
         ["--batches", "70000", "--tasks-per-batch", "1"], ["--port", "x"], ["--bogus"]]),
    "mock_scrape": Mock(
        SCRAPE, scrape_requests, ["--batches", "5", "--jobs-per-batch", "23"],
        ["/api/v1/scrape/batch/batch_%06d/progress" % n for n in range(0, 7)],
        [["--batches", "3"], ["--jobs-per-batch", "3"],
         ["--batches", "0", "--jobs-per-batch", "1"], ["--bogus"]]),
    "mock_factcheck": Mock(
        FACTCHECK, factcheck_requests, ["--batches", "30"],
        ["/v1/batch?limit=100", "/v1/batch/batch_00000010", "/v1/batch/batch_00000017",
         "/v1/batch/batch_00000030"],
        [["--batches", "0"], ["--jobs-per-batch", "3"], ["--bogus"]]),
}


# --------------------------------------------------------------------------
# talking to a mock
# --------------------------------------------------------------------------

def start(script, args):
    """-> (process, port, its listening line)."""
    proc, port = start_mock(script, *args, timeout=60)
    return proc, port, proc.stdout.readline()


def exchange(port, request, auth):
    """One request on a new connection -> (raw answer, how it ended)."""
    method, target, headers, body = request
    headers = auth if headers is None else headers
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: 127.0.0.1"]
    lines += ["%s: %s" % kv for kv in headers.items()]
    if body and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
        lines.append("Content-Length: %d" % len(body))
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    buf, how = b"", None
    while how is None:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if method == "HEAD" or (m and len(rest) >= int(m.group(1))):
                how = "complete"
                break
        try:
            d = s.recv(65536)
        except socket.timeout:
            how = "timeout"
            break
        except ConnectionResetError:
            how = "reset"
            break
        if not d:
            how = "eof"
        buf += d
    if how == "complete":
        # kept alive? a control request on the same connection tells
        try:
            s.sendall(b"GET /_mock/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            more = s.recv(65536)
            how = "complete, kept alive" if more.startswith(b"HTTP/1.1 404") else \
                "complete, then %r" % more[:40]
        except OSError as e:
            how = "complete, then closed (%s)" % type(e).__name__
        else:
            if not more:
                how = "complete, then closed"
    s.close()
    return buf, how


def normalize(raw, port, target):
    """Mask what differs between two runs of the same mock."""
    raw = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: DATE", raw)
    raw = re.sub(rb"\r\nRetry-After: \w{3}, [^\r]*GMT", b"\r\nRetry-After: HTTP-DATE", raw)
    raw = raw.replace(b":%d" % port, b":PORT")
    if target.startswith("/_mock/requests"):
        raw = re.sub(rb'"t":[0-9.e+-]+', b'"t":T', raw)
        raw = re.sub(rb"\r\nContent-Length: \d+", b"\r\nContent-Length: N", raw)
    return raw


def describe(raw):
    if len(raw) > 600:
        return "%r ... (%d bytes)" % (raw[:600], len(raw))
    return repr(raw)


# --------------------------------------------------------------------------

def cli(script, argv):
    """A command line that exits -> (status, stdout, stderr)."""
    r = subprocess.run([sys.executable, script] + argv, capture_output=True, timeout=60)
    return r.returncode, r.stdout.replace(os.path.basename(script).encode(), b"SCRIPT"), r.stderr


def compare_mock(name, old_dir, new_dir, verbose):
    mock = MOCKS[name]
    old_script = os.path.join(old_dir, name + ".py")
    new_script = os.path.join(new_dir, name + ".py")
    n, diffs = 0, []

    def same(what, a, b):
        nonlocal n
        n += 1
        if a == b:
            if verbose:
                print("same %s: %s" % (name, what))
            return
        diffs.append(what)
        if isinstance(a, tuple) and isinstance(a[0], bytes) and isinstance(a[1], str):
            print("DIFF %s: %s\n  old: %s\n  new: %s\n  old ended: %s; new ended: %s"
                  % (name, what, describe(a[0]), describe(b[0]), a[1], b[1]))
        else:
            print("DIFF %s: %s\n  old: %r\n  new: %r" % (name, what, a, b))

    runs = [([], mock.requests()),
            (mock.bench_args, [req("/_mock/stats", {})] + [req(p) for p in mock.bench_paths])]
    for args, requests in runs:
        (po, porto, lo), (pn, portn, ln) = start(old_script, args), start(new_script, args)
        try:
            same("listening line %s" % args, lo.replace(b"%d" % porto, b"PORT"),
                 ln.replace(b"%d" % portn, b"PORT"))
            for r in requests:
                a = exchange(porto, r, mock.auth)
                b = exchange(portn, r, mock.auth)
                same("%s %s %s %r" % (r[0], r[1], r[2], r[3][:60]),
                     (normalize(a[0], porto, r[1]), a[1]),
                     (normalize(b[0], portn, r[1]), b[1]))
        finally:
            ro, eo = stop_mock(po)
            rn, en = stop_mock(pn)
        same("exit status %s" % args, ro, rn)
        same("stderr %s" % args, eo, en)

    same("--help", cli(old_script, ["--help"]), cli(new_script, ["--help"]))
    for argv in mock.bad_args + [["--host", "0.0.0.0"], ["--host", "192.0.2.1"]]:
        same("command line %s" % argv, cli(old_script, argv), cli(new_script, argv))

    # --verbose: one line per request on stderr
    logs = []
    for script in (old_script, new_script):
        proc, port, _ = start(script, ["--verbose"])
        exchange(port, req("/nope"), {})
        exchange(port, req("/_mock/count"), {})
        _, err = stop_mock(proc)
        logs.append(re.sub(rb"\[[^\]]*\]", b"[TIME]", err))
    same("--verbose log", logs[0], logs[1])
    return n, diffs


def old_tree(old, tmp):
    """OLD's test/ directory: itself, or REVISION's extracted into tmp."""
    if os.path.isdir(old):
        return os.path.abspath(old)
    repo = os.path.dirname(HERE)
    archive = subprocess.run(["git", "-C", repo, "archive", old, "test"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-C", tmp, "-xf", "-"], input=archive, check=True)
    return os.path.join(tmp, "test")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="a git revision, or a directory with an older test/")
    ap.add_argument("--only", default=",".join(MOCKS), help="mocks to compare (default: all)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every comparison")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mockcmp_old")
    try:
        old = old_tree(a.old, tmp)
        total, bad = 0, []
        for name in a.only.split(","):
            n, diffs = compare_mock(name, old, HERE, a.verbose)
            print("%s: %d compared, %d differ" % (name, n, len(diffs)), flush=True)
            total += n
            bad += diffs
    finally:
        shutil.rmtree(tmp)
    print("%d requests compared, %d differ" % (total, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
