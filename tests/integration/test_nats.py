"""test_nats.py: --nats: every run event appended to the JetStream stream SOCKLAB_RUNS.

Against a real nats-server (Debian's, with JetStream) that each test starts on
a free port with its own store; the stream is read back with
build/tests/nats_read and compared with the run's bundle byte for byte. NATS
down at start, and NATS restarted, must not stop runs: their events wait and
reach the stream once it is back. Every wait polls a real condition.
"""
import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, binary, events_until_end, start_run, wait_for  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

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


def need_reader():
    check(os.path.exists(READER), f"{READER} is missing: make unit builds it")


@test
def every_event_of_a_run_is_in_the_stream_as_in_the_bundle():
    need_reader()
    n = Nats()
    s = server("--nats", n.url)
    rid, count = one_run(s)
    wait_for(lambda: nats_health(s)["acked"] >= count, 30, "the stream to acknowledge the run")
    h = nats_health(s)
    eq((h["state"], h["stream"], h["published"], h["acked"], h["failed"], h["dropped"],
        h["queued"]), ("connected", "SOCKLAB_RUNS", count, count, 0, 0, 0), "health")
    eq(stream_lines(n.url, rid), bundle_bytes(s, rid), "the stream's lines equal events.jsonl")
    done(s)
    n.stop()


@test
def without_nats_health_has_no_nats_section():
    s = server()
    check("nats" not in s.get_json("/api/health"), "a nats section without --nats")
    done(s)


@test
def a_nats_that_is_down_at_start_does_not_stop_runs_and_gets_them_later():
    need_reader()
    port = free_port()
    s = server("--nats", f"nats://127.0.0.1:{port}")
    eq(s.get("/api/health").status, 200, "the server serves without NATS")
    eq(nats_health(s)["state"], "connecting", "health says NATS is not reached")
    rid, count = one_run(s)
    h = nats_health(s)
    eq((h["published"], h["queued"], h["dropped"]), (0, count, 0),
       "the run's lines wait for NATS")
    n = Nats(port=port)
    wait_for(lambda: nats_health(s)["acked"] >= count, 60, "the lines to reach the stream")
    eq(nats_health(s)["state"], "connected", "state after NATS came")
    eq(stream_lines(n.url, rid), bundle_bytes(s, rid), "the stream equals the bundle")
    done(s)
    n.stop()


@test
def a_restarted_nats_gets_the_runs_of_its_absence():
    need_reader()
    n = Nats()
    s = server("--nats", n.url)
    rid1, count1 = one_run(s)
    wait_for(lambda: nats_health(s)["acked"] >= count1, 30, "the first run acknowledged")
    n.stop()
    wait_for(lambda: nats_health(s)["state"] == "reconnecting", 30, "the server to notice")
    rid2, count2 = one_run(s)
    check(nats_health(s)["queued"] + nats_health(s)["published"] >= count1 + count2,
          "the second run's lines are kept")
    n = Nats(port=n.port, store_dir=n.store)
    wait_for(lambda: nats_health(s)["acked"] >= count1 + count2, 60,
             "the second run to reach the restarted NATS")
    eq(nats_health(s)["failed"], 0, "no acknowledgement failed")
    for rid in (rid1, rid2):
        eq(stream_lines(n.url, rid), bundle_bytes(s, rid), f"run {rid}: stream equals bundle")
    done(s)
    n.stop()


@test
def a_bad_nats_url_is_refused_naming_the_flag():
    for bad in ("http://127.0.0.1:4222", "nats://", "nats://host:99999", "nats://a b"):
        r = subprocess.run([binary(), "serve", "--http-port", "0", "--nats", bad],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, f"--nats {bad}: exit status")
        check("--nats: must be a nats:// URL" in r.stderr, f"--nats {bad}: {r.stderr!r}")


if __name__ == "__main__":
    run()
