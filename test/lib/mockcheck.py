"""mockcheck.py - what the mocks' self-checks share.

test/mock_selfcheck.py (test/mock_nimble.py) and test/mock_apis_selfcheck.py
(test/mock_scrape.py, test/mock_factcheck.py) start a mock as a
subprocess, talk to it over one keep-alive connection or raw sockets, and
count their checks with these.  Standard library only.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Checks:
    """chk(what, cond, detail) counts a check, and prints it if it fails."""

    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, []

    def __call__(self, what, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
            print("FAIL %s: %s %s" % (self.name, what, str(detail)[:400]), flush=True)

    def run(self, fn, *args):
        """fn(self, *args); an exception is one failed check."""
        try:
            fn(self, *args)
        except Exception:
            traceback.print_exc()
            self(fn.__name__ + " raised", False)


# --------------------------------------------------------------------------
# the mock process
# --------------------------------------------------------------------------

def start_mock(script, *args, timeout=30):
    """test/SCRIPT on a free loopback port -> (process, port), once listening."""
    tmp = tempfile.mkdtemp(prefix="mockcheck")
    pf = os.path.join(tmp, "port")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, os.path.join(TEST_DIR, script), "--port", "0",
                             "--port-file", pf] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not os.path.exists(pf):
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError("%s did not start: %s" % (script, proc.stderr.read().decode()))
        time.sleep(0.02)
    port = int(open(pf).read())
    os.unlink(pf)
    os.rmdir(tmp)
    return proc, port


def stop_mock(proc):
    """SIGTERM -> (exit status, or None if it had to be killed; its stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    return rc, proc.stderr.read()


def check_stopped(chk, proc):
    """Stop the mock: it must exit 0 and have written nothing to stderr."""
    rc, err = stop_mock(proc)
    chk("clean SIGTERM exit", rc == 0, rc)
    chk("stderr empty", err == b"", err[:500])


# --------------------------------------------------------------------------
# talking to it
# --------------------------------------------------------------------------

class Client:
    """One keep-alive connection; auth: the headers sent by default."""

    def __init__(self, port, auth):
        self.port, self.auth = port, auth
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def req(self, path, headers=None, method="GET", body=None):
        """-> (status, lower-case headers, body); reuses the connection."""
        if headers is None:
            headers = self.auth
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=dict(headers))
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError

    def json(self, path, **kw):
        s, h, b = self.req(path, **kw)
        return s, json.loads(b)

    def ctl(self, path, method="GET", body=None):
        """A control request (no auth) -> its text."""
        return self.req("/_mock/" + path, headers={}, method=method, body=body)[2].decode()


def raw(port, path, headers, timeout=5):
    """A GET sent on a raw socket, for answers http.client cannot read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    hdr = "".join("%s: %s\r\n" % kv for kv in headers.items())
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, hdr)).encode())
    return s


def read_all(s):
    """-> (bytes, how it ended: "eof", "reset" or "timeout")."""
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return buf, "timeout"
        except ConnectionResetError:
            return buf, "reset"
        if not d:
            return buf, "eof"
        buf += d


def split_resp(buf):
    """Raw answer -> (status, lower-case headers, body)."""
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]) if lines[0] else 0, hdrs, body


def not_utf8(b):
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True
