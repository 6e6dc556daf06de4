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
    secret_headers    lower-case header names redacted in /_mock/last_headers
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
        --latency-ms 0, the API's own flags, --quiet|--verbose; loopback
        only; port file written to a temp file then renamed; "NAME listening
        on http://HOST:PORT" on stdout; SIGTERM/SIGINT exit 0; HTTP/1.1
        keep-alive, Content-Length on every normal response.  A request
        body sent with Transfer-Encoding, or with a Content-Length that is
        not a number from 0 to 1 MiB, is not read: the answer is sent, then
        the connection closed.
    Prefix segments name=value before the API path (percent-decoded):
        latency=MS fault=KIND on=ENDPOINT after=N times=N status=CODE
        retry_after=V ("date+S"/"date-S" = HTTP date S s from now)
        retry_after_ms=V stall=S size=BYTES depth=N chunk=BYTES delay_ms=MS,
        and the API's own.  Unknown name -> 400 text "unknown prefix
        parameter: NAME"; bad value -> 400 text "bad value for NAME";
        unknown fault -> 400 "unknown fault".
    Order of checks: prefix syntax (400) -> latency -> auth (401) -> path
        (404) -> method (405) -> fault / normal answer.
    Control (no auth, never counted, never delayed):
        GET /_mock/count[?endpoint=NAME] -> text integer
        GET /_mock/stats -> {"total",<each endpoint>,"unauthorized","by_path"}
        GET|POST /_mock/reset -> "ok" (counters, after/times, last headers,
            request log, data changes)
        GET /_mock/last_headers -> last API request's headers, names lower-
            cased, secret headers' values "<redacted>", plus "authorized":bool
        GET /_mock/requests -> [{"path","t"},..] arrival log since reset
            (request target as sent; t = time.monotonic() after the headers)
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
import collections
import email.utils
import http
import json
import os
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

PREFIX_PARAMS = {"fault": str, "on": str, "after": int, "times": int, "status": int,
                 "retry_after": str, "retry_after_ms": str, "stall": float,
                 "delay_ms": float, "chunk": int, "depth": int, "size": int,
                 "latency": float}
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
        if params[name] is not str and p[name] < 0:
            raise ValueError("bad value for " + name)
    if "fault" in p and p["fault"] not in api.fault_kinds:
        raise ValueError("unknown fault")
    for name, allowed in dict(on=api.endpoints, **api.prefix_choices).items():
        if name in p and p[name] not in allowed:
            raise ValueError("bad value for " + name)
    if not 200 <= p.get("status", 500) <= 599:
        raise ValueError("bad value for status")
    return p


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

    def record(self, endpoint, path, headers, authorized, target, t):
        with self.lock:
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
                d = dict(ct.counts, by_path=dict(sorted(ct.by_path.items())))
            return self._send(200, dumps(d))
        if name == "requests" and method == "GET":
            with ct.lock:
                reqs = list(ct.requests)
            return self._send(200, dumps([{"path": pth, "t": t} for pth, t in reqs]))
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
        i = 0
        while i < len(parts) and "=" in parts[i]:
            i += 1
        prefix_segs, rest_parts = parts[:i], parts[i:]
        rest = "/" + "/".join(rest_parts)
        endpoint, arg = api.route(rest_parts)

        authorized = api.authorized(self.headers)
        hdrs = {}
        for k, v in self.headers.items():
            hdrs[k.lower()] = "<redacted>" if k.lower() in api.secret_headers else v
        hdrs["authorized"] = authorized
        ct.record(endpoint, rest, hdrs, authorized, self.path, arrived)

        try:
            p = parse_prefix(prefix_segs, api)
        except ValueError as e:
            return self._text(400, str(e))
        latency = p.get("latency", srv.latency_ms)
        if latency > 0:
            time.sleep(latency / 1000.0)
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

def run(api_cls, argv=None):
    ap = argparse.ArgumentParser(
        description=api_cls.description or "%s (see the module docstring)" % api_cls.name)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--api-key", default="test-key")
    ap.add_argument("--latency-ms", type=float, default=0)
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
