"""harness.py: start a real `socklab serve` for integration tests, talk HTTP and WebSocket to it.

The server runs from $SOCKLAB_ASAN (the sanitizer build) when it exists, else
$SOCKLAB, on a free port (--http-port 0: dashboard, API and WebSocket at /ws on
one port; pass --ws-port 0 in extra for the separate WebSocket port) with a
fresh data directory,
and is stopped with SIGTERM; stop() asserts a clean exit and no sanitizer report
from the server or from any run it started. Every wait polls a real condition
against a deadline; nothing sleeps to synchronise.
"""
import asyncio
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import websockets

from tap import check, eq

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def binary():
    for var in ("SOCKLAB_ASAN", "SOCKLAB"):
        path = os.environ.get(var)
        if path and os.path.exists(path):
            return path
    return "build/socklab"


def wait_for(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a true value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def children_of(pid):
    """Pids whose parent is pid (from /proc/*/stat)."""
    kids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain anything.
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(stat.split("/")[2]))
    return kids


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].split()[0] != "Z"


def free_port_range(n):
    """A run of n consecutive TCP ports on 127.0.0.1 that are free right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    start = s.getsockname()[1]
    s.close()
    for base in list(range(start, 60000 - n, 97)) + list(range(20000, 30000, 89)):
        ok = True
        for p in range(base, base + n):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
            if not ok:
                break
        if ok:
            return base, base + n - 1
    raise AssertionError("no free port range")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Server:
    """One `socklab serve` process with its own data directory. wrap is a
    command that runs the server (it must exec it, so the pid stays)."""

    def __init__(self, *extra, data=None, env=None, preexec_fn=None, wrap=(), bin=None):
        self.tmp = tempfile.mkdtemp(prefix="socklab-it-")
        self.data = data or os.path.join(self.tmp, "data")
        self.port_file = os.path.join(self.tmp, "ports.json")
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.bin = bin or binary()
        penv = dict(os.environ)
        penv.update(env or {})
        self.argv = [*wrap, self.bin, "serve", "--http-port", "0",
                     "--port-file", self.port_file, "--data", self.data, *extra]
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=penv,
                                         preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        ports = wait_for(self._read_ports, 30, "the port file")
        self.http_port = ports["http_port"]
        self.ws_port = ports["ws_port"]
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.ws_path = ports.get("ws_path", "/")  # builds before one port: "/"
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}{self.ws_path}"
        self.stopped = False

    def _read_ports(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.stderr()}")
        try:
            with open(self.port_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def stdout(self):
        with open(self.stdout_path) as f:
            return f.read()

    # ---- HTTP ----

    def request(self, path, method="GET", data=None):
        req = urllib.request.Request(self.base + path, method=method, data=data)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path):
        return self.request(path)

    def get_json(self, path, status=200):
        r = self.get(path)
        eq(r.status, status, f"GET {path} status")
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("application/json"), f"GET {path}: Content-Type {ctype!r}")
        return r.json()

    def wait_run_status(self, run_id, timeout=30):
        """Wait until meta.json says the run is no longer running; return it."""
        def done():
            r = self.get(f"/api/runs/{run_id}")
            if r.status != 200:
                return None
            meta = r.json()
            return meta if meta["status"] != "running" else None
        return wait_for(done, timeout, f"run {run_id} to finish")

    # ---- WebSocket ----

    def connect(self, origin=None, subprotocols=("socklab.v1",), **kw):
        """An awaitable context manager: async with srv.connect() as ws."""
        return websockets.connect(self.ws_url, subprotocols=list(subprotocols) or None,
                                  origin=origin, max_size=None, open_timeout=20,
                                  close_timeout=5, **kw)

    # ---- processes ----

    def children(self):
        return [p for p in children_of(self.pid) if pid_alive(p)]

    def wait_no_children(self, timeout=20):
        wait_for(lambda: not self.children(), timeout, "the server's run processes to exit")

    # ---- shutdown ----

    def sanitizer_reports(self):
        """Sanitizer reports from the server and from every run's stderr.log."""
        texts = [("server stderr", self.stderr())]
        for log in glob.glob(os.path.join(self.data, "runs", "*", "stderr.log")):
            with open(log, errors="replace") as f:
                texts.append((log, f.read()))
        bad = []
        for name, text in texts:
            for mark in SANITIZER_MARKS:
                if mark in text:
                    bad.append(f"{name}: {text[text.find(mark):][:600]}")
        return bad

    def stop(self, timeout=20):
        """SIGTERM, then assert exit status 0 and no sanitizer report."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not exit within {timeout}s of SIGTERM")
        bad = self.sanitizer_reports()
        check(not bad, "sanitizer report: " + " | ".join(bad))
        eq(rc, 0, f"server exit status (stderr: {self.stderr()[-500:]})")

    def kill(self):
        """Last-resort cleanup for a test that failed half way."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- WebSocket helpers (asyncio; websockets 10.4 has no sync client) ----

async def send(ws, obj):
    await ws.send(obj if isinstance(obj, str) else json.dumps(obj))


def _pending(ws):
    """Run events that arrived while request() waited for a reply, in order."""
    if not hasattr(ws, "socklab_pending"):
        ws.socklab_pending = []
    return ws.socklab_pending


async def recv(ws, timeout=30):
    """The next message: a held-back event first, else from the socket."""
    pending = _pending(ws)
    if pending:
        return pending.pop(0)
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, obj, timeout=30):
    """Send one op and return its reply; run events that arrive first are
    held back for the next recv(), and so is a server's unsolicited
    {"type":"cluster"} notice (--nats: classes across replicas degraded)."""
    await send(ws, obj)
    held = []
    try:
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if "seq" not in m and m.get("type") != "cluster":
                return m
            held.append(m)
    finally:
        _pending(ws).extend(held)


async def start_run(ws, params, lab="tcp-echo", tag=None):
    msg = {"op": "run", "lab": lab, "params": params}
    if tag is not None:
        msg["tag"] = tag
    reply = await request(ws, msg)
    eq(reply.get("type"), "run.accepted", f"reply to run {params}: {reply}")
    return reply["run"]


async def events_until_end(ws, run_id, timeout=60, until=None):
    """Collect run_id's events until its run.end (or until(ev) is true)."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no run.end for {run_id} within {timeout}s "
                                 f"(last: {events[-1:] if events else None})")
        m = await recv(ws, left)
        if m.get("run") != run_id or "seq" not in m:
            continue
        events.append(m)
        if m["type"] == "run.end" or (until and until(m)):
            return events


def check_stream(events):
    """The event contract: run.start first, run.end last, seq gap-free from 0."""
    check(events, "no events")
    eq(events[0]["type"], "run.start", "first event")
    eq(events[-1]["type"], "run.end", "last event")
    for i, ev in enumerate(events):
        eq(list(ev)[:6], ["v", "run", "seq", "t_us", "lab", "type"], f"envelope of seq {i}")
        eq(ev["seq"], i, "seq")
        eq(ev["run"], events[0]["run"], "run id")
