"""relib.py - the plumbing of the tests that run a real PostgreSQL.

test/reliability/*.py, test/cron/cron_test.py, test/http2/h2_check.py and
test/bench/bench.py get from here: a private PostgreSQL cluster (initdb +
postgres run as the postgres user, on a free port, its socket in a private
/tmp directory; PG_CONFIG, PG_MAJOR or the newest installed), the bundled
mock API (test/mock_nimble.py) on a free loopback port, the extension's
build/install under the shared build lock, psycopg2 (installed by
test/reliability/deps.sh when missing), /proc readings and small
statistics helpers.

Everything a test starts is started here and stopped here, by pid.
Traffic goes to 127.0.0.1 only.
"""
import contextlib
import hashlib
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
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
MOCK = REPO / "test" / "mock_nimble.py"
DEPS = REPO / "test" / "reliability" / "deps.sh"
SYS_PYTHON = "/usr/bin/python3"


def _default_pg_config():
    """PG_CONFIG, else PG_MAJOR's, else the newest PostgreSQL installed."""
    if os.environ.get("PG_CONFIG"):
        return os.environ["PG_CONFIG"]
    if os.environ.get("PG_MAJOR"):
        return "/usr/lib/postgresql/%s/bin/pg_config" % os.environ["PG_MAJOR"]
    found = sorted((int(v), v) for v in os.listdir("/usr/lib/postgresql")
                   if v.isdigit()) if os.path.isdir("/usr/lib/postgresql") else []
    return "/usr/lib/postgresql/%s/bin/pg_config" % (found[-1][1] if found else "15")


PG_CONFIG = _default_pg_config()


def pg_major():
    """The major version of PG_CONFIG's PostgreSQL, as a string ("17")."""
    out = subprocess.check_output([PG_CONFIG, "--version"], text=True)
    return re.match(r"PostgreSQL (\d+)", out).group(1)


BUILD_LOCK = "/tmp/nimble_build.lock"


def bootstrap(extra=()):
    """Make sure psycopg2 is importable: install the Debian packages when
    missing and re-run this script under Debian's python3."""
    try:
        import psycopg2  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("NIMBLE_REL_BOOTSTRAPPED"):
        sys.exit("psycopg2 still cannot be imported by %s" % sys.executable)
    subprocess.check_call(["bash", str(DEPS), *extra])
    os.environ["NIMBLE_REL_BOOTSTRAPPED"] = "1"
    os.execv(SYS_PYTHON, [SYS_PYTHON, *sys.argv])


def log(*args):
    print(time.strftime("[%H:%M:%S]"), *args, file=sys.stderr, flush=True)


def pg_bindir():
    return subprocess.check_output([PG_CONFIG, "--bindir"], text=True).strip()


def pg_pkglibdir():
    return subprocess.check_output([PG_CONFIG, "--pkglibdir"], text=True).strip()


def installed_so():
    return os.path.join(pg_pkglibdir(), "nimble_fdw.so")


def md5_of(path):
    try:
        with open(path, "rb") as f:
            return hashlib.md5(f.read()).hexdigest()
    except OSError:
        return "missing"


def repo_state():
    """The commit and whether the work tree differs from it (others edit)."""
    def git(*a):
        try:
            return subprocess.check_output(["git", "-C", str(REPO), *a], text=True,
                                           stderr=subprocess.DEVNULL).strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "Makefile")
    return head + (" + uncommitted changes in src/ or Makefile" if dirty else "")


def build_install(skip=False):
    if skip:
        log("build: skipped (--no-build)")
    else:
        log("build: flock %s make -C %s install" % (BUILD_LOCK, REPO))
        r = subprocess.run(["flock", BUILD_LOCK, "make", "-s", "-C", str(REPO),
                            "PG_CONFIG=" + PG_CONFIG, "install"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout)
            sys.exit("build failed")
    so = installed_so()
    return {"so": so, "md5": md5_of(so), "repo": repo_state()}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


# ----------------------------------------------------------------------
# the mock API
# ----------------------------------------------------------------------

class Mock:
    def __init__(self, workdir, *args, script=MOCK):
        """A mock API: test/mock_nimble.py, or another test/mock_*.py."""
        self.workdir = workdir
        name = Path(script).stem
        portfile = os.path.join(workdir, name + ".port")
        self.logpath = os.path.join(workdir, name + ".log")
        self.proc = subprocess.Popen(
            [SYS_PYTHON, str(script), "--port", "0", "--port-file", portfile, *args],
            stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(portfile) and open(portfile).read().strip():
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            pass
        if not os.path.exists(portfile):
            self.stop()
            sys.exit("the mock API did not start: " + open(self.logpath).read())
        self.port = int(open(portfile).read().strip())
        self.base = "http://127.0.0.1:%d" % self.port

    def url(self, prefix=""):
        return self.base + ("/" + prefix.strip("/") if prefix else "") + "/v1"

    def _get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.read().decode()

    def reset(self):
        return self._get("/_mock/reset")

    def count(self, endpoint=None):
        return int(self._get("/_mock/count" + ("?endpoint=" + endpoint if endpoint else "")))

    def stats(self):
        return json.loads(self._get("/_mock/stats"))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ----------------------------------------------------------------------
# a private cluster
# ----------------------------------------------------------------------

BASE_CONF = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'32MB'",
    "max_connections": "40",
    "jit": "off",
    "log_line_prefix": "'%m [%p] '",
    # LOG (crash reports of the postmaster) stays in; each ERROR does not
    "log_min_messages": "log",
    "log_min_error_statement": "panic",
    "timezone": "'UTC'",
    "lc_messages": "'C'",
    # the mock API listens on loopback, on a port of its choosing (a
    # placeholder until the module loads;
    # harmless for builds without the setting)
    "nimble_fdw.allowed_hosts": "'127.0.0.1:*'",
}


class Cluster:
    """initdb'd cluster in a private directory, run as the postgres user."""

    def __init__(self, name, conf=None):
        self.dir = tempfile.mkdtemp(prefix="nimble_rel_%s_" % name, dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.logpath = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.bindir = pg_bindir()
        self.proc = None
        self.postmaster_pid = None
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.check_call(as_postgres([
            os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust",
            "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]),
            stdout=subprocess.DEVNULL)
        c = dict(BASE_CONF)
        c["port"] = str(self.port)
        c["unix_socket_directories"] = "'%s'" % self.dir
        c.update(conf or {})
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# nimble_fdw reliability harness\n")
            for k, v in c.items():
                if v is not None:       # None: leave the setting out
                    f.write("%s = %s\n" % (k, v))

    def start(self, wrapper=(), timeout=120):
        """Start postgres (under wrapper, e.g. valgrind) and wait for it."""
        cmd = as_postgres([*wrapper, os.path.join(self.bindir, "postgres"), "-D", self.data])
        self.proc = subprocess.Popen(cmd, stdout=open(self.logpath, "a"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited at start:\n" + self.log_text()[-3000:])
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-q", "-U", "postgres", "-h", self.dir,
                                "-p", str(self.port)])
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("postgres did not start in %ds" % timeout)
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.postmaster_pid = int(f.readline())
        return self

    def postmaster_alive(self):
        if self.postmaster_pid is None:
            return False
        try:
            os.kill(self.postmaster_pid, 0)
        except OSError:
            return False
        return self.proc is None or self.proc.poll() is None

    def stop(self, timeout=120):
        if self.postmaster_pid and self.postmaster_alive():
            os.kill(self.postmaster_pid, signal.SIGINT)  # fast shutdown
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.postmaster_alive():
                time.sleep(0.2)
            if self.postmaster_alive():
                os.kill(self.postmaster_pid, signal.SIGQUIT)
                time.sleep(2)
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, dbname="postgres"):
        return "host=%s port=%d user=postgres dbname=%s" % (self.dir, self.port, dbname)

    def connect(self, autocommit=True, dbname="postgres", **kw):
        import psycopg2
        conn = psycopg2.connect(self.dsn(dbname), **kw)
        conn.autocommit = autocommit
        return conn

    def log_text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    CRASH_PATTERNS = [
        r"terminated by signal",
        r"was terminated by exception",
        r"exited with exit code",
        r"terminating any other active server processes",
        r"all server processes terminated; reinitializing",
        r"\bPANIC:",
        r"TRAP:",
    ]

    def crash_lines(self):
        pat = re.compile("|".join(self.CRASH_PATTERNS))
        return [l for l in self.log_text().splitlines() if pat.search(l)]


def sql_setup(conn, mock, servers, table_sql=()):
    """servers: {name: (prefix, {option: value})}; one schema per server
    holding its imported tables."""
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS nimble_fdw")
    for name, (prefix, opts) in servers.items():
        url = prefix if prefix.startswith("http") else mock.url(prefix)
        # the mock has no rate limit: the harness measures everything else
        o = {"url": url, "max_requests_per_second": "0"}
        o.update(opts)
        optsql = ", ".join("%s %s" % (k, quote_lit(str(v))) for k, v in o.items())
        cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER nimble_fdw OPTIONS (%s)"
                    % (name, optsql))
        cur.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key 'test-key')"
                    % name)
        cur.execute("CREATE SCHEMA %s" % name)
        cur.execute("IMPORT FOREIGN SCHEMA nimble FROM SERVER %s INTO %s" % (name, name))
    for s in table_sql:
        cur.execute(s)
    cur.close()


def set_statement_timeout(cur, ms, tries=50):
    """SET statement_timeout = ms.  The SET itself runs under the timeout in
    force, so after a 15 ms timeout a SET delayed by a loaded machine can be
    cancelled: try again (harness plumbing, not a finding).  Returns how many
    tries were cancelled."""
    import psycopg2
    for i in range(tries):
        try:
            cur.execute("SET statement_timeout = %d" % ms)
            return i
        except psycopg2.errors.QueryCanceled:
            continue
    raise RuntimeError("could not SET statement_timeout in %d tries" % tries)


def quote_lit(s):
    return "'" + s.replace("'", "''") + "'"


# ----------------------------------------------------------------------
# /proc
# ----------------------------------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def fd_census(pid):
    """{'total': n, 'socket': n, 'eventpoll': n, 'pipe': n, 'file': n, ...}"""
    kinds = {}
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:"):
            k = "socket"
        elif t.startswith("pipe:"):
            k = "pipe"
        elif t.startswith("anon_inode:"):
            k = t[len("anon_inode:"):].strip("[]")
        else:
            k = "file"
        kinds[k] = kinds.get(k, 0) + 1
    kinds["total"] = sum(kinds.values())
    return kinds


def tcp_conns_of(pid):
    """Count the backend's TCP sockets by state (from /proc/net/tcp)."""
    inodes = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", t)
        if m:
            inodes.add(m.group(1))
    states = {}
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN",
             "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "07": "CLOSE",
             "09": "LAST_ACK", "0B": "CLOSING"}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes:
                st = names.get(parts[3], parts[3])
                states[st] = states.get(st, 0) + 1
    return states


# ----------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))  # ceil
    return v[int(k) - 1]


def median(values):
    if not values:
        return float("nan")
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def machine():
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = []
    return {"nproc": os.cpu_count(), "mem_gib": round(mem_kb / 1048576, 1),
            "cpu": model, "loadavg": " ".join(load),
            "kernel": os.uname().release}


def write_json(path, obj):
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2, default=str)


@contextlib.contextmanager
def harness(name, conf=None, mock_args=(), keep=False, wrapper=()):
    """Yields (cluster, mock) started; stops both at the end."""
    cluster = Cluster(name, conf)
    mock = None
    try:
        mock = Mock(cluster.dir, *mock_args)
        cluster.start(wrapper=wrapper)
        yield cluster, mock
    finally:
        if mock:
            mock.stop()
        cluster.stop()
        if not keep:
            cluster.remove()


def finish(res, failures, build, t_start, json_path):
    """Record in res the build after the run, the time and the verdict,
    write it to json_path and print the failures; returns "PASS" or
    "FAIL"."""
    res["build_after"] = {"md5": md5_of(build["so"])}
    if res["build_after"]["md5"] != build["md5"]:
        res["note"] = "the installed nimble_fdw.so changed during the run (someone else installed)"
    res["seconds"] = round(time.time() - t_start, 1)
    res["ok"] = not failures
    write_json(json_path, res)
    for f in failures:
        print("FAIL:", f)
    return "PASS" if not failures else "FAIL"
