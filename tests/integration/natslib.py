"""natslib.py: a real nats-server -js for the NATS tests, and the helpers they share.

Each Nats() starts Debian's nats-server with JetStream on a free port and a
store of its own (the test is skipped, saying why, without it).
"""
import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile

from harness import Server, events_until_end, start_run, wait_for
from tap import Skip, eq

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NATS_SERVER = shutil.which("nats-server")
READER = os.path.join(ROOT, "build", "tests", "nats_read")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nats:
    """One nats-server -js on 127.0.0.1:port with its store in store_dir."""

    def __init__(self, port=None, store_dir=None):
        if not NATS_SERVER:
            raise Skip("nats-server is missing: apt-get install nats-server "
                       "(server/tools/install-deps.sh test)")
        self.port = port or free_port()
        self.store = store_dir or tempfile.mkdtemp(prefix="socklab-nats-")
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([NATS_SERVER, "-js", "-sd", self.store, "-a", "127.0.0.1",
                                      "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        atexit.register(self.stop)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server exited: {self.proc.stderr.read().decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 20, "nats-server to listen")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stream_lines(url, run_id):
    r = subprocess.run([READER, url, "SOCKLAB_RUNS", f"socklab.runs.{run_id}"],
                       capture_output=True, timeout=60)
    eq(r.returncode, 0, f"nats_read: {r.stderr.decode()}")
    return r.stdout


def bundle_bytes(s, run_id):
    with open(os.path.join(s.data, "runs", run_id, "events.jsonl"), "rb") as f:
        return f.read()


def nats_health(s):
    return s.get_json("/api/health").get("nats")


def one_run(s, messages=3):
    async def go():
        async with s.connect() as ws:
            rid = await start_run(ws, {"messages": messages})
            events = await events_until_end(ws, rid)
        eq(events[-1]["status"], "ok", "run.end")
        return rid, len(events)
    return asyncio.run(go())


def server(*args):
    s = Server(*args)
    atexit.register(s.cleanup)
    return s


def done(s):
    s.stop()
    s.cleanup()
