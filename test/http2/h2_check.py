#!/usr/bin/env python3
"""h2_check.py - HTTP/2 multiplexing and keep-alive reuse of nimble_fdw,
checked against real components.

    test/http2/h2_check.py [--latency-ms 100] [--keep] [--verbose]

Claims under test
  1. Over TLS the extension negotiates HTTP/2 (ALPN) when the server offers
     it, and multiplexes a scan's concurrent requests over ONE connection
     (libcurl multi, CURLPIPE_MULTIPLEX, PIPEWAIT).
  2. It keeps connections alive and reuses them across requests and across
     queries of the same backend, over HTTP/1.1 too.

Set-up (everything started here is stopped here, by pid; traffic stays on
127.0.0.1):
  - nginx-light and openssl are installed when missing
    (test/install_packages.sh, as root);
  - a throwaway CA and a server certificate for IP 127.0.0.1 are made with
    openssl in a private temp directory (mode 755, the CA readable by the
    postgres user);
  - nginx runs as a child (daemon off; its own conf, pid, temp and log paths
    in that directory; master as root, workers as nobody), listening with
    "ssl http2" on a free port and proxying, with upstream keep-alive, to the
    mock API (test/mock_nimble.py, --latency-ms so requests overlap);
    its access log records $server_protocol, $connection,
    $connection_requests, $request and the timing of each request;
  - a private PostgreSQL cluster (test/lib/relib.py) with two
    servers: h2 (https via nginx, ca_bundle = the test CA) and h1 (the mock
    directly over http).  The installed extension is used as is: nothing is
    built or installed here.

Evidence per claim: EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) ("Nimble
Requests", "Nimble New Connections", "Nimble HTTP Version"), nginx's access
log (protocol, connection serial, overlap of requests on that connection),
the backend's own TCP sockets (/proc/PID/fd + /proc/net/tcp: the local port
of each connection, before and after a repeat query) and the mock's request
count.  A control repeat with max_concurrency 4 (at or under libcurl's
default connection-cache floor of 4) tells a cache-size effect apart from a
server that closes connections; for each of the backend's connections that
went away, the TIME_WAIT entry in /proc/net/tcp names the side that closed
first.  Each check prints "ok" or "FAIL" with the measured numbers; the last
line is "http2: N checks passed" (or "http2: N checks passed, M failed").
Exit status 0 when every check passes, 1 otherwise.  Bounded by an alarm
(110 s) and, in run.sh, by timeout(1).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import relib  # noqa: E402

TIME_LIMIT_S = 110
MAX_CONCURRENCY = 8
NBATCHES = 12                      # the mock's default data set
EXPECTED_REQUESTS = 1 + NBATCHES   # one list page (page_size 100) + one progress each
QUERY = "SELECT * FROM %s.batch_progress"


# ----------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, cond, measured, evidence=None):
        cond = bool(cond)
        print("%-4s %s: %s" % ("ok" if cond else "FAIL", name, measured), flush=True)
        if cond:
            self.passed += 1
        else:
            self.failed.append(name)
            if evidence:
                for line in str(evidence).rstrip().splitlines():
                    print("       | " + line)


def info(msg):
    print("info " + msg, flush=True)


class Timeout(Exception):
    pass


def on_alarm(*_):
    raise Timeout("time limit of %d s reached" % TIME_LIMIT_S)


# ----------------------------------------------------------------------
# certificates
# ----------------------------------------------------------------------

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stdout))


def make_certs(d):
    """A throwaway CA and a server certificate for IP 127.0.0.1."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=nimble_fdw http2 test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", "0x%x" % int.from_bytes(os.urandom(8), "big"),
            "-days", "2", "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    for name in ("ca.key", "server.key"):
        os.chmod(os.path.join(d, name), 0o600)
    for name in ("ca.crt", "server.crt"):
        os.chmod(os.path.join(d, name), 0o644)
    return os.path.join(d, "ca.crt")


# ----------------------------------------------------------------------
# nginx
# ----------------------------------------------------------------------

LOG_RE = re.compile(
    r'proto=(?P<proto>\S+) conn=(?P<conn>\d+) creq=(?P<creq>\d+) h2=(?P<h2>\S+) '
    r'ssl=(?P<ssl>\S+) msec=(?P<msec>[\d.]+) rt=(?P<rt>[\d.]+) status=(?P<status>\d+) '
    r'upconn=(?P<upconn>\S+) "(?P<request>[^"]*)"')


class Nginx:
    def __init__(self, d, mock_port):
        self.dir = d
        self.port = relib.free_port()
        self.conf = os.path.join(d, "nginx.conf")
        self.access_log = os.path.join(d, "access.log")
        self.error_log = os.path.join(d, "error.log")
        self.pidfile = os.path.join(d, "nginx.pid")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        t = os.path.join(d, "tmp")
        with open(self.conf, "w") as f:
            f.write("""# nimble_fdw test/http2: a TLS + HTTP/2 front of the mock API
daemon off;
master_process on;
worker_processes 1;
%(user)spid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 512; }
http {
    log_format h2check 'proto=$server_protocol conn=$connection creq=$connection_requests '
                       'h2=$http2 ssl=$ssl_protocol msec=$msec rt=$request_time '
                       'status=$status upconn=$upstream_connect_time "$request"';
    access_log %(d)s/access.log h2check;
    client_body_temp_path %(t)s/body;
    proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/fastcgi;
    uwsgi_temp_path %(t)s/uwsgi;
    scgi_temp_path %(t)s/scgi;
    keepalive_timeout 120s;
    keepalive_requests 10000;
    upstream mock {
        server 127.0.0.1:%(mock)d;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        ssl_certificate %(d)s/server.crt;
        ssl_certificate_key %(d)s/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
""" % {"user": user, "d": d, "t": t, "mock": mock_port, "port": self.port})
        self.cmd = ["nginx", "-p", d + "/", "-c", self.conf, "-e", self.error_log]
        self.proc = None

    def test_config(self):
        r = subprocess.run(self.cmd + ["-t", "-q"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx -t failed:\n" + r.stdout)

    def start(self):
        self.test_config()
        self.proc = subprocess.Popen(self.cmd, stdout=open(os.path.join(self.dir, "nginx.out"), "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited at start (status %s):\n%s"
                                   % (self.proc.returncode, self.errors()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen on port %d in 10 s" % self.port)

    def children(self):
        """Pids whose parent is the nginx master (its workers)."""
        out = []
        if self.proc is None:
            return out
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.proc.pid:
                out.append(int(p))
        return out

    def stop(self):
        """Fast shutdown (SIGTERM to the master); returns (exit status,
        worker pids left, pid file left)."""
        if self.proc is None:
            return None, [], False
        workers = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = [w for w in workers if os.path.exists("/proc/%d" % w)]
        for w in left:     # our own children: never leave them behind
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass
        return self.proc.returncode, left, os.path.exists(self.pidfile)

    def log_size(self):
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def log_since(self, offset, want=0, wait_s=3.0):
        """Access-log entries written after offset (waiting up to wait_s for
        at least want of them: nginx logs a request after answering it)."""
        deadline = time.monotonic() + wait_s
        while True:
            with open(self.access_log, errors="replace") as f:
                f.seek(offset)
                lines = [l.rstrip("\n") for l in f if l.strip()]
            if len(lines) >= want or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        entries = []
        for l in lines:
            m = LOG_RE.search(l)
            entries.append(dict(m.groupdict(), line=l) if m else {"line": l, "proto": "?", "conn": "?"})
        return entries

    def errors(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class MockCounter:
    """/_mock/count over one keep-alive connection (urllib would open and
    close a connection per call, leaving TIME_WAIT entries that would blur
    the count of connections closed around the backend's queries)."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def count(self):
        self.c.request("GET", "/_mock/count")
        r = self.c.getresponse()
        return int(r.read().decode())

    def close(self):
        self.c.close()


def max_overlap(entries):
    """Most requests in flight at once, from nginx's end time ($msec) and
    duration ($request_time) of each."""
    ev = []
    for e in entries:
        end = float(e["msec"])
        start = end - float(e["rt"])
        ev.append((start, 1))
        ev.append((end, -1))
    ev.sort(key=lambda x: (x[0], x[1]))     # an end before a start at the same instant
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


# ----------------------------------------------------------------------
# the backend's sockets
# ----------------------------------------------------------------------

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
              "0A": "LISTEN", "0B": "CLOSING"}


def backend_sockets(pid, remote_port):
    """{local_port: state} of the backend's TCP sockets to 127.0.0.1:remote_port,
    or None when /proc/PID/fd cannot be read."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", t)
            if m:
                inodes.add(m.group(1))
    except OSError:
        return None
    out = {}
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            p = line.split()
            if len(p) < 10 or p[9] not in inodes:
                continue
            raddr, rport = p[2].split(":")
            if int(rport, 16) == remote_port and raddr == "0100007F":
                out[int(p[1].split(":")[1], 16)] = TCP_STATES.get(p[3], p[3])
    return out


def fmt_socks(s):
    if s is None:
        return "n/a"
    return "%d %s" % (len(s), "{" + ", ".join("%d:%s" % kv for kv in sorted(s.items())) + "}")


# ----------------------------------------------------------------------
# EXPLAIN
# ----------------------------------------------------------------------

def find_nimble_node(plan):
    if isinstance(plan, dict):
        if "Nimble Requests" in plan:
            return plan
        for v in plan.values():
            r = find_nimble_node(v)
            if r is not None:
                return r
    elif isinstance(plan, list):
        for v in plan:
            r = find_nimble_node(v)
            if r is not None:
                return r
    return None


def explain(cur, schema):
    cur.execute("EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) " + QUERY % schema)
    doc = cur.fetchone()[0]
    if isinstance(doc, str):
        doc = json.loads(doc)
    node = find_nimble_node(doc) or {}
    keep = ("Node Type", "Actual Rows", "Nimble Resource", "Nimble Route", "Nimble Requests",
            "Nimble List Pages", "Nimble Retries", "Nimble New Connections",
            "Nimble HTTP Version")
    summary = {k: node.get(k) for k in keep if k in node}
    return node, json.dumps(summary)


def stats_text(node):
    return "requests=%s new_connections=%s http_version=%s rows=%s" % (
        node.get("Nimble Requests"), node.get("Nimble New Connections"),
        node.get("Nimble HTTP Version"), node.get("Actual Rows"))


# ----------------------------------------------------------------------
# main
# ----------------------------------------------------------------------

def curl_sanity(c, nginx, ca):
    r = subprocess.run(["curl", "-sS", "-I", "--http2", "--cacert", ca, "--max-time", "10",
                        "https://127.0.0.1:%d/_mock/count" % nginx.port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = (r.stdout.splitlines() or [""])[0].strip()
    c.check("curl --http2 negotiates h2 with this nginx (TLS verified against the test CA)",
            r.returncode == 0 and first.startswith("HTTP/2 "),
            "status line %r, curl exit %d" % (first, r.returncode), r.stdout)


def run_h2(c, cluster, mock, nginx):
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("SET statement_timeout = '30s'")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    info("h2: backend pid %d, nginx port %d, mock port %d" % (pid, nginx.port, mock.port))

    # query 1: EXPLAIN ANALYZE in a fresh backend
    off = nginx.log_size()
    m0 = mock.count()
    t0 = time.monotonic()
    node, summary = explain(cur, "h2")
    dt1 = time.monotonic() - t0
    log1 = nginx.log_since(off, EXPECTED_REQUESTS)
    socks1 = backend_sockets(pid, nginx.port)
    m1 = mock.count()
    info("h2 query 1 (EXPLAIN): %s, %.0f ms; EXPLAIN node %s" % (stats_text(node), dt1 * 1000, summary))
    c.check("h2 q1: EXPLAIN Nimble Requests == %d" % EXPECTED_REQUESTS,
            node.get("Nimble Requests") == EXPECTED_REQUESTS and node.get("Actual Rows") == NBATCHES,
            stats_text(node), summary)
    c.check("h2 q1: EXPLAIN Nimble HTTP Version == 2",
            node.get("Nimble HTTP Version") == 2, "http_version=%s" % node.get("Nimble HTTP Version"),
            summary)
    c.check("h2 q1: EXPLAIN Nimble New Connections == 1",
            node.get("Nimble New Connections") == 1,
            "new_connections=%s for %s requests" % (node.get("Nimble New Connections"),
                                                    node.get("Nimble Requests")), summary)
    protos = sorted(set(e["proto"] for e in log1))
    conns1 = sorted(set(e["conn"] for e in log1))
    ev1 = "\n".join(e["line"] for e in log1)
    c.check("h2 q1: nginx logged %d requests, all HTTP/2.0 (ALPN h2)" % EXPECTED_REQUESTS,
            len(log1) == EXPECTED_REQUESTS and protos == ["HTTP/2.0"]
            and all(e.get("h2") == "h2" for e in log1),
            "%d lines, $server_protocol %s, $http2 %s" % (
                len(log1), protos, sorted(set(e.get("h2", "?") for e in log1))), ev1)
    creqs = sorted(int(e["creq"]) for e in log1 if e.get("creq", "").isdigit())
    c.check("h2 q1: all on one nginx $connection",
            len(conns1) == 1, "$connection %s, $connection_requests %s..%s" % (
                conns1, creqs[0] if creqs else "?", creqs[-1] if creqs else "?"), ev1)
    ov = max_overlap([e for e in log1 if "msec" in e and e["request"].endswith("/progress HTTP/2.0")]) \
        if log1 and all("msec" in e for e in log1) else 0
    c.check("h2 q1: requests multiplexed (streams in flight at once on that connection >= 2)",
            ov >= 2, "max %d progress requests in flight at once on one connection "
            "(max_concurrency %d, mock latency %s ms)" % (ov, MAX_CONCURRENCY, mock_latency), ev1)
    c.check("h2 q1: the backend holds 1 TCP connection to nginx",
            socks1 is not None and len(socks1) == 1 and list(socks1.values()) == ["ESTABLISHED"],
            "backend sockets to nginx: %s" % fmt_socks(socks1))
    c.check("h2 q1: the mock answered %d API requests" % EXPECTED_REQUESTS,
            m1 - m0 == EXPECTED_REQUESTS, "mock count +%d" % (m1 - m0))

    # query 2: the plain SELECT, same backend
    off = nginx.log_size()
    cur.execute(QUERY % "h2")
    rows = cur.fetchall()
    log2 = nginx.log_since(off, EXPECTED_REQUESTS)
    conns2 = sorted(set(e["conn"] for e in log2))
    socks2 = backend_sockets(pid, nginx.port)
    c.check("h2 q2: plain SELECT * returns %d rows, %d HTTP/2.0 requests on the same "
            "$connection as q1" % (NBATCHES, EXPECTED_REQUESTS),
            len(rows) == NBATCHES and len(log2) == EXPECTED_REQUESTS and conns2 == conns1
            and all(e["proto"] == "HTTP/2.0" for e in log2),
            "%d rows; %d log lines, $connection %s (q1 %s), $connection_requests up to %s" % (
                len(rows), len(log2), conns2, conns1,
                max((int(e["creq"]) for e in log2 if e.get("creq", "").isdigit()), default="?")),
            "\n".join(e["line"] for e in log2))

    # query 3: EXPLAIN ANALYZE again, same backend
    off = nginx.log_size()
    node3, summary3 = explain(cur, "h2")
    log3 = nginx.log_since(off, EXPECTED_REQUESTS)
    conns3 = sorted(set(e["conn"] for e in log3))
    socks3 = backend_sockets(pid, nginx.port)
    info("h2 query 3 (EXPLAIN): %s; EXPLAIN node %s" % (stats_text(node3), summary3))
    c.check("h2 q3: EXPLAIN Nimble New Connections == 0 (connection reused across queries)",
            node3.get("Nimble New Connections") == 0 and node3.get("Nimble HTTP Version") == 2
            and node3.get("Nimble Requests") == EXPECTED_REQUESTS,
            stats_text(node3), summary3)
    c.check("h2 q3: nginx: same $connection, HTTP/2.0; backend socket unchanged",
            conns3 == conns1 and all(e["proto"] == "HTTP/2.0" for e in log3)
            and socks3 is not None and socks3 == socks1,
            "$connection %s (q1 %s); backend sockets q1 %s, q3 %s" % (
                conns3, conns1, fmt_socks(socks1), fmt_socks(socks3)),
            "\n".join(e["line"] for e in log3))
    cur.close()
    conn.close()


def run_h1(c, cluster, mock):
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("SET statement_timeout = '30s'")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    info("h1: backend pid %d (a fresh one), mock port %d" % (pid, mock.port))

    counter = MockCounter(mock.port)
    tw0 = time_waits(mock.port)
    m0 = counter.count()
    node, summary = explain(cur, "h1")
    m1 = counter.count()
    socks1 = backend_sockets(pid, mock.port)
    tw1 = time_waits(mock.port)
    info("h1 query 1: connections to the mock closed during it: %d by a client, %d by the mock "
         "(TIME_WAIT entries, the side that closed first keeps one)"
         % (tw1[0] - tw0[0], tw1[1] - tw0[1]))
    info("h1 query 1 (EXPLAIN): %s; backend sockets to the mock %s" % (stats_text(node), fmt_socks(socks1)))
    c.check("h1 q1: EXPLAIN Nimble Requests == %d, HTTP Version == 1" % EXPECTED_REQUESTS,
            node.get("Nimble Requests") == EXPECTED_REQUESTS and node.get("Nimble HTTP Version") == 1
            and m1 - m0 == EXPECTED_REQUESTS,
            "%s; mock count +%d" % (stats_text(node), m1 - m0), summary)
    nc = node.get("Nimble New Connections")
    c.check("h1 q1: 1 <= New Connections <= max_concurrency (%d) for %d requests"
            % (MAX_CONCURRENCY, EXPECTED_REQUESTS),
            isinstance(nc, int) and 1 <= nc <= MAX_CONCURRENCY,
            "new_connections=%s; backend sockets to the mock after q1: %s" % (nc, fmt_socks(socks1)),
            summary)

    node2, summary2 = explain(cur, "h1")
    socks2 = backend_sockets(pid, mock.port)
    info("h1 query 2 (EXPLAIN): %s; backend sockets to the mock %s" % (stats_text(node2), fmt_socks(socks2)))
    nc2 = node2.get("Nimble New Connections")
    gone = sorted(set(socks1 or {}) - set(socks2 or {}))
    peer_closed = sorted(p for p, st in list((socks1 or {}).items()) + list((socks2 or {}).items())
                         if st != "ESTABLISHED")
    evidence = "%s\nlocal ports after q1 %s, after q2 %s\nq1 sockets gone by q2: %s; " \
               "sockets the mock had closed (CLOSE_WAIT etc.): %s\nwho closed each port of " \
               "this backend that is gone (TIME_WAIT stays on the side that closed first): %s" % (
                   summary2, sorted(socks1 or {}), sorted(socks2 or {}), gone, peer_closed,
                   closed_by(sorted(set(socks1 or {}) | set(socks2 or {})) , mock.port, socks2))
    c.check("h1 q2: EXPLAIN Nimble New Connections == 0 and the same sockets (keep-alive "
            "reused across queries)",
            nc2 == 0 and node2.get("Nimble HTTP Version") == 1
            and node2.get("Nimble Requests") == EXPECTED_REQUESTS
            and socks1 is not None and socks2 == socks1,
            "%s; backend sockets to the mock after q1 %d, after q2 %d, %d of q1's gone" % (
                stats_text(node2), len(socks1 or {}), len(socks2 or {}), len(gone)), evidence)
    counter.close()
    cur.close()
    conn.close()


def run_h1_control(c, cluster, mock, conc):
    """The same repeat with max_concurrency = conc (4, libcurl's floor of its
    default connection-cache size: 4 x the easy handles in the multi handle
    when a transfer ends, so 4 when a scan's last one ends)."""
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("SET statement_timeout = '30s'")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    res = []
    socks = []
    for _ in range(3):
        node, summary = explain(cur, "h1c%d" % conc)
        res.append(node.get("Nimble New Connections"))
        socks.append(backend_sockets(pid, mock.port))
    c.check("h1 control, max_concurrency %d: New Connections <= %d, then 0, 0 (same sockets)"
            % (conc, conc),
            isinstance(res[0], int) and 1 <= res[0] <= conc and res[1:] == [0, 0]
            and socks[0] is not None and socks[0] == socks[1] == socks[2],
            "new connections per query %s; sockets after each %s" % (
                res, [len(s or {}) for s in socks]))
    cur.close()
    conn.close()


def time_waits(mock_port):
    """(client-side, mock-side) TIME_WAIT entries of connections to the mock."""
    client = server = 0
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            p = line.split()
            if len(p) > 3 and p[3] == "06":
                lport = int(p[1].split(":")[1], 16)
                rport = int(p[2].split(":")[1], 16)
                if rport == mock_port:
                    client += 1
                elif lport == mock_port:
                    server += 1
    return client, server


def closed_by(ports, mock_port, still_open):
    """For each local port no longer open: 'backend' when a TIME_WAIT entry
    127.0.0.1:port -> mock_port exists (the backend closed first), 'mock'
    when the reverse exists, '?' otherwise."""
    tw = set()
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            p = line.split()
            if len(p) > 3 and p[3] == "06":
                tw.add((int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16)))
    out = {}
    for port in ports:
        if still_open and port in still_open:
            continue
        out[port] = "backend" if (port, mock_port) in tw else \
            "mock" if (mock_port, port) in tw else "?"
    return out


mock_latency = None


def main():
    global mock_latency
    ap = argparse.ArgumentParser(description="HTTP/2 and keep-alive checks of nimble_fdw")
    ap.add_argument("--latency-ms", type=int, default=100,
                    help="mock latency per API request, so that requests overlap (default 100)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directories")
    ap.add_argument("--verbose", action="store_true", help="print the nginx access log at the end")
    a = ap.parse_args()
    mock_latency = a.latency_ms

    relib.bootstrap()
    subprocess.check_call(["bash", str(REPO / "test" / "install_packages.sh"), "nginx-light", "openssl"])
    for tool in ("nginx", "openssl", "curl"):
        if shutil.which(tool) is None:
            sys.exit("%s not found" % tool)

    t_start = time.monotonic()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIME_LIMIT_S)
    c = Checks()
    so = relib.installed_so()
    info("extension %s md5 %s; %s" % (so, relib.md5_of(so), relib.repo_state()))

    d = tempfile.mkdtemp(prefix="nimble_h2_", dir="/tmp")
    os.chmod(d, 0o755)
    nginx = None
    error = None
    try:
        ca = make_certs(d)
        with relib.harness("h2", mock_args=("--latency-ms", str(a.latency_ms)), keep=a.keep) \
                as (cluster, mock):
            nginx = Nginx(d, mock.port)
            nginx.start()
            info("nginx %s on https://127.0.0.1:%d (pid %d), workers %s, conf %s" % (
                nginx_version(), nginx.port, nginx.proc.pid, nginx.children(), nginx.conf))
            curl_sanity(c, nginx, ca)
            conn = cluster.connect()
            relib.sql_setup(conn, mock, {
                "h2": ("https://127.0.0.1:%d/v1" % nginx.port,
                       {"ca_bundle": ca, "page_size": "100",
                        "max_concurrency": str(MAX_CONCURRENCY)}),
                "h1": ("", {"page_size": "100", "max_concurrency": str(MAX_CONCURRENCY)}),
                "h1c4": ("", {"page_size": "100", "max_concurrency": "4"}),
            })
            conn.close()
            run_h2(c, cluster, mock, nginx)
            run_h1(c, cluster, mock)
            run_h1_control(c, cluster, mock, 4)
            if a.verbose:
                print(open(nginx.access_log).read())
            errs = [l for l in nginx.errors().splitlines()
                    if re.search(r"\[(emerg|alert|crit|error)\]", l)]
            c.check("nginx error log has no error/crit/alert/emerg lines", not errs,
                    "%d such lines" % len(errs), "\n".join(errs[:20]))
            crashes = cluster.crash_lines()
            c.check("postgres log shows no crash", not crashes, "%d crash lines" % len(crashes),
                    "\n".join(crashes))
            rc, left, pidfile = nginx.stop()
            c.check("nginx stopped cleanly", rc == 0 and not left and not pidfile,
                    "exit status %s, workers left %s, pid file left %s" % (rc, left, pidfile),
                    nginx.errors()[-2000:])
    except (Timeout, Exception) as e:        # report, then clean up
        error = "%s: %s" % (type(e).__name__, e)
    finally:
        signal.alarm(0)
        if nginx is not None and nginx.proc is not None and nginx.proc.poll() is None:
            nginx.stop()
        if a.keep:
            info("kept %s" % d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    if error:
        c.check("harness ran to the end", False, error)
    dt = time.monotonic() - t_start
    info("runtime %.1f s" % dt)
    if c.failed:
        print("http2: %d checks passed, %d failed: %s" % (c.passed, len(c.failed), "; ".join(c.failed)))
        return 1
    print("http2: %d checks passed" % c.passed)
    return 0


def nginx_version():
    r = subprocess.run(["nginx", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.stdout.strip().split("/")[-1]


if __name__ == "__main__":
    sys.exit(main())
