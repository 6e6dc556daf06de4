#!/usr/bin/env python3
"""mock_common.py - what the three mock APIs of the tests share.

Python 3.11 standard library only.  Not a mock by itself: it holds the HTTP
server, the URL-prefix parser, the fault injector, the counters, the control
endpoints and the command line of test/mock_nimble.py, test/mock_scrape.py
and test/mock_factcheck.py.  Each of those describes its API with a
subclass of Api (defaults in brackets):

    name              "mock_nimble", ... (listening line, Server: NAME/1.0)
    description       --help's description ["NAME (see the module docstring)"]
    endpoints         endpoint names, e.g. ("progress",) or ("list", "details")
    fault_kinds       the fault kinds it accepts: BASE_FAULTS, HEADER_FAULTS
                      and its own JSON kinds
    prefix_params     prefix parameter -> type [PREFIX_PARAMS]
    prefix_choices    prefix parameter -> its allowed values [{}]; "on" is
                      always one of the endpoints
    secret_headers    lower-case header names redacted in /_mock/last_headers;
                      their values are also whose budget a window limit counts
    authorized(hdrs)  -> bool
    route(parts)      path segments after the prefix -> (endpoint, arg) | (None, None)
    normal(ep, arg, query, prefix) -> (status, body bytes); prefix: the
                      parsed prefix parameters
    modify_json(kind, ep, obj, p) -> True if obj (parsed 200 body) was changed
                      in place, for every kind not answered here (DEEP /
                      corrupt_text() placeholders)
    error_body(code)  -> bytes: the API's error body for fault=status
    unauthorized, not_found, method_not_allowed   canned bodies
    controls          the names of its own /_mock/NAME endpoints [()]
    control(name, q)  -> (status, text) for one of them; q: the query
                      parameters, or the POSTed JSON object plus "__json__"
    keep_blank_control_values  whether "name=" in a control query is the
                      empty string (True) or no parameter at all [True]
    reset_data()      undo control changes
    add_arguments(ap) / from_args(a, ap)  (classmethods) data-set flags;
                      from_args returns the Api object

COMMON BEHAVIOUR (all three mocks)
    CLI --host 127.0.0.1 --port 0 --port-file PATH --api-key test-key
        --latency-ms 0 --window-limit N/S --window-headers on|off, the API's
        own flags, --quiet|--verbose; loopback only; port file written to a
        temp file then renamed; "NAME listening on http://HOST:PORT" on
        stdout; SIGTERM/SIGINT exit 0; HTTP/1.1
        keep-alive, Content-Length on every normal response.  A request
        body sent with Transfer-Encoding, or with a Content-Length that is
        not a number from 0 to 1 MiB, is not read: the answer is sent, then
        the connection closed.
    Prefix segments name=value before the API path (percent-decoded):
        latency=MS fault=KIND on=ENDPOINT after=N times=N status=CODE
        retry_after=V ("date+S"/"date-S" = HTTP date S s from now)
        retry_after_ms=V stall=S size=BYTES depth=N chunk=BYTES delay_ms=MS,
        ratelimit=N/S rlheaders=0|1 rl_limit=V rl_remaining=V rl_reset=V
        rl_policy=V, and the API's own.  Unknown name -> 400 text "unknown
        prefix parameter: NAME"; bad value -> 400 text "bad value for NAME";
        unknown fault -> 400 "unknown fault".
    Order of checks: prefix syntax (400) -> window limit (decided on
        arrival, its 429 sent after the latency) -> latency -> auth (401) ->
        path (404) -> method (405) -> fault / normal answer.
    Window limit (a sliding log per budget, under Counters.lock):
        ratelimit=N/S (the "/" as is, or %2F) admits at most N requests in
        any S seconds per (full prefix string, credentials) budget, the
        credentials being the values of secret_headers (two keys, two
        budgets); --window-limit N/S the same for every API request, one
        budget per credentials across all prefixes (a prefix's ratelimit=
        overrides it).  An arrival is time.monotonic() after the headers,
        before the latency.  Over the limit: 429 with error_body(429) and
        Retry-After: whole seconds (rounded up, >= 1) until the oldest
        arrival leaves the window; a refused request is not logged (spends
        no budget) but is counted and in /_mock/requests.  A request whose
        prefix is a 400 is not limited.  Every answer with headers under a
        limit (401/404/429/faults too) carries ratelimit-limit: N,
        ratelimit-remaining: max(0, N - arrivals in the window, this one
        if admitted), ratelimit-reset: whole seconds (rounded up) until the
        oldest leaves (0: none), ratelimit-policy: N;w=S (S an integer when
        it is one) -- unless rlheaders=0 (or --window-headers off without
        rlheaders=1); the 429's Retry-After is sent regardless.
        rl_limit/rl_remaining/rl_reset/rl_policy=V add ratelimit-limit/
        -remaining/-reset/-policy: V verbatim (replacing a computed one) to
        every answer with headers of that prefix, enforcing nothing.
    Control (no auth, never counted, never delayed):
        GET /_mock/count[?endpoint=NAME] -> text integer
        GET /_mock/stats -> {"total",<each endpoint>,"unauthorized",
            ["refused","max_in_window",]"by_path"}: refused = 429s of the
            window limit, max_in_window = the most admitted arrivals in one
            window; both only with --window-limit or once a ratelimit= was
            used since the reset (the suites print the rest as it was)
        GET|POST /_mock/reset -> "ok" (counters, after/times, last headers,
            request log, window limits, data changes)
        GET /_mock/last_headers -> last API request's headers, names lower-
            cased, secret headers' values "<redacted>", plus "authorized":bool
        GET /_mock/requests -> [{"path","t","status"},..] arrival log since
            reset (request target as sent; t = time.monotonic() after the
            headers; status = the status code answered, null while it is
            being answered and for stall_headers / reset)
        GET|POST the API's controls (a POST's body must be a JSON object:
            400 "bad json"); any other name or method -> 404 "not found"
    Fault kinds answered here, for the APIs that accept them:
        BASE_FAULTS    status html not_json empty redirect stall_headers
                       stall_body reset truncate slow_body huge, and the JSON
                       kinds every API has (invalid_utf8 nul_escape wrong_type
                       deep_nesting: modify_json says where)
        HEADER_FAULTS  echo_auth echo_auth_location big_header many_headers
        test/mock_nimble.py's docstring gives their shapes.
"""

import argparse
import bisect
import collections
import email.utils
import http
import json
import math
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

# --------------------------------------------------------------------------
# JSON output
# --------------------------------------------------------------------------


class RawJSON:
    """A value emitted verbatim (for strings written with \\u escapes)."""
    registry = {}

    def __init__(self, text):
        self.placeholder = "@@RAW@@%d" % len(RawJSON.registry)
        RawJSON.registry[self.placeholder] = text.encode("utf-8")
        json.loads(text)  # raw text that is not JSON would be a fault nobody asked for

    def __deepcopy__(self, memo):
        return self


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                            default=lambda o: o.placeholder)


def dumps(obj):
    """Compact UTF-8 JSON; RawJSON values verbatim."""
    out = _encoder.encode(obj).encode("utf-8")
    if b"@@RAW@@" in out:
        for ph, raw in RawJSON.registry.items():
            out = out.replace(b'"' + ph.encode() + b'"', raw)
    return out


BAD_UTF8, DEEP = "@@INVALID_UTF8@@", "@@DEEP@@"


def mid(s, ins):
    """s with ins inserted in the middle."""
    return s[:len(s) // 2] + ins + s[len(s) // 2:]


def corrupt_text(kind):
    """The insertion for the invalid_utf8 / nul_escape faults."""
    return BAD_UTF8 if kind == "invalid_utf8" else "\x00"


# --------------------------------------------------------------------------
# prefix parameters
# --------------------------------------------------------------------------

def parse_ratelimit(text):
    """"N/S" -> (N, S): at most N requests (an integer >= 1) in any S seconds
    (> 0, finite); ValueError otherwise."""
    n, sep, s = text.partition("/")
    n, s = int(n), float(s)
    if not sep or n < 1 or not 0 < s < math.inf:
        raise ValueError(text)
    return n, s


def header_value(text):
    """A header value given in a prefix, sent verbatim: one line of it."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError(text)
    return text


PREFIX_PARAMS = {"fault": str, "on": str, "after": int, "times": int, "status": int,
                 "retry_after": str, "retry_after_ms": str, "stall": float,
                 "delay_ms": float, "chunk": int, "depth": int, "size": int,
                 "latency": float, "ratelimit": parse_ratelimit, "rlheaders": int,
                 "rl_limit": header_value, "rl_remaining": header_value,
                 "rl_reset": header_value, "rl_policy": header_value}
# rl_X=V: the header FIXED_RL[rl_X] is V verbatim; nothing is enforced
FIXED_RL = {"rl_limit": "ratelimit-limit", "rl_remaining": "ratelimit-remaining",
            "rl_reset": "ratelimit-reset", "rl_policy": "ratelimit-policy"}
BASE_FAULTS = {"status", "stall_headers", "stall_body", "reset", "truncate", "html",
               "not_json", "empty", "invalid_utf8", "nul_escape", "wrong_type",
               "deep_nesting", "huge", "slow_body", "redirect"}
# credentials echoed back, and headers too big for a client to take
HEADER_FAULTS = {"echo_auth", "echo_auth_location", "big_header", "many_headers"}


def parse_prefix(segs, api):
    params = api.prefix_params
    p = {}
    for seg in segs:
        name, _, value = seg.partition("=")
        name, value = unquote(name), unquote(value)
        if name not in params:
            raise ValueError("unknown prefix parameter: " + name)
        try:
            p[name] = params[name](value)
        except ValueError:
            raise ValueError("bad value for " + name) from None
        if params[name] in (int, float) and p[name] < 0:
            raise ValueError("bad value for " + name)
    if "fault" in p and p["fault"] not in api.fault_kinds:
        raise ValueError("unknown fault")
    for name, allowed in dict(on=api.endpoints, **api.prefix_choices).items():
        if name in p and p[name] not in allowed:
            raise ValueError("bad value for " + name)
    if not 200 <= p.get("status", 500) <= 599:
        raise ValueError("bad value for status")
    if p.get("rlheaders", 1) not in (0, 1):
        raise ValueError("bad value for rlheaders")
    return p


# S of "ratelimit=N/S" as its own path segment: a number
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def split_prefix(parts):
    """Path segments -> (prefix segments, the rest).  "ratelimit=N/S" may be
    written with its "/" as is (then S is the next segment) or as %2F."""
    segs, i = [], 0
    while i < len(parts) and "=" in parts[i]:
        seg = parts[i]
        i += 1
        name, _, value = seg.partition("=")
        if (unquote(name) == "ratelimit" and "/" not in unquote(value)
                and i < len(parts) and _SECONDS.fullmatch(parts[i])):
            seg += "/" + parts[i]
            i += 1
        segs.append(seg)
    return segs, parts[i:]


# --------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------

EXTRA_REASONS = {555: "Unknown Error"}


def reason(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return EXTRA_REASONS.get(code, "Error %d" % code)


# error codes per HTTP status, shared by both mocks' error shapes
ERROR_CODES = {400: ("invalid_request", "Invalid request"),
               401: ("unauthorized", "Invalid API key"),
               402: ("payment_required", "Payment required"),
               403: ("forbidden", "Forbidden"),
               404: ("not_found", "Not found"),
               405: ("method_not_allowed", "Method not allowed"),
               408: ("request_timeout", "Request timeout"),
               409: ("conflict", "Conflict"),
               429: ("rate_limited", "Rate limit exceeded"),
               500: ("internal_error", "Internal server error"),
               502: ("bad_gateway", "Bad gateway"),
               503: ("service_unavailable", "Service unavailable"),
               504: ("gateway_timeout", "Gateway timeout")}


def error_code(code):
    """-> (code string, message) for an HTTP status; generic "error" for others."""
    return ERROR_CODES.get(code, ("error", reason(code)))


def html_page(code):
    line = "%d %s" % (code, reason(code))
    return ("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n"
            "<center><h1>%s</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
            "</body>\r\n</html>\r\n" % (line, line)).encode()


def query_dict(query, keep_blank=True):
    """First value of each query parameter; keep_blank: "name=" is ""."""
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=keep_blank).items()}


# --------------------------------------------------------------------------
# what a mock describes
# --------------------------------------------------------------------------

class Api:
    """The base of each mock's API description: the defaults of the
    attributes the module docstring lists."""
    description = None
    prefix_params = PREFIX_PARAMS
    prefix_choices = {}
    controls = ()
    keep_blank_control_values = True


# --------------------------------------------------------------------------
# window limit: at most N requests in any S seconds
# --------------------------------------------------------------------------

def whole_seconds(x):
    """x seconds rounded up to whole ones, from the microsecond (so that the
    float noise of t + S - t does not make S = 5 into 6)."""
    return max(0, math.ceil(round(x, 6)))


def policy_text(limit):
    """(N, S) -> "N;w=S", S an integer when it is one."""
    n, s = limit
    return "%d;w=%s" % (n, int(s) if s.is_integer() else repr(s))


def window_headers(limit, in_window, oldest, now):
    """The ratelimit-* headers of an answer: in_window arrivals (this one
    included if admitted), the oldest at monotonic time oldest (None: none)."""
    n, s = limit
    reset = 0 if oldest is None else whole_seconds(oldest + s - now)
    return {"ratelimit-limit": str(n), "ratelimit-remaining": str(max(0, n - in_window)),
            "ratelimit-reset": str(reset), "ratelimit-policy": policy_text(limit)}


# --------------------------------------------------------------------------
# counters / request log
# --------------------------------------------------------------------------

REQUEST_LOG_MAX = 2000000


class Counters:
    def __init__(self, endpoints):
        self.endpoints = tuple(endpoints)
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.counts = dict({"total": 0}, **{e: 0 for e in self.endpoints},
                               unauthorized=0)
            self.by_path = {}
            self.requests = collections.deque(maxlen=REQUEST_LOG_MAX)
            self.fault_seen = {}
            self.last_headers = {}
            # window limits: budget key -> sorted arrival times in the window
            self.windows = {}
            self.refused = self.max_in_window = 0

    def record(self, endpoint, path, headers, authorized, target, t):
        """Count an API request -> its request log entry [target, t, status],
        whose status the answer fills in."""
        entry = [target, t, None]
        with self.lock:
            self.requests.append(entry)
            self.counts["total"] += 1
            if endpoint:
                self.counts[endpoint] += 1
            if not authorized:
                self.counts["unauthorized"] += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            self.last_headers = headers
        return entry

    def should_fault(self, key, after, times):
        with self.lock:
            i = self.fault_seen.get(key, 0)
            self.fault_seen[key] = i + 1
        return i >= after and (times is None or i - after < times)

    def admit(self, key, limit, now):
        """An arrival at monotonic time now on key's budget of limit (N, S)
        -> (admitted, arrivals in the window after it, the oldest or None).
        A refused request is not logged: it spent no budget."""
        n, s = limit
        with self.lock:
            log = self.windows.setdefault(key, collections.deque())
            while log and log[0] <= now - s:
                log.popleft()
            admitted = len(log) < n
            if admitted:
                # threads take the lock in any order: keep the log sorted
                bisect.insort(log, now)
                self.max_in_window = max(self.max_in_window, len(log))
            else:
                self.refused += 1
            return admitted, len(log), log[0] if log else None

    def limited(self):
        """Whether a window limit has been in force since the reset."""
        return bool(self.windows)


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this

    def version_string(self):
        return self.server.api.name + "/1.0"

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
        # per request (the handler lives as long as its connection): the
        # request log entry whose status the answer sets, and the ratelimit-*
        # headers every answer with headers carries
        self._entry, self._rl_headers = None, ()
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
            self.close_connection = True  # not supported: drop the connection after
            return b""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > (1 << 20):
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def _head(self, code, ctype, length, extra=(), close=False):
        if self._entry is not None:
            self._entry[2] = code
        self.send_response(code, reason(code))
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra:
            self.send_header(k, v)
        for k, v in self._rl_headers:
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
        api, ct = self.server.api, self.server.counters
        q = query_dict(query, api.keep_blank_control_values)
        name = path[len("/_mock/"):]
        if name == "count" and method == "GET":
            ep = q.get("endpoint")
            if ep is not None and ep not in api.endpoints:
                return self._text(400, "bad endpoint")
            with ct.lock:
                n = ct.counts[ep or "total"]
            return self._text(200, str(n))
        if name == "stats" and method == "GET":
            with ct.lock:
                d = dict(ct.counts)
                # only where a window limit is used: the suites print the
                # rest of the object as it always was
                if self.server.window_limit or ct.limited():
                    d.update(refused=ct.refused, max_in_window=ct.max_in_window)
                d["by_path"] = dict(sorted(ct.by_path.items()))
            return self._send(200, dumps(d))
        if name == "requests" and method == "GET":
            with ct.lock:
                reqs = [tuple(e) for e in ct.requests]
            return self._send(200, dumps([{"path": pth, "t": t, "status": st}
                                          for pth, t, st in reqs]))
        if name == "reset" and method in ("GET", "POST"):
            ct.reset()
            api.reset_data()
            return self._text(200, "ok")
        if name == "last_headers" and method == "GET":
            with ct.lock:
                h = ct.last_headers
            return self._send(200, dumps(h))
        if name in api.controls and method in ("GET", "POST"):
            if method == "POST":
                try:
                    q = json.loads(body or b"{}")
                    assert isinstance(q, dict)
                except Exception:
                    return self._text(400, "bad json")
                q["__json__"] = True
            return self._text(*api.control(name, q))
        return self._text(404, "not found")

    # ---- API ----
    def _api(self, method, path, query):
        arrived = time.monotonic()
        srv, api, ct = self.server, self.server.api, self.server.counters
        parts = path.split("/")[1:] if path.startswith("/") else []
        prefix_segs, rest_parts = split_prefix(parts)
        rest = "/" + "/".join(rest_parts)
        endpoint, arg = api.route(rest_parts)

        authorized = api.authorized(self.headers)
        hdrs = {}
        for k, v in self.headers.items():
            hdrs[k.lower()] = "<redacted>" if k.lower() in api.secret_headers else v
        hdrs["authorized"] = authorized
        self._entry = ct.record(endpoint, rest, hdrs, authorized, self.path, arrived)

        try:
            p = parse_prefix(prefix_segs, api)
        except ValueError as e:
            return self._text(400, str(e))
        retry = self._window(p, "/".join(prefix_segs), arrived)
        latency = p.get("latency", srv.latency_ms)
        if latency > 0:
            time.sleep(latency / 1000.0)
        if retry is not None:
            return self._send(429, api.error_body(429), extra=[("Retry-After", str(retry))])
        if not authorized:
            return self._send(401, api.unauthorized)
        if endpoint is None:
            return self._send(404, api.not_found)
        if method != "GET":
            return self._send(405, api.method_not_allowed, extra=[("Allow", "GET")])

        code, body = api.normal(endpoint, arg, query, p)
        kind = p.get("fault")
        if kind and p.get("on", endpoint) == endpoint and ct.should_fault(
                "/".join(prefix_segs), p.get("after", 0), p.get("times")):
            return self._fault(kind, p, endpoint, code, body, rest, query)
        return self._send(code, body)

    def _window(self, p, prefix, now):
        """Spend the request's budget under its window limit, if it has one,
        and set the headers that announce it -> None if admitted, else the
        Retry-After seconds of its 429."""
        srv = self.server
        limit = p.get("ratelimit")
        # a prefix's own limit is its own budget; the global one spans prefixes
        key = (prefix if limit else None, self._budget_key())
        limit = limit or srv.window_limit
        headers, retry = {}, None
        if limit:
            admitted, in_window, oldest = srv.counters.admit(key, limit, now)
            if not admitted:
                retry = max(1, whole_seconds(oldest + limit[1] - now))
            if p.get("rlheaders", srv.window_headers):
                headers = window_headers(limit, in_window, oldest, now)
        for name, header in FIXED_RL.items():
            if name in p:
                headers[header] = p[name]
        self._rl_headers = tuple(headers.items())
        return retry

    def _budget_key(self):
        """Whose budget a request spends: its credentials, the values of the
        API's secret headers (Authorization; X-API-Key too where they are)."""
        return tuple(self.headers.get(h, "") for h in self.server.api.secret_headers)

    def _fault(self, kind, p, endpoint, code, body, rest, query):
        api = self.server.api
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
            return self._send(c, api.error_body(c), extra=extra)
        if kind == "echo_auth":
            c = p.get("status", 401)
            auth = self._credentials()
            return self._send(c, dumps({"status": "failed", "msg": "bad key: " + auth}),
                              extra=extra + [("X-Echo", auth)])
        if kind == "echo_auth_location":
            loc = "http://127.0.0.2:%d/login?auth=%s" % (self.server.server_address[1],
                                                         self._credentials())
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
        # the other kinds change a 200's JSON body, where the API says
        if code == 200:
            obj = json.loads(body)
            if api.modify_json(kind, endpoint, obj, p):
                body = dumps(obj).replace(BAD_UTF8.encode(), b"\xff\xfe")
                if kind == "deep_nesting":
                    d = p.get("depth", 100000)
                    body = body.replace(b'"' + DEEP.encode() + b'"', b"[" * d + b"]" * d)
        return self._send(code, body, extra=extra)

    def _credentials(self):
        """The request's key, as an API or a proxy that echoes it would."""
        return self.headers.get("Authorization") or self.headers.get("X-API-Key") or ""


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class MockServer6(MockServer):
    address_family = socket.AF_INET6


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def window_limit_arg(text):
    """--window-limit's value."""
    try:
        return parse_ratelimit(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "want N/S: at most N (an integer >= 1) requests in any S seconds (> 0)") from None


def run(api_cls, argv=None):
    ap = argparse.ArgumentParser(
        description=api_cls.description or "%s (see the module docstring)" % api_cls.name)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--api-key", default="test-key")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--window-limit", type=window_limit_arg, metavar="N/S",
                    help="admit at most N API requests in any S seconds per API key")
    ap.add_argument("--window-headers", choices=("on", "off"), default="on",
                    help="announce the window limit in ratelimit-* headers [on]")
    api_cls.add_arguments(ap)
    ap.add_argument("--quiet", action="store_true", help="no request logging (default)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    a = ap.parse_args(argv)
    if a.host not in ("localhost", "::1") and not a.host.startswith("127."):
        ap.error("--host must be a loopback address")
    api = api_cls.from_args(a, ap)

    cls = MockServer6 if ":" in a.host else MockServer
    srv = cls((a.host, a.port), Handler)
    srv.api = api
    srv.counters = Counters(api.endpoints)
    srv.latency_ms = a.latency_ms
    srv.window_limit = a.window_limit
    srv.window_headers = a.window_headers == "on"
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
    host = "[%s]" % a.host if ":" in a.host else a.host
    print("%s listening on http://%s:%d" % (api.name, host, port), flush=True)
    while not stop.wait(0.5):
        pass
    srv.shutdown()
    srv.server_close()
    return 0
