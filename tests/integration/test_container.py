"""test_container.py: the socklab image, built and run with podman.

Builds docker/Dockerfile, then runs the image in the three documented profiles
(full: SYS_ADMIN + NET_ADMIN + NET_RAW, no devices; no-capture: /dev/net/tun and without
NET_RAW; unprivileged: no capability, no device) on random free ports of
127.0.0.1 and, through the published HTTP/WebSocket ports, runs every lab
/api/labs lists (LAB_CASES gives each lab its cases, checks and needs; a lab it
does not know still runs with its defaults), bring-your-own-client runs through
the published TCP and UDP pool ports, checks the server is neither root nor holding a capability, stops it with
SIGTERM (timed), and runs docker/compose.yaml (docker-compose against podman's
Docker API), docker/k8s/ (podman kube play: NATS from docker/Dockerfile.infra's
image, the three replicas and the bring-your-own-client host, a run on one replica
served byte for byte by the others) and docker/compose-replicas.yaml (NATS, three
replicas and the round-robin front: a class of 60 students through its one port,
a replica SIGKILLed mid-run, NATS restarted mid-class). Each image is built once.

Needs root and podman (server/tools/install-deps.sh test installs them); skips,
saying why, where podman cannot run. podman reads docker/containers.conf
(CONTAINERS_CONF). The base image comes from docker/make-base-image and is kept
for later runs; everything else this test creates carries the label
io.socklab.test=PID and is removed on every exit path, and leftovers of a run
that was killed are removed by the next one.
"""
import asyncio
import atexit
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
import yaml  # noqa: E402

from classlib import ask, until  # noqa: E402
from classlib import recv as class_recv  # noqa: E402
from harness import (check_stream, events_until_end, free_port_range, request,  # noqa: E402
                     start_run, wait_for)
from tap import Skip, check, eq, run, test  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, "docker", "containers.conf"))
ME = str(os.getpid())
LABEL = "io.socklab.test"
IMAGE = f"localhost/socklab-test:{ME}"
VOLUME = f"socklab-test-data-{ME}"
FULL = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW"]
LAB_CAP_NAMES = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
STOP_TIMEOUT = 10
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

state = {"skip": None, "containers": [], "pods": [], "volumes": [], "service": None,
         "compose": None, "tmp": None, "full": None}


def diag(text):
    """A TAP comment: figures the test measured, never pass/fail."""
    print(f"# {text}", flush=True)


# ---------------------------------------------------------------------------
# podman
# ---------------------------------------------------------------------------

def podman(*args, check_rc=True, timeout=120, env=None):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                       env=env or ENV, stdin=subprocess.DEVNULL)
    if check_rc and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:4])} ... exited {r.returncode}: "
                             f"{(r.stderr or r.stdout)[-800:]}")
    return r


def owner_alive(pid):
    """True while the test run that labelled a resource is still running."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return b"test_container.py" in f.read()
    except (OSError, ValueError):
        return False


def remove_stale():
    """Remove what killed runs of this test left behind (their owner is gone)."""
    kinds = [
        (["pod", "ps", "-a"], ["pod", "rm", "-f"]),
        (["ps", "-a"], ["rm", "-f", "-v"]),
        (["volume", "ls"], ["volume", "rm", "-f"]),
        (["images"], ["rmi", "-f"]),
    ]
    for ls, rm in kinds:
        fmt = "{{.Name}}" if ls[0] == "volume" else "{{.ID}}"
        r = podman(*ls, "--filter", f"label={LABEL}", "--format", fmt + " {{.Labels}}",
                   check_rc=False)
        for line in r.stdout.splitlines():
            ident, _, labels = line.partition(" ")
            owner = labels.split(f"{LABEL}:", 1)[1].split()[0].rstrip("]") if \
                f"{LABEL}:" in labels else ""
            if owner and not owner_alive(owner):
                podman(*rm, ident, check_rc=False)
    # Networks docker-compose made for a project socklabtestPID.
    r = podman("network", "ls", "--format", "{{.Name}}", check_rc=False)
    for net in r.stdout.split():
        owner = re.match(r"socklabtest(\d+)", net)
        if owner and not owner_alive(owner.group(1)):
            podman("network", "rm", "-f", net, check_rc=False)
    remove_build_leftovers()
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        if d.startswith("socklab-ct-") and not owner_alive(d.split("-")[2]):
            subprocess.run(["rm", "-rf", os.path.join(tmp, d)], check=False)


def builds_running():
    """True while any podman or buildah build runs on this machine."""
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(args[0]) in (b"podman", b"buildah") and b"build" in args[1:4]:
            return True
    return False


def remove_build_leftovers():
    """An interrupted `podman build` leaves its working containers behind
    (they belong to no label). Remove them, but only while no build runs."""
    if builds_running():
        return
    r = podman("ps", "-a", "--external", "--format", "{{.ID}} {{.Names}}", check_rc=False)
    for line in r.stdout.splitlines():
        ident, _, name = line.partition(" ")
        if "-working-container" in name:
            podman("rm", "-f", ident, check_rc=False)


def cleanup():
    """Remove everything this run created (every exit path goes through here)."""
    if state.get("cleaned"):
        return
    state["cleaned"] = True
    if state.get("infra_build"):
        proc, log, _ = state["infra_build"]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    if state["tmp"]:
        subprocess.run(["rm", "-rf", state["tmp"]], check=False)
    if state["skip"] or not shutil.which("podman"):
        return
    for key in ("compose", "replicas"):
        if state.get(key):
            compose("down", "-v", "--timeout", "5", check_rc=False, project=state[key])
    for pod in state["pods"]:
        podman("pod", "rm", "-f", pod, check_rc=False)
    for name in state["containers"]:
        podman("rm", "-f", "-v", name, check_rc=False)
    for vol in [VOLUME, *state["volumes"]]:
        podman("volume", "rm", "-f", vol, check_rc=False)
    stop_service()
    remove_stale()
    for image in (IMAGE, INFRA):
        podman("rmi", "-f", image, check_rc=False)


def on_term(signum, frame):
    raise SystemExit(f"killed by signal {signum}")


def need_podman():
    """Skip (saying why) where podman cannot run; otherwise make sure the base
    image exists."""
    if state["skip"]:
        raise Skip(state["skip"])
    if os.geteuid() != 0:
        state["skip"] = "needs root: the image test runs rootful podman"
    elif subprocess.run(["sh", "-c", "command -v podman"], capture_output=True).returncode:
        state["skip"] = "podman is not installed (server/tools/install-deps.sh test)"
    else:
        r = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check_rc=False)
        if r.returncode != 0:
            state["skip"] = f"podman cannot run here: {r.stderr.strip()[-300:]}"
    if state["skip"]:
        raise Skip(state["skip"])


# ---------------------------------------------------------------------------
# containers and the API through published ports
# ---------------------------------------------------------------------------

class Box:
    """One socklab container on free 127.0.0.1 ports. As README.md says, the
    ports keep their numbers inside and outside (the page's WebSocket port and
    Origin, and the pool port a student is told, are the server's own), so the
    test moves them with SOCKLAB_*_PORT(S) rather than remapping them."""

    def __init__(self, name, caps, tun=False, extra=()):
        self.name = f"socklab-test-{name}-{ME}"
        lo, hi = free_port_range(4)
        # One public port: the WebSocket is at /ws on the HTTP port.
        self.http, self.ws, self.byo = lo, lo, (lo + 2, hi)
        args = ["run", "-d", "--name", self.name, "--label", f"{LABEL}={ME}",
                "--cap-drop", "all", "--read-only", "-v", f"{VOLUME}:/data",
                "-p", f"127.0.0.1:{self.http}:{self.http}",
                "-p", f"127.0.0.1:{self.byo[0]}-{self.byo[1]}:{self.byo[0]}-{self.byo[1]}",
                "-p", f"127.0.0.1:{self.byo[0]}-{self.byo[1]}:{self.byo[0]}-{self.byo[1]}/udp",
                "-e", f"SOCKLAB_HTTP_PORT={self.http}",
                "-e", f"SOCKLAB_BYO_PORTS={self.byo[0]}-{self.byo[1]}",
                "--stop-timeout", str(STOP_TIMEOUT)]
        for c in caps:
            args += ["--cap-add", c]
        if tun:
            args += ["--device", "/dev/net/tun"]
        args += list(extra)
        state["containers"].append(self.name)
        t0 = time.monotonic()
        podman(*args, IMAGE)
        self.health = wait_for(self.healthy, 30, f"{self.name} to answer /api/health",
                               interval=0.01)
        self.start_s = time.monotonic() - t0
        self.base = f"http://127.0.0.1:{self.http}"
        self.ws_url = f"ws://127.0.0.1:{self.ws}/ws"

    def healthy(self):
        r = podman("inspect", self.name, "--format", "{{.State.Running}}", check_rc=False)
        if r.stdout.strip() != "true":
            raise AssertionError(f"{self.name} is not running: {self.logs()[-800:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/health",
                                        timeout=2) as resp:
                body = json.loads(resp.read())
                return body if body.get("status") == "ok" else None
        except (OSError, ValueError):
            return None

    def get_json(self, path):
        with urllib.request.urlopen(self.base + path, timeout=20) as resp:
            return json.loads(resp.read())

    def logs(self):
        r = podman("logs", self.name, check_rc=False)
        return r.stdout + r.stderr

    def exec(self, *cmd):
        return podman("exec", self.name, *cmd).stdout

    def status(self, pid=1):
        """/proc/PID/status inside the container as a dict."""
        out = self.exec("cat", f"/proc/{pid}/status")
        return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)

    def connect(self, path="/ws"):
        """A WebSocket as the dashboard opens it: with the page's Origin."""
        return websockets.connect(f"ws://127.0.0.1:{self.ws}{path}",
                                  subprotocols=["socklab.v1"], max_size=None,
                                  origin=f"http://127.0.0.1:{self.http}",
                                  open_timeout=20, close_timeout=5)

    def remove(self):
        podman("rm", "-f", "-v", self.name, check_rc=False)
        state["containers"].remove(self.name)


def expand_ports(spec):
    """["8080/tcp", "9000-9001/udp"] -> [(8080, "tcp"), (9000, "udp"), (9001, "udp")]
    (podman keeps an EXPOSE range as one entry, docker expands it)."""
    out = []
    for p in spec:
        ports, _, proto = p.partition("/")
        lo, _, hi = ports.partition("-")
        out += [(n, proto or "tcp") for n in range(int(lo), int(hi or lo) + 1)]
    return sorted(out)


POOL = range(9000, 9020)
WANT_PORTS = sorted([(8080, "tcp")] + [(p, t) for p in POOL for t in ("tcp", "udp")])


def arun(coro):
    return asyncio.run(coro)


def run_lab(box, lab, params, files=None):
    """One run through the container's WebSocket; its checked event stream."""
    async def go():
        async with box.connect() as ws:
            if files is None:
                run_id = await start_run(ws, params, lab=lab)
            else:
                reply = await request(ws, {"op": "run", "lab": lab, "params": params,
                                           "files": files})
                eq(reply.get("type"), "run.accepted", f"reply to run {lab}: {reply}")
                run_id = reply["run"]
            return await events_until_end(ws, run_id, timeout=90)
    events = arun(go())
    check_stream(events)
    return events


def error_messages(events):
    return " | ".join(e.get("message", "") for e in events if e["type"] == "error")


# ---------------------------------------------------------------------------
# Labs: the cases each lab runs with, what is checked beyond the event contract,
# and what a case cannot work without (needs: capabilities, in the order a lab
# reports them; None: not known). A lab missing from LAB_CASES runs with its
# defaults and must end "ok" where it has every capability.
# ---------------------------------------------------------------------------

class Case:
    def __init__(self, params, checks=None, needs=None, files=None):
        self.params, self.checks, self.needs = params, checks, needs
        self.files = files  # uploaded programs ("files" in the run op), for own


TWO_HOSTS = ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]


def syscall_bytes(events, who_prefix, calls):
    return sum(e["ret"] for e in events if e["type"] == "syscall" and e["call"] in calls
               and e["who"].startswith(who_prefix) and e["ret"] > 0)


def tcp_echo_checks(events, params):
    echoes = [e for e in events if e["type"] == "echo"]
    want = params.get("messages", 3) * params.get("clients", 1)
    eq(len(echoes), want, "echo events")
    check(all(e["ok"] for e in echoes), f"failed echoes: {[e for e in echoes if not e['ok']]}")
    if params.get("size"):
        eq({e["bytes"] for e in echoes}, {params["size"]}, "bytes per echo")
    eq(syscall_bytes(events, "client", ("recv",)), syscall_bytes(events, "client", ("send",)),
       "bytes the clients received back")
    if params.get("network") == "two-hosts":
        eq(events[0]["network"]["kind"], "two-hosts", "network")
        drops = [e for e in events if e["type"] == "wire" and e["action"] == "drop"]
        check(drops, "no frame was dropped: the wire did not impair the run")


def udp_ping_checks(events, params):
    probes = [e for e in events if e["type"] == "probe"]
    count = params.get("count", 10)
    eq(len(probes), count, "probe events")
    summary = events[-1]["summary"]
    eq((summary["sent"], summary["received"], summary["lost"]), (count, count, 0), "statistics")
    check(all(p["status"] == "reply" and p["ok"] for p in probes), f"probes {probes}")


def host_drops(params):
    """The probes the same seeded wire drops on the host, outside any container."""
    argv = [os.environ.get("SOCKLAB") or os.path.join(REPO, "build", "socklab"), "run",
            "udp-ping", "--json"]
    for k, v in params.items():
        argv += ["-p", f"{k}={v}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    eq(r.returncode, 0, f"the same run on the host: {r.stderr[-300:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    return sorted(e["probe"] for e in events if e["type"] == "wire" and e["action"] == "drop")


def udp_ping_impaired_checks(events, params):
    probes = [e for e in events if e["type"] == "probe"]
    summary = events[-1]["summary"]
    eq(events[0]["network"]["wire"], "relay", "the wire")
    eq(summary["sent"], params["count"], "sent")
    eq(summary["received"] + summary["late"] + summary["lost"], summary["sent"],
       "received + late + lost")
    dropped = sorted(e["probe"] for e in events if e["type"] == "wire" and e["action"] == "drop")
    lost = sorted(p["probe"] for p in probes if p["status"] == "lost")
    check(dropped, "the wire dropped nothing at 20 % loss")
    eq(lost, dropped, "lost probes are exactly the ones the wire dropped")
    eq(summary["lost_c2s"], len(dropped), "lost_c2s")
    # Every reply crossed the wire s2c with its delay (ARP frames are delayed too).
    delayed = sorted(e["probe"] for e in events if e["type"] == "wire" and e["dir"] == "s2c"
                     and e["action"] == "delay" and e.get("proto") == "UDP")
    answered = sorted(p["probe"] for p in probes if p["status"] in ("reply", "late"))
    eq(delayed, answered, "probes whose reply the wire delayed s2c")
    eq(dropped, host_drops(params), "the seeded wire drops the same probes as on the host")


def handshake_checks(events, params):
    segs = [e for e in events if e["type"] == "segment"]
    eq([s["flags_short"] for s in segs[:3]], ["S", "S.", "."], "the three-way handshake")
    eq(sorted({s["dir"] for s in segs}), ["c2s", "s2c"], "segments both ways")
    check(any("FIN" in s["flags"] for s in segs), "a FIN")
    # TIME_WAIT is what sock_diag saw (an observation, never a transition);
    # without the tracepoint (non-root) no kernel transition is reported.
    tw = [e for e in events if e["type"] == "observation" and e["source"] == "sock_diag"
          and e.get("state") == "TIME_WAIT"]
    eq([e["who"] for e in tw], ["client"], "the client's TIME_WAIT, seen by sock_diag")
    eq([e for e in events if e["type"] == "state" and e["source"] != "rfc-model"], [],
       "no kernel transition without the tracepoint")
    eq(events[-1]["summary"]["network"], params.get("network", "two-hosts"), "network")


def sticky_checks(events, params):
    summary = events[-1]["summary"]
    lanes = {t: [e for e in events if e["type"] == t] for t in ("send", "segment", "recv")}
    eq(summary["sends"], len(lanes["send"]), "send events")
    eq(summary["recvs"], len(lanes["recv"]), "recv events")
    for lane in ("send", "recv"):
        eq(sum(e["bytes"] for e in lanes[lane]), summary["stream_bytes"], f"bytes on the {lane} lane")
    eq(summary["wire_bytes"], summary["stream_bytes"], "bytes on the wire")
    if params.get("mode") == "framed":
        eq(summary["framed_messages"], params["count"], "framed messages reassembled")


OWN_SERVER = """import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(1)
c, _ = s.accept()
while True:
    data = c.recv(1024)
    if not data:
        break
    c.sendall(data.upper())
"""
OWN_CLIENT = """import socket
c = socket.create_connection(("server", 8080))
for m in [b"hello", b"sockets"]:
    c.sendall(m)
    print(c.recv(1024).decode())
c.close()
"""


def own_checks(events, params):
    out = [e["text"] for e in events if e["type"] == "output" and e["who"] == "client"]
    eq(out, ["HELLO", "SOCKETS"], "the client's replies, from python3 in bubblewrap")
    progs = events[-1]["summary"]["programs"]
    eq((progs["server"]["traced"], progs["client"]["traced"]), (True, True), "both traced")
    eq((progs["client"]["bytes_sent"], progs["client"]["bytes_received"]), (12, 12), "bytes")
    eq([e["call"] for e in events if e["type"] == "syscall" and e["who"] == "client"],
       ["socket", "connect", "send", "recv", "send", "recv", "close"], "the client's calls")
    segs = [e for e in events if e["type"] == "segment"]
    if segs:
        eq(sum(g["len"] for g in segs), 24, "bytes on the wire")


def own_refused(box, events):
    """The own lab where bubblewrap cannot work: the run fails at once with
    sandbox_unavailable, naming what is missing (an engine's default profile
    mounts /proc/sys read-only, which bwrap --disable-userns writes; without
    CAP_SYS_ADMIN its seccomp profile refuses sethostname). True then."""
    errs = [e for e in events if e["type"] == "error"]
    if not errs or errs[0]["code"] != "sandbox_unavailable":
        return False
    msg = errs[0]["message"]
    eq(events[-1]["status"], "error", "status")
    check(("/proc/sys" in msg and "unmask=/proc/sys" in msg) or "sethostname" in msg
          or "CLONE_NEWUSER" in msg, f"the error names what is missing: {msg}")
    eq([e for e in events if e["type"] == "program.start"], [], "no program started")
    diag(f"{box.name}: own refused: {msg[:100]}...")
    return True


LAB_CASES = {
    # The programs are uploaded as a browser does; python3 and bubblewrap are
    # in the image. A profile where bubblewrap cannot work fails the run with
    # sandbox_unavailable (own_refused); own_in_a_container_with_proc_sys_writable
    # runs it for real.
    "own": [
        Case({}, own_checks, [], files={"server": OWN_SERVER, "client": OWN_CLIENT}),
    ],
    "sticky": [
        Case({"mode": "framed", "count": 4, "recv_delay_ms": 50}, sticky_checks, ["CAP_NET_RAW"]),
    ],
    "handshake": [
        Case({"observe_ms": 0}, handshake_checks, ["CAP_NET_RAW"] + TWO_HOSTS),
        Case({"network": "loopback", "observe_ms": 0}, handshake_checks, ["CAP_NET_RAW"]),
    ],
    "tcp-echo": [
        Case({}, tcp_echo_checks, []),
        Case({"clients": 2, "server_style": "concurrent", "messages": 4, "size": 3000},
             tcp_echo_checks, []),
        Case({"network": "two-hosts", "messages": 6, "size": 2000, "c2s_loss_pct": 15,
              "seed": 3}, tcp_echo_checks, TWO_HOSTS),
    ],
    "udp-ping": [
        Case({"count": 5, "interval_ms": 20}, udp_ping_checks, []),
        Case({"network": "two-hosts", "count": 20, "interval_ms": 20, "c2s_loss_pct": 20,
              "s2c_delay_ms": 5, "seed": 7}, udp_ping_impaired_checks, TWO_HOSTS),
    ],
}


def read_line(sock):
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            break
        got += chunk
    return got


def tcp_byo_client(port, host="127.0.0.1"):
    """Our own TCP client: one line, its echo, an orderly close."""
    c = socket.create_connection((host, port), timeout=10)
    try:
        c.sendall(b"hello from outside\n")
        eq(read_line(c), b"HELLO FROM OUTSIDE\n", "reply through the published TCP port")
    finally:
        c.close()
    return 19


def tcp_byo_done(e):
    return e["type"] == "syscall" and e["call"] == "recv" and e.get("eof")


def tcp_byo_checks(events, nbytes):
    srv = [e for e in events if e["type"] == "syscall" and e["who"].startswith("server")]
    eq(len([e for e in srv if e["call"] == "accept" and e["ret"] >= 0]), 1, "accepts")
    eq(syscall_bytes(events, "server", ("recv",)), nbytes, "bytes the run received")
    eq(syscall_bytes(events, "server", ("send",)), nbytes, "bytes the run sent back")


def udp_byo_client(port):
    """Our own UDP client: one datagram, its echo."""
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(10)
    try:
        c.sendto(b"ping from outside", ("127.0.0.1", port))
        data, _ = c.recvfrom(2048)
        eq(data, b"PING FROM OUTSIDE", "reply through the published UDP port")
    finally:
        c.close()
    return 17


def udp_byo_done(e):
    return e["type"] == "syscall" and e["call"] == "sendto" and e["ret"] > 0


def udp_byo_checks(events, nbytes):
    eq(syscall_bytes(events, "server", ("recvfrom",)), nbytes, "bytes the run received")
    eq(syscall_bytes(events, "server", ("sendto",)), nbytes, "bytes the run sent back")


def sticky_byo_client(port):
    """Our own framing client (struct and json, as a student writes it): a bare request, one reply."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(b"hello from outside")
        got = b""
        while len(got) < 4:
            chunk = c.recv(4 - len(got))
            check(chunk, "the framed reply's header length")
            got += chunk
        (hlen,) = struct.unpack("!I", got)
        check(0 < hlen < 4096, f"header length {hlen}")
        rest = b""
        header = None
        while header is None or len(rest) < hlen + header["total_size"]:
            chunk = c.recv(4096)
            check(chunk, "the rest of the framed reply")
            rest += chunk
            if header is None and len(rest) >= hlen:
                header = json.loads(rest[:hlen])
        body = json.loads(rest[hlen:hlen + header["total_size"]])
        eq((body["bytes"], body["text"]), (18, "hello from outside"), "the framed reply's body")
    finally:
        c.close()
    return 18


def sticky_byo_done(e):
    return e["type"] == "reply"


def sticky_byo_checks(events, nbytes):
    reqs = [e for e in events if e["type"] == "request"]
    eq(sum(e["bytes"] for e in reqs), nbytes, "bytes the run received")
    eq(len([e for e in events if e["type"] == "reply"]), 1, "framed replies")


# Labs with server-assigned parameters (a port the student's own program
# reaches): the parameters that start such a run, our client (returns the
# bytes it sent), the event after which the run has answered it, the checks.
BYO_CLIENTS = {
    "tcp-echo": ({"mode": "server", "idle_timeout": 30}, tcp_byo_client, tcp_byo_done,
                 tcp_byo_checks),
    "udp-ping": ({"mode": "server", "idle_timeout": 30}, udp_byo_client, udp_byo_done,
                 udp_byo_checks),
    "sticky": ({"mode": "server", "idle_timeout": 30}, sticky_byo_client, sticky_byo_done,
               sticky_byo_checks),
}


def lab_catalogue(box):
    labs = box.get_json("/api/labs")
    check(labs, "/api/labs is empty")
    return labs


def every_lab(box, expect):
    """Run every lab's cases; expect(name, events, case) judges each run."""
    for lab in lab_catalogue(box):
        name = lab["name"]
        cases = LAB_CASES.get(name)
        if cases is None:
            diag(f"{name}: no cases in test_container.py LAB_CASES; its defaults only")
            cases = [Case({})]
        for case in cases:
            events = run_lab(box, name, case.params, case.files)
            if name == "own" and own_refused(box, events):
                continue
            try:
                expect(name, events, case)
            except AssertionError as e:
                raise AssertionError(f"{name} {case.params}: {e}") from None


# ---------------------------------------------------------------------------
# compose: docker-compose against podman's Docker-compatible API
# ---------------------------------------------------------------------------

def start_service():
    sock = os.path.join(state["tmp"], "podman.sock")
    if state["service"] and state["service"].poll() is None:
        return f"unix://{sock}"
    if os.path.exists(sock):
        os.unlink(sock)  # a stopped service's: it would pass for the new one
    # It ends with this test however the test ends: a parent-death signal, and
    # 30 s without a request.
    proc = subprocess.Popen(["podman", "system", "service", "--time=30", f"unix://{sock}"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM))
    state["service"] = proc
    wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, 20, "podman's API socket")
    check(proc.poll() is None, "podman system service exited")
    return f"unix://{sock}"


def stop_service():
    proc = state["service"]
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    state["service"] = None


def compose(*args, check_rc=True, file=None, env=None, project=None):
    c = project or state["compose"]
    r = subprocess.run(["docker-compose", "-p", c["project"], "-f", file or c["file"], *args],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                       env=env or c["env"])
    if check_rc and r.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} exited {r.returncode}: "
                             f"{(r.stderr or r.stdout)[-800:]}")
    return r


# ===========================================================================
# The tests
# ===========================================================================

@test
def image_builds_from_the_base_image_in_podman():
    need_podman()
    remove_stale()
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(REPO, "docker", "make-base-image")], capture_output=True,
                       text=True, timeout=600, env=ENV, stdin=subprocess.DEVNULL)
    eq(r.returncode, 0, f"make-base-image: {r.stderr[-800:]}")
    if r.stdout.strip():
        diag(f"base image: {r.stdout.strip().splitlines()[-1]} in "
             f"{time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    # The infra image (later tests) builds meanwhile: it spends its time in
    # apt (network and disk) while this one compiles.
    infra_start()
    # --layers=false: no intermediate images to leave behind.
    podman("build", "--format", "docker", "--pull=never", "--layers=false", "--force-rm",
           "--label", f"{LABEL}={ME}", "-f", "docker/Dockerfile", "-t", IMAGE, REPO,
           timeout=600)
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    diag(f"image built in {time.monotonic() - t0:.1f} s, {size / 1e6:.1f} MB")
    cfg = json.loads(podman("image", "inspect", IMAGE, "--format", "{{json .Config}}").stdout)
    eq(cfg.get("User"), "10001:10001", "USER")
    eq(cfg.get("Entrypoint"), ["socklab"], "ENTRYPOINT")
    eq(cfg.get("Cmd"), ["serve"], "CMD")
    eq(cfg.get("StopSignal"), "SIGTERM", "STOPSIGNAL")
    hc = json.loads(podman("image", "inspect", IMAGE, "--format",
                           "{{json .HealthCheck}}").stdout)
    eq(hc and hc.get("Test"), ["CMD", "socklab", "health"], "HEALTHCHECK (needs --format docker)")
    eq(expand_ports(cfg.get("ExposedPorts") or {}), WANT_PORTS, "EXPOSE")
    eq(set(cfg.get("Volumes") or {}), {"/data"}, "VOLUME")
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    eq(env.get("SOCKLAB_LISTEN"), "0.0.0.0", "SOCKLAB_LISTEN")
    eq(env.get("SOCKLAB_LAB_EXE"), "/usr/lib/socklab/socklab-lab", "SOCKLAB_LAB_EXE")
    secrets = [k for k in env if any(w in k for w in ("SECRET", "PASSWORD", "TOKEN", "KEY"))]
    eq(secrets, [], "no secret in the image's environment")


@test
def image_has_no_compilers_and_only_the_lab_program_has_capabilities():
    need_podman()
    pkgs = podman("run", "--rm", "--label", f"{LABEL}={ME}", "--entrypoint", "dpkg-query",
                  IMAGE, "-W", "-f=${Package}\n").stdout.split()
    dev = [p for p in pkgs if p.endswith("-dev") or p in ("gcc", "gcc-12", "cpp", "make",
                                                         "binutils", "libcap2-bin", "curl")]
    eq(dev, [], "build tools or -dev packages in the runtime image")
    for lib in ("libmicrohttpd12", "libwebsockets17", "libjansson4"):
        check(lib in pkgs, f"{lib} missing from the runtime image")
    # File capabilities, read from the image's files: the server binary has
    # none; the lab program has the three, permitted only (no effective bit).
    root = podman("image", "mount", IMAGE).stdout.strip()
    try:
        try:
            os.getxattr(os.path.join(root, "usr/bin/socklab"), "security.capability")
            raise AssertionError("/usr/bin/socklab carries file capabilities")
        except OSError as e:
            check(e.errno in (61,), f"reading /usr/bin/socklab's capabilities: {e}")
        raw = os.getxattr(os.path.join(root, "usr/lib/socklab/socklab-lab"), "security.capability")
        magic, lo = int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:8], "little")
        eq(magic & 1, 0, "effective bit of the lab program's file capabilities")
        eq(lo, (1 << 12) | (1 << 13) | (1 << 21), "permitted capabilities of the lab program")
    finally:
        podman("image", "unmount", IMAGE, check_rc=False)
    # The lab program is the small one (socklab-lab, not a copy of the
    # server), from the same build as the server.
    ids = [podman("run", "--rm", "--label", f"{LABEL}={ME}", "--entrypoint", exe, IMAGE,
                  "build-id").stdout.strip()
           for exe in ("socklab", "/usr/lib/socklab/socklab-lab")]
    check(len(ids[0]) == 16 and ids[0] == ids[1], f"build ids of server and lab program: {ids}")
    r = podman("run", "--rm", "--label", f"{LABEL}={ME}", "--entrypoint",
               "/usr/lib/socklab/socklab-lab", IMAGE, "serve", check_rc=False)
    eq(r.returncode, 2, "the lab program does not serve")


@test
def full_profile_server_runs_as_non_root_without_capabilities():
    need_podman()
    podman("volume", "create", "--label", f"{LABEL}={ME}", VOLUME)
    # No /dev/net/tun: the impairment relay's ports are packet sockets.
    box = Box("full", FULL, tun=False)
    state["full"] = box
    diag(f"full profile: container start to healthy in {box.start_s * 1000:.0f} ms")
    st = box.status(1)
    uid = st["Uid"].split()
    check(uid[0] != "0" and len(set(uid)) == 1, f"server uids {uid}")
    eq(uid[0], "10001", "server uid")
    for field in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        eq(int(st[field], 16), 0, f"server {field} (podman hands --cap-add to the user as "
           "ambient; the server must drop them)")
    eq(int(st["CapBnd"], 16), (1 << 12) | (1 << 13) | (1 << 21), "container bounding set")
    eq(st["NoNewPrivs"].strip(), "0", "no_new_privs (it would disable file capabilities)")
    # What the page is told: the WebSocket port it can reach, where students'
    # own clients connect (the page's host, as the listener is a wildcard).
    cfg = box.get_json("/api/config")
    eq((cfg["ws_port"], cfg["byo_host"], cfg["limits"]["byo_ports"]),
       (box.ws, "0.0.0.0", list(box.byo)), "/api/config")
    with urllib.request.urlopen(box.base + "/", timeout=20) as resp:
        csp = resp.headers["Content-Security-Policy"]
    check(f"connect-src 'self' ws://127.0.0.1:{box.ws}" in csp, f"CSP {csp!r}")
    logs = box.logs()
    check("lab runs: /usr/lib/socklab/socklab-lab with CAP_NET_ADMIN, CAP_NET_RAW, "
          "CAP_SYS_ADMIN" in logs, f"startup log: {logs[-600:]}")
    # The image's own HEALTHCHECK, run by podman in the container.
    r = podman("healthcheck", "run", box.name, check_rc=False)
    eq(r.returncode, 0, f"podman healthcheck run: {r.stdout}{r.stderr}")
    # The root filesystem is read-only; the data volume is the server's.
    r = podman("exec", box.name, "touch", "/usr/x", check_rc=False)
    check(r.returncode != 0 and "Read-only" in r.stderr, f"touch /usr/x: {r.stderr}")
    eq(box.exec("stat", "-c", "%u %a", "/data/runs").split(), ["10001", "700"], "/data/runs")


@test
def full_profile_runs_every_lab_in_a_private_namespace():
    need_podman()
    box = state["full"]
    check(box, "no full-profile container (an earlier test failed)")

    def expect(name, events, case):
        eq(events[-1]["status"], "ok", f"run status: {error_messages(events)}")
        sandbox = events[0]["sandbox"]
        eq(sandbox["netns"], True, "private namespace")
        eq(sandbox["euid"], 10001, "run's euid")
        eq(sandbox["caps"], LAB_CAP_NAMES, "run's capabilities")
        if case.checks:
            case.checks(events, case.params)
    every_lab(box, expect)
    # The WebSocket also answers on /ws, the path the Ingress example uses.
    async def ping():
        async with box.connect("/ws") as ws:
            return await request(ws, {"op": "ping"})
    eq(arun(ping()).get("type"), "pong", "ping on /ws")


@test
def bring_your_own_client_through_the_published_pool_port():
    need_podman()
    box = state["full"]
    check(box, "no full-profile container (an earlier test failed)")
    tried = []
    for lab in lab_catalogue(box):
        # A server-assigned port is what a bring-your-own-client mode needs
        # (handshake's server-assigned replay file is no such mode).
        if not any(p.get("server_assigned") and p["name"] == "port" for p in lab["params"]):
            continue
        name = lab["name"]
        check(name in BYO_CLIENTS, f"lab {name} has a bring-your-own-client mode: add a "
              "client for it to BYO_CLIENTS in test_container.py")
        params, client, done, checks = BYO_CLIENTS[name]

        async def go():
            async with box.connect() as ws:
                run_id = await start_run(ws, params, lab=name)
                head = await events_until_end(ws, run_id,
                                              until=lambda e: e["type"] == "listening")
                port = head[-1]["port"]
                check(box.byo[0] <= port <= box.byo[1],
                      f"{name}: port {port} outside the published pool {box.byo}")
                nbytes = client(port)
                # The run traced what our client did, from the server's side.
                more = await events_until_end(ws, run_id, until=done)
                reply = await request(ws, {"op": "cancel", "run": run_id})
                eq(reply.get("type"), "cancel.accepted", f"cancel: {reply}")
                rest = await events_until_end(ws, run_id)
                return head + more + rest, nbytes
        events, nbytes = arun(go())
        check_stream(events)
        eq(events[-1]["status"], "cancelled", f"{name} BYO run end")
        checks(events, nbytes)
        tried.append(name)
    check(tried, "no lab has a bring-your-own-client mode")
    diag(f"bring-your-own-client through the published pool: {', '.join(tried)}")


@test
def sigterm_cancels_runs_and_exits_0_quickly():
    need_podman()
    box = state["full"]
    check(box, "no full-profile container (an earlier test failed)")

    async def go():
        async with box.connect() as ws:
            run_id = await start_run(ws, {"messages": 1000, "interval_ms": 100})
            await events_until_end(ws, run_id, until=lambda e: e["type"] == "echo")
            t0 = time.monotonic()
            r = podman("stop", "-t", str(STOP_TIMEOUT), box.name, check_rc=False)
            took = time.monotonic() - t0
            eq(r.returncode, 0, f"podman stop: {r.stderr}")
            return run_id, took
    run_id, took = arun(go())
    diag(f"SIGTERM to exit (podman stop) with a run in progress: {took * 1000:.0f} ms")
    eq(podman("inspect", box.name, "--format", "{{.State.ExitCode}}").stdout.strip(), "0",
       f"exit code (137 would mean SIGKILL after {STOP_TIMEOUT} s): {box.logs()[-500:]}")
    check(took < STOP_TIMEOUT, f"stopped after {took:.1f} s, the stop timeout")
    # The run's bundle, in the volume, ends properly.
    root = podman("volume", "mount", VOLUME).stdout.strip()
    try:
        with open(os.path.join(root, "runs", run_id, "events.jsonl")) as f:
            last = json.loads(f.read().splitlines()[-1])
        eq((last["type"], last["status"]), ("run.end", "cancelled"), "last event in the bundle")
        with open(os.path.join(root, "runs", run_id, "meta.json")) as f:
            eq(json.load(f)["status"], "cancelled", "meta.json status")
    finally:
        podman("volume", "unmount", VOLUME, check_rc=False)
    state["stopped_run"] = run_id
    box.remove()
    state["full"] = None


@test
def no_capture_profile_keeps_namespaces():
    need_podman()
    # Without NET_RAW an impaired wire falls back to TAP devices, so this
    # profile is given the device; whether its user may open it depends on
    # the host (a 0600 node, or a runtime inside a container, refuses).
    box = Box("nocap", ["SYS_ADMIN", "NET_ADMIN"], tun=True)
    try:
        check("not granted: CAP_NET_RAW" in box.logs(), f"startup log: {box.logs()[-500:]}")
        tun_ok = podman("exec", box.name, "sh", "-c", "exec 3<>/dev/net/tun",
                        check_rc=False).returncode == 0
        diag(f"no-capture profile: /dev/net/tun {'usable' if tun_ok else 'refused'} "
             "by the container's user")

        def expect(name, events, case):
            sandbox = events[0]["sandbox"]
            eq(sandbox["caps"], ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "capabilities")
            relay = case.params.get("network") == "two-hosts" and any(
                k.startswith(("c2s_", "s2c_")) for k in case.params)
            if relay and not tun_ok:
                # Neither relay port works here: the error says what would.
                msg = error_messages(events)
                eq(events[-1]["status"], "error", "run status without NET_RAW or a usable TUN")
                check("/dev/net/tun" in msg and "CAP_NET_RAW" in msg,
                      f"the error names neither remedy: {msg}")
                return
            if case.needs is not None and "CAP_NET_RAW" not in case.needs:
                eq(events[-1]["status"], "ok", f"run status: {error_messages(events)}")
            if events[-1]["status"] == "ok":
                eq(sandbox["netns"], True, "private namespace")
                if case.checks:
                    case.checks(events, case.params)
            else:
                check("CAP_NET_RAW" in error_messages(events),
                      f"failed without naming CAP_NET_RAW: {error_messages(events)}")
        every_lab(box, expect)
    finally:
        box.remove()


@test
def unprivileged_profile_falls_back_or_names_the_capability():
    need_podman()
    box = Box("unpriv", [], tun=False)
    try:
        check("with none; not granted: CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN"
              in box.logs(), f"startup log: {box.logs()[-500:]}")
        # The bundles in the volume outlive the container that wrote them.
        ids = [m["id"] for m in box.get_json("/api/runs")]
        check(state.get("stopped_run") in ids, f"earlier run missing from /api/runs: {ids[:5]}")

        def expect(name, events, case):
            sandbox = events[0]["sandbox"]
            eq(sandbox["caps"], [], "capabilities")
            msgs = error_messages(events)
            if case.needs:
                eq(events[-1]["status"], "error", "a case that needs capabilities")
                check(any(c in msgs for c in case.needs),
                      f"the error names none of {case.needs}: {msgs!r}")
            elif events[-1]["status"] == "ok":
                eq(sandbox["netns"], False, "netns")
                check("CAP_SYS_ADMIN" in sandbox["note"],
                      f"the fallback note names no capability: {sandbox['note']!r}")
                if case.checks:
                    case.checks(events, case.params)
            else:
                check(case.needs is None and "CAP_" in msgs,
                      f"failed unprivileged without naming a capability: {msgs!r}")
        every_lab(box, expect)
    finally:
        box.remove()


@test
def own_in_a_container_with_proc_sys_writable():
    """The full profile plus a writable /proc/sys (what bubblewrap's
    --disable-userns needs): students' programs run in the image's python3
    inside bubblewrap, traced."""
    need_podman()
    box = Box("own", FULL, extra=["--security-opt", "unmask=/proc/sys"])
    try:
        for case in LAB_CASES["own"]:
            events = run_lab(box, "own", case.params, case.files)
            eq(events[-1]["status"], "ok", f"run status: {error_messages(events)}")
            eq(events[0]["sandbox"]["netns"], True, "private namespace")
            case.checks(events, case.params)
    finally:
        box.remove()


@test
def compose_file_validates_and_starts_a_classroom():
    need_podman()
    src = os.path.join(REPO, "docker", "compose.yaml")
    secret = f"s3cret-{ME}-{time.time_ns()}"
    env = dict(ENV, SOCKLAB_INSTRUCTOR_SECRET=secret, SOCKLAB_IMAGE=IMAGE)
    env.pop("DOCKER_HOST", None)
    base = ["docker-compose", "-f", src]
    r = subprocess.run(base + ["config", "-q"], capture_output=True, text=True, env=env,
                       timeout=60)
    eq(r.returncode, 0, f"docker-compose config -q: {r.stderr}")
    no_secret = {k: v for k, v in env.items() if k != "SOCKLAB_INSTRUCTOR_SECRET"}
    r = subprocess.run(base + ["config", "-q"], capture_output=True, text=True, env=no_secret,
                       timeout=60)
    check(r.returncode != 0 and "SOCKLAB_INSTRUCTOR_SECRET" in r.stderr,
          f"compose without the secret: rc {r.returncode}, {r.stderr[-300:]}")
    cfg = yaml.safe_load(subprocess.run(base + ["config"], capture_output=True, text=True,
                                        env=env, timeout=60, check=True).stdout)
    svc = cfg["services"]["socklab"]
    eq(svc["cap_drop"], ["ALL"], "cap_drop")
    eq(sorted(svc["cap_add"]), sorted(FULL), "cap_add")
    check(not svc.get("privileged"), "privileged")
    check(not any("no-new-privileges" in o for o in svc.get("security_opt", [])),
          "no-new-privileges would disable the lab program's file capabilities")
    eq(sorted(svc["ulimits"]), ["nofile", "nproc"], "ulimits: both or neither")
    eq(svc["healthcheck"]["test"], ["CMD", "socklab", "health"], "healthcheck")
    eq(svc["environment"]["SOCKLAB_INSTRUCTOR_SECRET"], secret, "secret from the environment")
    check(all(int(p["published"]) == int(p["target"]) for p in svc["ports"]),
          "published ports keep their numbers")
    eq(sorted((int(p["target"]), p.get("protocol", "tcp")) for p in svc["ports"]), WANT_PORTS,
       "published ports")
    eq(svc.get("devices", []), [], "devices (the relay needs no /dev/net/tun)")

    # Up for real, through podman's Docker API, with only the published
    # addresses changed: 127.0.0.1 and free ports (the pool keeps its numbers
    # inside and out, so SOCKLAB_BYO_PORTS moves with it).
    lo, hi = free_port_range(4)
    svc["ports"] = [f"127.0.0.1:{lo}:8080",
                    f"127.0.0.1:{lo + 2}-{hi}:{lo + 2}-{hi}",
                    f"127.0.0.1:{lo + 2}-{hi}:{lo + 2}-{hi}/udp"]
    svc["environment"]["SOCKLAB_BYO_PORTS"] = f"{lo + 2}-{hi}"
    svc["labels"] = {LABEL: ME}
    svc.pop("build", None)
    cfg["volumes"]["socklab-data"] = {"labels": {LABEL: ME}}
    path = os.path.join(state["tmp"], "compose.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    state["compose"] = {"project": f"socklabtest{ME}", "file": path,
                        "env": dict(env, DOCKER_HOST=start_service())}
    compose("up", "-d", "--no-build")
    name = podman("ps", "--filter", f"label={LABEL}={ME}", "--filter",
                  f"label=com.docker.compose.project=socklabtest{ME}",
                  "--format", "{{.Names}}").stdout.split()
    eq(len(name), 1, f"compose containers {name}")

    def healthy():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{lo}/api/health", timeout=2) as resp:
                return json.loads(resp.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False
    wait_for(healthy, 30, "the compose service's /api/health", interval=0.02)
    status = podman("exec", name[0], "cat", "/proc/1/status").stdout
    check("Uid:\t10001" in status and "CapEff:\t0000000000000000" in status,
          f"compose server: {status}")
    env_in = podman("exec", name[0], "printenv", "SOCKLAB_INSTRUCTOR_SECRET").stdout.strip()
    eq(env_in, secret, "the secret reaches the container")
    logs = podman("logs", name[0]).stdout
    check(secret not in logs, "the secret appears in the log")
    r = podman("exec", name[0], "touch", "/usr/x", check_rc=False)
    check(r.returncode != 0, "compose: the root filesystem is writable")
    limits = podman("exec", name[0], "cat", "/proc/1/limits").stdout
    check(any(line.startswith("Max open files") and "16384" in line
              for line in limits.splitlines()), f"nofile limit: {limits}")
    compose("down", "-v", "--timeout", "5")
    state["compose"] = None
    stop_service()


K8S = os.path.join(REPO, "docker", "k8s")
INFRA = f"localhost/socklab-infra-test:{ME}"
# What docker/k8s/ holds: the replicas, the bring-your-own-client host, NATS, and
# how they are reached and scaled. A file added or left behind fails here.
K8S_OBJECTS = sorted([
    ("Deployment", "socklab"), ("Deployment", "socklab-byo"), ("StatefulSet", "nats"),
    ("Service", "socklab"), ("Service", "socklab-byo"), ("Service", "nats"),
    ("PodDisruptionBudget", "socklab"), ("HorizontalPodAutoscaler", "socklab"),
    ("Ingress", "socklab"), ("ConfigMap", "tcp-services"), ("ConfigMap", "udp-services")])


def infra_start():
    """Start building docker/Dockerfile.infra (nats-server, nginx) in the
    background, once; infra_image() waits for it."""
    if state.get("infra_build"):
        return
    log = open(os.path.join(state["tmp"], "infra-build.log"), "w+")
    proc = subprocess.Popen(["podman", "build", "--format", "docker", "--pull=never",
                             "--layers=false", "--force-rm", "--label", f"{LABEL}={ME}",
                             "-f", "docker/Dockerfile.infra", "-t", INFRA, REPO],
                            env=ENV, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM))
    state["infra_build"] = (proc, log, time.monotonic())


def infra_image():
    """The infra image, built once for every test that needs it."""
    if state.get("infra"):
        return
    infra_start()
    proc, log, t0 = state["infra_build"]
    rc = proc.wait(timeout=600)
    log.seek(0)
    eq(rc, 0, f"podman build docker/Dockerfile.infra: {log.read()[-800:]}")
    state["infra"] = True
    diag(f"infra image (nats-server, nginx) ready {time.monotonic() - t0:.1f} s after "
         f"its build started")


def k8s_docs():
    """Every document of docker/k8s/*.yaml by (kind, name)."""
    docs = {}
    for f in sorted(os.listdir(K8S)):
        if not f.endswith(".yaml"):
            continue
        with open(os.path.join(K8S, f)) as fh:
            for d in yaml.safe_load_all(fh):
                key = (d["kind"], d["metadata"]["name"])
                check(key not in docs, f"{key} is defined twice (again in {f})")
                docs[key] = d
    return docs


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(ctr):
    return {e["name"]: e.get("value") for e in ctr.get("env", [])}


def option(argv, flag):
    """The value after flag in a command line."""
    check(flag in argv, f"{flag} missing from {argv}")
    return argv[argv.index(flag) + 1]


def check_socklab_pod(name, dep):
    """What a socklab pod needs, in either Deployment; its labels and container."""
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    eq(dep["spec"]["selector"]["matchLabels"], labels, f"{name}: selector")
    ctr = pod["spec"]["containers"][0]
    sc, psc = ctr["securityContext"], pod["spec"]["securityContext"]
    eq(psc["runAsNonRoot"], True, f"{name}: runAsNonRoot")
    eq(sc["capabilities"], {"drop": ["ALL"], "add": FULL}, f"{name}: capabilities")
    eq(sc["readOnlyRootFilesystem"], True, f"{name}: readOnlyRootFilesystem")
    eq(sc["allowPrivilegeEscalation"], True,
       f"{name}: allowPrivilegeEscalation (file capabilities)")
    eq(sc.get("privileged", False), False, f"{name}: privileged")
    for probe in ("readinessProbe", "livenessProbe"):
        eq((ctr[probe]["httpGet"]["path"], ctr[probe]["httpGet"]["port"]),
           ("/api/health", 8080), f"{name}: {probe}")
    for kind in ("requests", "limits"):
        eq(sorted(ctr["resources"][kind]), ["cpu", "memory"], f"{name}: resources.{kind}")
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    eq(sorted(mounts), ["/data", "/tmp"],
       f"{name}: mounts (no hostPath: the relay needs no TUN device)")
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    check("emptyDir" in vols[mounts["/data"]] and "emptyDir" in vols[mounts["/tmp"]],
          f"{name}: /data and /tmp are emptyDir volumes")
    eq({p["name"]: p["containerPort"] for p in ctr["ports"]}, {"http": 8080},
       f"{name}: the one container port")
    check("SOCKLAB_PUBLIC_WS_URL" not in env_of(ctr),
          f"{name}: no public WebSocket URL: the page uses its origin")
    return labels, ctr


@test
def kubernetes_manifests_agree_with_each_other():
    docs = k8s_docs()
    eq(sorted(docs), K8S_OBJECTS, "the objects in docker/k8s/")
    dep, byo = docs[("Deployment", "socklab")], docs[("Deployment", "socklab-byo")]
    labels, ctr = check_socklab_pod("socklab", dep)
    byo_labels, byo_ctr = check_socklab_pod("socklab-byo", byo)
    env, byo_env = env_of(ctr), env_of(byo_ctr)

    # The replicas: three, replaced one at a time, never below three ready.
    eq(dep["spec"]["replicas"], 3, "replicas")
    eq(dep["spec"]["strategy"], {"type": "RollingUpdate", "rollingUpdate":
                                 {"maxSurge": 1, "maxUnavailable": 0}}, "rollout strategy")
    eq(env["SOCKLAB_MAX_BYO"], "0", "the balanced replicas host no bring-your-own-client run")
    # The bring-your-own-client host: one pod, never two at once.
    eq(byo["spec"]["replicas"], 1, "socklab-byo replicas")
    eq(byo["spec"]["strategy"], {"type": "Recreate"}, "socklab-byo strategy")
    lo, hi = (int(x) for x in byo_env["SOCKLAB_BYO_PORTS"].split("-"))
    check(0 < int(byo_env["SOCKLAB_MAX_BYO"]) <= hi - lo + 1,
          f"socklab-byo: SOCKLAB_MAX_BYO {byo_env['SOCKLAB_MAX_BYO']} for {hi - lo + 1} ports")
    # Both are the same server: image, privileges, NATS.
    for key in ("image", "securityContext", "resources", "readinessProbe", "livenessProbe"):
        eq(byo_ctr[key], ctr[key], f"socklab-byo's container {key} as socklab's")
    eq(byo["spec"]["template"]["spec"]["securityContext"],
       dep["spec"]["template"]["spec"]["securityContext"], "pod securityContext")
    eq(byo_env["SOCKLAB_NATS"], env["SOCKLAB_NATS"], "the same NATS")
    check(labels != byo_labels and not selects(dep["spec"]["selector"]["matchLabels"], byo_labels)
          and not selects(byo["spec"]["selector"]["matchLabels"], labels),
          "the two Deployments select each other's pods")

    # NATS: the StatefulSet, its headless Service, its store, and the URL the
    # replicas use.
    sts, nsvc = docs[("StatefulSet", "nats")], docs[("Service", "nats")]
    npod = sts["spec"]["template"]
    nlabels = npod["metadata"]["labels"]
    check(selects(sts["spec"]["selector"]["matchLabels"], nlabels), "StatefulSet selector")
    eq(sts["spec"]["serviceName"], nsvc["metadata"]["name"], "StatefulSet serviceName")
    eq(nsvc["spec"].get("clusterIP"), "None", "the nats Service is headless")
    check(selects(nsvc["spec"]["selector"], nlabels), "the nats Service selects the server")
    check(not selects(nsvc["spec"]["selector"], labels), "the nats Service selects socklab")
    nctr = npod["spec"]["containers"][0]
    eq(nctr["image"], "socklab-infra:latest", "NATS image (docker/Dockerfile.infra)")
    argv = nctr["command"] + nctr.get("args", [])
    eq(argv[0], "nats-server", "NATS command")
    check("--jetstream" in argv or "-js" in argv, f"JetStream enabled: {argv}")
    nports = {p["name"]: p["containerPort"] for p in nctr["ports"]}
    sports = {p["name"]: p for p in nsvc["spec"]["ports"]}
    eq(int(option(argv, "--port")), nports["client"], "the client port in the command")
    eq(int(option(argv, "--http_port")), nports["monitor"], "the monitor port in the command")
    for name in ("client", "monitor"):
        eq((sports[name]["port"], sports[name]["targetPort"]), (nports[name], nports[name]),
           f"nats Service port {name}")
    for probe in ("readinessProbe", "livenessProbe"):
        eq((nctr[probe]["httpGet"]["path"], nctr[probe]["httpGet"]["port"]),
           ("/healthz", nports["monitor"]), f"NATS {probe}")
    claim = sts["spec"]["volumeClaimTemplates"][0]
    nmounts = {m["name"]: m["mountPath"] for m in nctr["volumeMounts"]}
    eq(option(argv, "--store_dir"), nmounts[claim["metadata"]["name"]],
       "JetStream's store is the claim's mount")
    check(claim["spec"]["resources"]["requests"]["storage"], "the claim's size")
    eq(npod["spec"]["securityContext"]["runAsNonRoot"], True, "NATS runAsNonRoot")
    eq(nctr["securityContext"]["capabilities"], {"drop": ["ALL"]}, "NATS capabilities")
    eq(nctr["securityContext"]["readOnlyRootFilesystem"], True, "NATS readOnlyRootFilesystem")
    eq(env["SOCKLAB_NATS"], f"nats://{nsvc['metadata']['name']}:{sports['client']['port']}",
       "SOCKLAB_NATS names the nats Service and its client port")

    # The Services: one port, no affinity; each selects its Deployment's pods only.
    svc, bsvc = docs[("Service", "socklab")], docs[("Service", "socklab-byo")]
    check(selects(svc["spec"]["selector"], labels)
          and not selects(svc["spec"]["selector"], byo_labels), "Service socklab selector")
    check(selects(bsvc["spec"]["selector"], byo_labels)
          and not selects(bsvc["spec"]["selector"], labels), "Service socklab-byo selector")
    for s in (svc, bsvc):
        eq(s["spec"].get("sessionAffinity", "None"), "None",
           f"{s['metadata']['name']}: no session affinity")
    eq([(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]],
       [("http", 8080, 8080)], "one Service port: the page, the API and the WebSocket")
    bports = bsvc["spec"]["ports"]
    eq([(p["name"], p["targetPort"]) for p in bports if p["name"] == "http"],
       [("http", 8080)], "socklab-byo's page port")
    pool = [p for p in bports if p["name"] != "http"]
    eq(sorted((p["port"], p["protocol"]) for p in pool),
       sorted((p, t) for p in range(lo, hi + 1) for t in ("TCP", "UDP")), "BYO Service ports")
    check(all(p["port"] == p["targetPort"] for p in pool), "BYO ports keep their numbers")

    # Disruptions and the autoscaler act on the replicas, never on the BYO host.
    pdb = docs[("PodDisruptionBudget", "socklab")]
    eq(pdb["apiVersion"], "policy/v1", "PodDisruptionBudget apiVersion")
    eq(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"],
       "PodDisruptionBudget selector")
    check(0 < pdb["spec"]["maxUnavailable"] < dep["spec"]["replicas"],
          f"PodDisruptionBudget maxUnavailable {pdb['spec']['maxUnavailable']}")
    hpa = docs[("HorizontalPodAutoscaler", "socklab")]
    eq(hpa["apiVersion"], "autoscaling/v2", "HorizontalPodAutoscaler apiVersion")
    eq(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": "socklab"}, "autoscaler target")
    eq(hpa["spec"]["minReplicas"], dep["spec"]["replicas"], "autoscaler floor = replicas")
    check(hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"], "autoscaler ceiling")
    eq([(m["type"], m["resource"]["name"], m["resource"]["target"]["type"])
        for m in hpa["spec"]["metrics"]], [("Resource", "cpu", "Utilization")],
       "autoscaler metric")
    check(ctr["resources"]["requests"]["cpu"], "a CPU request (utilisation is against it)")
    check(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300,
          "scaling down (which cancels a pod's runs) waits")

    # The Ingress: one host per Service, the origins the pages send.
    ing = docs[("Ingress", "socklab")]
    hosts = {}
    for rule in ing["spec"]["rules"]:
        paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
        eq(sorted(paths), ["/"], f"Ingress {rule['host']}: one backend for page, API and /ws")
        eq(paths["/"]["port"], {"name": "http"}, f"Ingress {rule['host']} port")
        hosts[paths["/"]["name"]] = rule["host"]
    eq(sorted(hosts), ["socklab", "socklab-byo"], "the Ingress's Services")
    eq(env["SOCKLAB_ORIGINS"], f"https://{hosts['socklab']}", "socklab's page origin")
    eq(byo_env["SOCKLAB_ORIGINS"], f"https://{hosts['socklab-byo']}", "socklab-byo's origin")
    eq(env["SOCKLAB_BYO_URL"], f"https://{hosts['socklab-byo']}/",
       "the balanced replicas send students to socklab-byo's page for their own clients")
    check("SOCKLAB_BYO_URL" not in byo_env, "socklab-byo hosts them itself: no SOCKLAB_BYO_URL")
    eq(sorted(h for t in ing["spec"]["tls"] for h in t["hosts"]), sorted(hosts.values()),
       "TLS hosts")
    for cm in ("tcp-services", "udp-services"):
        data = docs[("ConfigMap", cm)]["data"]
        eq(sorted(int(k) for k in data), list(range(lo, hi + 1)), f"{cm} ports")
        check(all(v.endswith(f"/socklab-byo:{k}") for k, v in data.items()), f"{cm} targets")


# ---------------------------------------------------------------------------
# podman kube play of docker/k8s/: NATS, the three replicas, the BYO host
# ---------------------------------------------------------------------------

def for_podman(doc, name):
    """A Deployment as this test plays it: its own name, the test's label on its
    pods, the test's images, and no container ports (podman 4.3 publishes a
    containerPort on the host's same port, where three replicas would collide;
    in a cluster it is informational): the test reaches each pod at its address."""
    doc = json.loads(json.dumps(doc))
    doc["metadata"]["name"] = name
    doc["metadata"].setdefault("labels", {})[LABEL] = ME
    doc["spec"]["template"]["metadata"]["labels"][LABEL] = ME
    doc["spec"]["selector"]["matchLabels"][LABEL] = ME
    for ctr in doc["spec"]["template"]["spec"]["containers"]:
        ctr["image"] = {"socklab:latest": IMAGE, "socklab-infra:latest": INFRA}[ctr["image"]]
        ctr.pop("ports", None)
    return doc


def nats_for_podman(sts, name, claim):
    """podman 4.3's kube play has no StatefulSet: its pod template as a
    Deployment of one, its volumeClaimTemplate as a PersistentVolumeClaim (which
    kube play makes a named volume)."""
    vct = sts["spec"]["volumeClaimTemplates"][0]
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": sts["spec"]["selector"],
                    "template": sts["spec"]["template"]}}
    dep = for_podman(dep, name)
    dep["spec"]["template"]["spec"].setdefault("volumes", []).append(
        {"name": vct["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": claim, "labels": {LABEL: ME}}, "spec": vct["spec"]}
    return [pvc, dep]


def kube_play(docs, file):
    path = os.path.join(state["tmp"], file)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f)
    for d in docs:
        if d["kind"] == "Deployment":
            state["pods"] += [f"{d['metadata']['name']}-pod-{i}"
                              for i in range(d["spec"]["replicas"])]
    # The default podman network: kube play would otherwise create its own.
    podman("kube", "play", "--network", "podman", path, timeout=180)
    return path


def pod_ip(pod):
    infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
    nets = json.loads(podman("inspect", infra, "--format",
                             "{{json .NetworkSettings.Networks}}").stdout)
    return next(iter(nets.values()))["IPAddress"]


def http_get(url, timeout=20):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def json_or_none(url):
    try:
        return json.loads(http_get(url, timeout=2))
    except (OSError, ValueError):
        return None


def replica_ready(base):
    """/api/health when the replica is ok and connected to NATS with its
    index in sync, else None."""
    h = json_or_none(base + "/api/health")
    n = (h or {}).get("nats") or {}
    ok = (h and h.get("status") == "ok" and n.get("state") == "connected"
          and n.get("replicas", {}).get("state") == "ok")
    return h if ok else None


def listed(base, rid):
    return any(r["id"] == rid for r in json.loads(http_get(base + "/api/runs")))


def stored(base, name):
    """Wait until JetStream has acknowledged everything the replica published
    (a run's last lines go out after its run.end reached the watcher)."""
    def done():
        n = json_or_none(base + "/api/health")["nats"]
        return n["queued"] == 0 and n["in_flight"] == 0 and n["acked"] == n["published"]
    wait_for(done, 30, f"JetStream to acknowledge all of {name}'s lines")


def served_everywhere(bases, owner, rid, nlines):
    """Every other replica lists the run as the owner's and serves its events
    byte for byte as the owner does."""
    mine = http_get(f"{bases[owner]}/api/runs/{rid}/events")
    eq(mine.count(b"\n"), nlines, f"{owner}'s /api/runs/ID/events lines")
    owner_id = json_or_none(bases[owner] + "/api/health")["nats"]["replica"]
    stored(bases[owner], owner)
    for name, base in bases.items():
        if name == owner:
            continue
        wait_for(lambda: listed(base, rid), 30, f"{name} to list {owner}'s run")
        meta = json.loads(http_get(f"{base}/api/runs/{rid}"))
        eq((meta["status"] != "running", meta.get("remote"), meta.get("replica")),
           (True, True, owner_id), f"{name}'s meta of {owner}'s run")
        eq(http_get(f"{base}/api/runs/{rid}/events"), mine,
           f"{name}'s /api/runs/ID/events of {owner}'s run")
    return mine


def balancer_conf(ips):
    """nginx standing in for the Service (podman has no kube-proxy): round robin
    over the replicas' addresses, no affinity, one worker (so the rotation is
    one), and the replica that answered in X-Socklab-Upstream."""
    servers = "".join(f"\t\tserver {ip}:8080;\n" for ip in ips)
    return f"""worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr;
events {{}}
http {{
\taccess_log off;
\tupstream socklab {{
{servers}\t}}
\tmap $http_upgrade $connection_upgrade {{
\t\tdefault upgrade;
\t\t'' close;
\t}}
\tserver {{
\t\tlisten 8080;
\t\tadd_header X-Socklab-Upstream $upstream_addr always;
\t\tproxy_http_version 1.1;
\t\tlocation / {{
\t\t\tproxy_set_header Host $http_host;
\t\t\tproxy_pass http://socklab;
\t\t}}
\t\tlocation = /ws {{
\t\t\tproxy_pass http://socklab;
\t\t\tproxy_set_header Host $http_host;
\t\t\tproxy_set_header Upgrade $http_upgrade;
\t\t\tproxy_set_header Connection $connection_upgrade;
\t\t\tproxy_read_timeout 600s;
\t\t}}
\t}}
}}
"""


def via_balancer(url):
    """A GET through the balancer: (the replica's address, the body)."""
    with urllib.request.urlopen(url, timeout=20) as resp:
        return resp.headers["X-Socklab-Upstream"].rsplit(":", 1)[0], resp.read()


@test
def kubernetes_scale_out_runs_with_podman_kube_play():
    """NATS (the StatefulSet's pod), the 3-replica Deployment and the BYO host,
    played by podman; a run on one replica listed and served byte for byte by
    the others, directly and through a round-robin stand-in for the Service;
    a bring-your-own-client run reached at its pod's address."""
    need_podman()
    infra_image()
    t0 = time.monotonic()
    docs = k8s_docs()
    prefix = f"socklab-test-{ME}"
    claim = f"{prefix}-nats-data"
    state["volumes"].append(claim)
    nats_path = kube_play(nats_for_podman(docs[("StatefulSet", "nats")], f"{prefix}-nats",
                                          claim), "nats.yaml")
    nats_pod = f"{prefix}-nats-pod-0"
    nats_ip = pod_ip(nats_pod)
    wait_for(lambda: json_or_none(f"http://{nats_ip}:8222/healthz"), 30,
             "NATS's /healthz", interval=0.05)
    # No cluster DNS here: the Service name `nats` in SOCKLAB_NATS becomes the pod's address.
    nats_url = f"nats://{nats_ip}:4222"
    played = []
    for key, name in ((("Deployment", "socklab"), f"{prefix}-rep"),
                      (("Deployment", "socklab-byo"), f"{prefix}-byo")):
        dep = for_podman(docs[key], name)
        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
            if e["name"] == "SOCKLAB_NATS":
                e["value"] = nats_url
        played.append(dep)
    eq(played[0]["spec"]["replicas"], 3, "replicas played")
    socklab_path = kube_play(played, "socklab.yaml")
    reps = {f"rep{i}": f"{prefix}-rep-pod-{i}" for i in range(3)}
    reps["byo"] = f"{prefix}-byo-pod-0"
    bases = {n: f"http://{pod_ip(p)}:8080" for n, p in reps.items()}
    health = {n: wait_for(lambda: replica_ready(b), 60, f"{n} ok and connected to NATS",
                          interval=0.05) for n, b in bases.items()}
    diag(f"kube play: NATS and 4 socklab pods ready in {time.monotonic() - t0:.1f} s")
    ids = {h["nats"]["replica"] for h in health.values()}
    eq(len(ids), 4, f"four replicas with their own ids: {ids}")

    # The pods as the manifests say: uid, capabilities, read-only roots.
    status = podman("exec", f"{reps['rep0']}-socklab", "cat", "/proc/1/status").stdout
    check("Uid:\t10001" in status and "CapEff:\t0000000000000000" in status
          and "CapBnd:\t0000000000203000" in status and "NoNewPrivs:\t0" in status,
          f"replica server: {status}")
    r = podman("exec", f"{reps['rep0']}-socklab", "touch", "/usr/x", check_rc=False)
    check(r.returncode != 0, "replica: the root filesystem is writable")
    nstatus = podman("exec", f"{nats_pod}-nats", "cat", "/proc/1/status").stdout
    check("Uid:\t10002" in nstatus and "CapEff:\t0000000000000000" in nstatus
          and "NoNewPrivs:\t1" in nstatus, f"nats-server: {nstatus}")

    # A run on one replica, listed and served byte for byte by the others.
    async def one(base):
        async with websockets.connect(base.replace("http", "ws", 1) + "/ws",
                                      subprotocols=["socklab.v1"], max_size=None,
                                      open_timeout=20) as ws:
            run_id = await start_run(ws, {"messages": 2})
            events = await events_until_end(ws, run_id)
            # The balanced replicas host no bring-your-own-client server.
            reply = await request(ws, {"op": "run", "lab": "tcp-echo",
                                       "params": {"mode": "server"}})
            return events, reply
    events, refused = arun(one(bases["rep1"]))
    check_stream(events)
    eq(events[-1]["status"], "ok", f"a run on a replica: {error_messages(events)}")
    eq(events[0]["sandbox"]["netns"], True, "a private namespace in the pod")
    check(refused.get("type") != "run.accepted"
          and "bring-your-own-client runs are disabled" in json.dumps(refused),
          f"a BYO run on a balanced replica: {refused}")
    rid = events[0]["run"]
    body = served_everywhere(bases, "rep1", rid, len(events))
    on_disk = podman("exec", f"{reps['rep1']}-socklab", "cat",
                     f"/data/runs/{rid}/events.jsonl").stdout
    eq(body.decode(), on_disk, "rep1's /events is its events.jsonl")

    # Through a stand-in for the Service (round robin, no affinity): every
    # request may reach another replica, and each says the same.
    rep_ips = {bases[n].split("//")[1].split(":")[0]: n for n in ("rep0", "rep1", "rep2")}
    conf = os.path.join(state["tmp"], "balancer.conf")
    with open(conf, "w") as f:
        f.write(balancer_conf(sorted(rep_ips)))
    lb_name = f"{prefix}-balancer"
    state["containers"].append(lb_name)
    podman("run", "-d", "--name", lb_name, "--label", f"{LABEL}={ME}", "--network", "podman",
           "-v", f"{conf}:/etc/nginx/balancer.conf:ro", INFRA,
           "nginx", "-c", "/etc/nginx/balancer.conf", "-g", "daemon off;")
    lb_ip = json.loads(podman("inspect", lb_name, "--format",
                              "{{json .NetworkSettings.Networks}}").stdout)
    lb = f"http://{next(iter(lb_ip.values()))['IPAddress']}:8080"
    wait_for(lambda: json_or_none(lb + "/api/health"), 30, "the balancer", interval=0.05)
    seen = {}
    for _ in range(6):
        ip, raw = via_balancer(lb + "/api/health")
        seen.setdefault(rep_ips[ip], set()).add(json.loads(raw)["nats"]["replica"])
    eq(sorted(seen), ["rep0", "rep1", "rep2"], "the replicas the balancer reached")
    check(all(ids == {health[n]["nats"]["replica"]} for n, ids in seen.items()),
          f"each address is one replica: {seen}")
    # A run started through the balancer's WebSocket, fetched through it from
    # every replica in turn.
    lb_events, _ = arun(one(lb))
    check_stream(lb_events)
    eq(lb_events[-1]["status"], "ok", f"a run through the balancer: {error_messages(lb_events)}")
    lb_rid = lb_events[0]["run"]
    for n in ("rep0", "rep1", "rep2"):
        wait_for(lambda: listed(bases[n], lb_rid), 30, f"{n} to list the balanced run")
    owners = [n for n in ("rep0", "rep1", "rep2")
              if not json.loads(http_get(f"{bases[n]}/api/runs/{lb_rid}")).get("remote")]
    eq(len(owners), 1, f"the replicas that ran the balanced run: {owners}")
    stored(bases[owners[0]], owners[0])
    fetched = dict(via_balancer(f"{lb}/api/runs/{lb_rid}/events") for _ in range(3))
    eq(sorted(rep_ips[ip] for ip in fetched), ["rep0", "rep1", "rep2"],
       "three fetches through the balancer, three replicas")
    eq({b.count(b"\n") for b in fetched.values()}, {len(lb_events)},
       "the balanced run's events from every replica: lines")
    eq(len(set(fetched.values())), 1, "the balanced run's events from every replica: bytes")

    # Bring your own client: the BYO host's run, reached at the pod's address
    # (in a cluster: the Ingress controller's, forwarded to the socklab-byo Service).
    params, client, done, checks = BYO_CLIENTS["tcp-echo"]
    byo_ip = bases["byo"].split("//")[1].split(":")[0]

    async def byo_run():
        async with websockets.connect(f"ws://{byo_ip}:8080/ws", subprotocols=["socklab.v1"],
                                      max_size=None, open_timeout=20) as ws:
            run_id = await start_run(ws, params, lab="tcp-echo")
            head = await events_until_end(ws, run_id, until=lambda e: e["type"] == "listening")
            port = head[-1]["port"]
            check(9000 <= port <= 9019, f"BYO port {port} outside socklab-byo's pool")
            nbytes = client(port, byo_ip)
            more = await events_until_end(ws, run_id, until=done)
            reply = await request(ws, {"op": "cancel", "run": run_id})
            eq(reply.get("type"), "cancel.accepted", f"cancel: {reply}")
            return head + more + await events_until_end(ws, run_id), nbytes
    bevents, nbytes = arun(byo_run())
    check_stream(bevents)
    eq(bevents[-1]["status"], "cancelled", "the BYO run's end")
    checks(bevents, nbytes)
    served_everywhere(bases, "byo", bevents[0]["run"], len(bevents))

    # The JetStream store is on the claim's volume.
    r = podman("exec", f"{nats_pod}-nats", "ls", "/data/jetstream", check_rc=False)
    check(r.returncode == 0 and r.stdout.split(), f"the store on the claim: {r.stderr}")

    t0 = time.monotonic()
    podman("kube", "down", socklab_path)
    podman("kube", "down", nats_path)
    diag(f"kube down (SIGTERM to 5 pods) in {(time.monotonic() - t0) * 1000:.0f} ms")
    podman("rm", "-f", lb_name)
    state["containers"].remove(lb_name)
    for pod in [*reps.values(), nats_pod]:
        state["pods"].remove(pod)
    podman("volume", "rm", "-f", claim)
    state["volumes"].remove(claim)


# ---------------------------------------------------------------------------
# docker/compose-replicas.yaml: NATS, three replicas and the round-robin front
# ---------------------------------------------------------------------------

STUDENTS = 60
REPLICAS = ("socklab-a", "socklab-b", "socklab-c")


def health_of(base):
    h = json_or_none(base + "/api/health")
    return h if h and h.get("status") == "ok" else None


def classes_state(base):
    return ((health_of(base) or {}).get("nats") or {}).get("classes", {}).get("state")


def lab_pids(run_id):
    """The processes of a run (its lab program, `--run-id ID` in its argv),
    seen from the host: rootful podman's containers are the host's processes."""
    want = b"--run-id\0" + run_id.encode() + b"\0"
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if want in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def address_gone(base):
    """Nothing answers at a replica's address any more (no refusal: its
    network namespace is gone too)."""
    try:
        with socket.create_connection((base.split("//")[1].split(":")[0], 8080), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return False
    except OSError:
        return True


def ctr_ip(name):
    """A container's address on its (one) network."""
    nets = json.loads(podman("inspect", name, "--format",
                             "{{json .NetworkSettings.Networks}}").stdout)
    return next(iter(nets.values()))["IPAddress"]


class Student:
    """One student's page: a WebSocket through the front, its class.joined
    answers (and the replica each came from), and every event it received, by
    run, in the order received."""

    def __init__(self, i):
        self.name = f"s{i:02d}"
        self.member = None
        self.replicas = []
        self.events = {}
        self.notices = []
        self.ws = None
        self.reader = None
        self.closed = False

    async def join(self, front, code, after=None):
        self.closed = False
        self.ws = await front.connect()
        msg = {"op": "class.join", "class": code, "name": self.name}
        if self.member:
            msg["member"] = self.member
        if after:
            msg["after"] = after
        r = await ask(self.ws, msg)
        eq(r.get("type"), "class.joined", f"{self.name} joins through the front: {r}")
        self.member = r["member"]
        self.replicas.append(r.get("replica"))
        self.reader = asyncio.ensure_future(self.read())
        return r

    async def read(self):
        try:
            while True:
                m = await class_recv(self.ws, 3600)
                if "seq" in m:
                    self.events.setdefault(m["run"], []).append(m)
                elif m.get("type") == "class.run":
                    self.notices.append(m["run"])
        except websockets.ConnectionClosed:
            self.closed = True

    def last(self, run_id):
        got = self.events.get(run_id) or []
        return got[-1]["seq"] if got else None

    def ended(self, run_id):
        got = self.events.get(run_id) or []
        return bool(got) and got[-1]["type"] == "run.end"

    async def close(self):
        if self.ws:
            await self.ws.close()
        if self.reader:
            self.reader.cancel()


async def until_true(cond, timeout, what):
    """Poll cond (no I/O of its own: the readers run meanwhile) until it holds;
    the deadline only catches a hang."""
    end = time.monotonic() + timeout
    while not cond():
        check(time.monotonic() < end, f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


async def off_loop(fn, *args):
    """A blocking call (podman, a wait on HTTP) off the event loop: the
    students' readers keep reading and answering the server's pings."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args))


async def poll_http(cond, timeout, what):
    """cond does blocking HTTP: run it off the event loop, so the readers
    keep reading."""
    loop = asyncio.get_running_loop()
    end = time.monotonic() + timeout
    while True:
        got = await loop.run_in_executor(None, cond)
        if got:
            return got
        check(time.monotonic() < end, f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


class Front:
    """The front's one port, as a browser reaches it."""

    def __init__(self, port):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def connect(self, base=None):
        url = (base or self.base).replace("http", "ws", 1) + "/ws"
        return websockets.connect(url, subprotocols=["socklab.v1"], max_size=None,
                                  origin=self.base if base is None else None,
                                  open_timeout=30, close_timeout=5, ping_interval=None)


@test
def compose_replicas_teach_a_class_of_60_through_one_port():
    """docker/compose-replicas.yaml as written (images, names, NATS URL,
    nginx), through the front's one port: 60 students spread by the
    balancer over the three replicas get every event of a class run in order;
    a run on one replica is watched and its capture downloaded through the
    others; one replica SIGKILLed mid-run: its students come back through the
    front to the others and continue after their last event; NATS stopped
    and started mid-class: degraded, then ok, and the next class run reaches
    every student."""
    need_podman()
    infra_image()
    t_all = time.monotonic()
    src = os.path.join(REPO, "docker", "compose-replicas.yaml")
    secret = f"s3cret-{ME}-{time.time_ns()}"
    port = free_port_range(1)[0]
    front = Front(port)
    env = dict(ENV, SOCKLAB_INSTRUCTOR_SECRET=secret, SOCKLAB_IMAGE=IMAGE,
               SOCKLAB_INFRA_IMAGE=INFRA, SOCKLAB_PORT=str(port),
               SOCKLAB_ORIGINS=front.base)
    env.pop("DOCKER_HOST", None)
    r = subprocess.run(["docker-compose", "-f", src, "config", "-q"], capture_output=True,
                       text=True, env=env, timeout=60)
    eq(r.returncode, 0, f"docker-compose config -q: {r.stderr}")
    cfg = yaml.safe_load(subprocess.run(["docker-compose", "-f", src, "config"],
                                        capture_output=True, text=True, env=env, timeout=60,
                                        check=True).stdout)
    eq(sorted(cfg["services"]), sorted(["nats", "front", *REPLICAS]), "the services")
    for name in REPLICAS:
        svc = cfg["services"][name]
        eq(svc["environment"]["SOCKLAB_NATS"], "nats://nats:4222", f"{name}: NATS")
        eq(svc["image"], IMAGE, f"{name}: image")
        check(int(svc["environment"]["SOCKLAB_MAX_CONNS_PER_ADDR"]) >= 1000,
              f"{name}: every student arrives from the front's address: "
              f"SOCKLAB_MAX_CONNS_PER_ADDR {svc['environment'].get('SOCKLAB_MAX_CONNS_PER_ADDR')}")
    # Only what a test must change: the published address (127.0.0.1 and a
    # free port), labels for the leftover sweep, no build (the images exist).
    cfg["services"]["front"]["ports"] = [f"127.0.0.1:{port}:8080"]
    for svc in cfg["services"].values():
        svc.pop("build", None)
        svc["labels"] = {LABEL: ME}
    for vol in cfg["volumes"]:
        cfg["volumes"][vol] = {"labels": {LABEL: ME}}
    path = os.path.join(state["tmp"], "compose-replicas.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    project = f"socklabtest{ME}replicas"
    proj = {"project": project, "file": path, "env": dict(env, DOCKER_HOST=start_service())}
    state["replicas"] = proj
    frozen = []
    try:
        compose("up", "-d", "--no-build", project=proj)
        ctr = {svc: f"{project}_{svc}_1" for svc in cfg["services"]}
        bases = {svc: f"http://{ctr_ip(ctr[svc])}:8080" for svc in REPLICAS}
        health = {svc: wait_for(lambda: replica_ready(b), 60, f"{svc} ok and connected to NATS",
                                interval=0.05) for svc, b in bases.items()}
        rid_of = {svc: h["nats"]["replica"] for svc, h in health.items()}
        svc_of = {v: k for k, v in rid_of.items()}
        eq(len(svc_of), 3, f"three replicas with their own ids: {rid_of}")
        wait_for(lambda: health_of(front.base), 30, "the front's /api/health", interval=0.05)
        diag(f"compose up: nats, 3 replicas and the front ready in "
             f"{time.monotonic() - t_all:.1f} s")
        arun(class_through_the_front(front, bases, rid_of, svc_of, ctr, frozen))
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        t0 = time.monotonic()
        compose("down", "-v", "--timeout", "5", project=proj, check_rc=False)
        state["replicas"] = None
        diag(f"compose down in {time.monotonic() - t0:.1f} s")
    left = podman("ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                  "--format", "{{.Names}}").stdout.split()
    eq(left, [], "containers left after compose down")
    nets = [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
            if n.startswith(project)]
    eq(nets, [], "networks left after compose down")
    vols = [v for v in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
            if v.startswith(project)]
    eq(vols, [], "volumes left after compose down")
    diag(f"compose replicas test: {time.monotonic() - t_all:.1f} s in all")


async def class_through_the_front(front, bases, rid_of, svc_of, ctr, frozen):
    def viewers(svc):
        return (health_of(bases[svc]) or {}).get("counters", {}).get("class_viewers")

    async def bundle(run_id):
        raw = await asyncio.get_running_loop().run_in_executor(
            None, http_get, f"{front.base}/api/runs/{run_id}/events")
        events = [json.loads(x) for x in raw.decode().splitlines()]
        check_stream(events)
        return events

    async def class_run(params):
        acc = await ask(teacher, {"op": "class.run", "lab": "tcp-echo", "params": params})
        eq(acc.get("type"), "run.accepted", f"class.run: {acc}")
        return acc["run"]

    async def everyone_gets(run_id, who, status="ok"):
        await until_true(lambda: all(s.ended(run_id) for s in who), 120,
                         f"every student's run.end of {run_id}")
        want = await bundle(run_id)
        eq(want[-1]["status"], status, f"the class run: {want[-1]}")
        for s in who:
            eq([e["seq"] for e in s.events[run_id]], list(range(len(want))),
               f"{s.name}: every seq of the class run, in order, once")
            eq(s.events[run_id], want, f"{s.name}: every event as the run's /events says")
            check(run_id in s.notices, f"{s.name}: the class.run notice")
        return want

    # The instructor, through the front, opens a class on whichever replica
    # the balancer gave it: that one is the class's home.
    teacher = await front.connect()
    r = await ask(teacher, {"op": "signin", "secret": state["replicas"]["env"]
                            ["SOCKLAB_INSTRUCTOR_SECRET"]})
    eq(r["type"], "signin.accepted", f"sign-in through the front: {r}")
    opened = await ask(teacher, {"op": "class.open", "name": "Dr. Wu"})
    eq(opened["type"], "class.opened", f"class.open: {opened}")
    code = opened["class"]
    home = await poll_http(lambda: next((svc for svc, b in bases.items() if
                                         (health_of(b) or {}).get("counters", {})
                                         .get("classes_open") == 1), None),
                           30, "the replica that holds the class")
    for svc, b in bases.items():
        await poll_http(lambda: (health_of(b) or {}).get("nats", {}).get("classes", {})
                        .get("classes_known", 0) >= 1, 30, f"{svc} to know the class")

    # 1. Sixty students join through the front: the balancer spreads them.
    students = [Student(i) for i in range(STUDENTS)]
    try:
        t0 = time.monotonic()
        for s in students:
            await s.join(front, code)
        per = {svc: sum(1 for s in students if s.replicas[-1] == rid_of[svc])
               for svc in bases}
        eq(sum(per.values()), STUDENTS, f"students on the three replicas: {per}")
        check(all(per.values()), f"the balancer left a replica without students: {per}")
        for svc in bases:
            eq(await poll_http(lambda: viewers(svc) == per[svc] or None, 30,
                               f"{svc}'s class_viewers"), True, f"{svc}'s class_viewers")
        m, _ = await until(teacher, lambda m: m.get("type") == "class.members"
                           and m["count"] == STUDENTS, "class.members counting all 60", 60)
        eq(len(m["names"]), STUDENTS, "the instructor sees every student's name")
        diag(f"{STUDENTS} students joined through the front in "
             f"{time.monotonic() - t0:.1f} s: {', '.join(f'{k} {v}' for k, v in per.items())}"
             f" (home: {home})")

        # 2. A class run: every student, on every replica, every event in order.
        t0 = time.monotonic()
        run1 = await class_run({"messages": 20, "interval_ms": 10})
        want1 = await everyone_gets(run1, students)
        diag(f"class run 1: {len(want1)} events to all {STUDENTS} in "
             f"{time.monotonic() - t0:.1f} s")

        # 3. A run on one replica (a student's own run with a capture, through
        # the front), watched and its capture downloaded through the others.
        await run_watched_and_downloaded_elsewhere(front, bases)

        # 4. A replica other than the class's home is SIGKILLed mid-run.
        victim = next(svc for svc in bases if svc != home and per[svc])
        gone = [s for s in students if s.replicas[-1] == rid_of[victim]]
        # A run of 20 s at least, held still (its lab process stopped) once
        # every student has events of it: the kill lands mid-run and the
        # students come back while it is still going, whatever the load.
        run2 = await class_run({"messages": 1000, "interval_ms": 20})
        await until_true(lambda: all((s.last(run2) or 0) >= 5 for s in students), 60,
                         "every student's first events of run 2")
        pids = lab_pids(run2)
        check(pids, f"run 2's lab process on the host ({run2})")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        t0 = time.monotonic()
        await off_loop(podman, "kill", "-s", "KILL", ctr[victim])
        await until_true(lambda: all(s.closed for s in gone), 30,
                         f"the students of {victim} to see their connection close")
        had = {s.name: s.last(run2) for s in gone}
        check(not any(s.ended(run2) for s in students), "run 2 ended before the kill")
        # A page comes back a second or more later (its reconnect backs
        # off): by then the dead replica's address no longer answers at
        # all, and the front must not wait on it (proxy_connect_timeout).
        await poll_http(lambda: address_gone(bases[victim]), 30,
                        f"{victim}'s address to stop answering")
        t1 = time.monotonic()
        for s in gone:
            r = await s.join(front, code, after={"run": run2, "seq": had[s.name]})
            eq(r.get("resumed"), True, f"{s.name} resumes after seq {had[s.name]}: {r}")
            check(r["replica"] in rid_of.values() and r["replica"] != rid_of[victim],
                  f"{s.name} came back to {r['replica']}, not to {victim}")
        back = {svc: sum(1 for s in gone if s.replicas[-1] == rid_of[svc]) for svc in bases}
        diag(f"{victim} SIGKILLed with {len(gone)} students, its address silent "
             f"{t1 - t0:.1f} s later; back through the front in {time.monotonic() - t1:.1f} s "
             f"({', '.join(f'{k} {v}' for k, v in back.items() if v)})")
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen.clear()
        # It goes on live for everyone, those who came back too; then the
        # instructor stops it.
        target = max(s.last(run2) for s in students) + 25
        await until_true(lambda: all(s.last(run2) >= target for s in students), 60,
                         f"every student's events of run 2 up to seq {target}")
        r = await ask(teacher, {"op": "cancel", "run": run2})
        eq(r.get("type"), "cancel.accepted", f"the instructor stops run 2: {r}")
        await everyone_gets(run2, students, status="cancelled")
        live = {svc: b for svc, b in bases.items() if svc != victim}

        # 5. NATS stopped mid-class: degraded; started again: ok, and the
        # next class run reaches every student.
        t0 = time.monotonic()
        nats_ip = await off_loop(ctr_ip, ctr["nats"])
        await off_loop(podman, "stop", "-t", "5", ctr["nats"])
        for svc, b in live.items():
            await poll_http(lambda: classes_state(b) == "degraded", 30, f"{svc} degraded")
        await off_loop(podman, "start", ctr["nats"])
        for svc, b in live.items():
            await poll_http(lambda: replica_ready(b) and classes_state(b) == "ok", 60,
                            f"{svc} ok again after NATS came back")
        diag(f"NATS stopped and started: degraded, then ok on both replicas in "
             f"{time.monotonic() - t0:.1f} s (its address {nats_ip}, then "
             f"{await off_loop(ctr_ip, ctr['nats'])})")
        t0 = time.monotonic()
        run3 = await class_run({"messages": 10, "interval_ms": 10})
        want3 = await everyone_gets(run3, students)
        diag(f"class run 3 after NATS came back: {len(want3)} events to all {STUDENTS} in "
             f"{time.monotonic() - t0:.1f} s")
    finally:
        for s in students:
            await s.close()
        await teacher.close()


async def run_watched_and_downloaded_elsewhere(front, bases):
    """A run with a capture started through the front runs on one replica;
    the other two serve its events to a watch and its capture byte for byte."""
    t0 = time.monotonic()
    async with front.connect() as ws:
        run_id = await start_run(ws, {"capture": True, "messages": 20, "size": 16000})
        events = await events_until_end(ws, run_id, timeout=90)
    check_stream(events)
    eq(events[-1]["status"], "ok", f"the captured run: {error_messages(events)}")
    loop = asyncio.get_running_loop()

    def own(b):
        m = json_or_none(f"{b}/api/runs/{run_id}")
        return bool(m) and not m.get("remote")
    owner = await poll_http(lambda: next((svc for svc, b in bases.items() if own(b)), None),
                            30, "the replica that ran it")
    await off_loop(stored, bases[owner], owner)
    mine = await loop.run_in_executor(None, http_get, f"{bases[owner]}/api/runs/{run_id}/events")
    eq(mine.count(b"\n"), len(events), "the owner's /events")
    pcap = await loop.run_in_executor(None, http_get,
                                      f"{bases[owner]}/api/runs/{run_id}/capture.pcap")
    check(len(pcap) > 24, f"the owner's capture ({len(pcap)} bytes)")

    def download(b):
        try:
            return http_get(f"{b}/api/runs/{run_id}/capture.pcap")
        except urllib.error.HTTPError as e:
            if e.code == 503:  # files_pending: the chunks are on their way to NATS
                return None
            raise
    for svc, b in bases.items():
        if svc == owner:
            continue
        await poll_http(lambda: listed(b, run_id), 30, f"{svc} to list {owner}'s run")
        async with front.connect(b) as ws:
            reply = await request(ws, {"op": "watch", "run": run_id})
            eq((reply.get("type"), reply.get("source")), ("watch.accepted", "stream"),
               f"{svc}'s watch of {owner}'s run: {reply}")
            watched = await events_until_end(ws, run_id, timeout=60)
        eq(watched, events, f"{svc}'s watch of {owner}'s run")
        got = await poll_http(lambda: download(b), 60, f"{svc}'s capture.pcap")
        eq((len(got), hashlib.sha256(got).hexdigest()),
           (len(pcap), hashlib.sha256(pcap).hexdigest()),
           f"{svc}'s capture.pcap of {owner}'s run")
    diag(f"a run on {owner} watched and its capture ({len(pcap)} bytes) downloaded "
         f"byte-identical through the two others in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    state["tmp"] = tempfile.mkdtemp(prefix=f"socklab-ct-{ME}-")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_term)
    run(timeout=480)
