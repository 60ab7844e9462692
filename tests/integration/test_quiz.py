"""test_quiz.py: "predict, then check" on real runs: the graders' verdicts against what each run's captured events show, `run --ask` and `grade` on the CLI."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, wait_for  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")
TMP = tempfile.mkdtemp(prefix="socklab-quiz-")


def sl(*args, stdin=None, timeout=120):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report from {args}: {r.stderr[-800:]}")
    return r


def record(lab, *params):
    """Run lab with params; returns (events, path of the recorded JSON Lines)."""
    args = ["run", lab, "--json"]
    for p in params:
        args += ["-p", p]
    r = sl(*args)
    eq(r.returncode, 0, f"{lab} {params} exit status ({r.stderr[-400:]})")
    path = os.path.join(TMP, f"{lab}-{len(os.listdir(TMP))}.jsonl")
    with open(path, "w") as f:
        f.write(r.stdout)
    return [json.loads(line) for line in r.stdout.splitlines()], path


def grade(path, *answers):
    args = ["grade", path, "--json"]
    for a in answers:
        args += ["-a", a]
    r = sl(*args)
    eq(r.returncode, 0, f"grade exit status ({r.stderr})")
    return {v["q"]: v for v in json.loads(r.stdout)}


def segs(ev):
    return [e for e in ev if e["type"] == "segment"]


def close_of(ev):
    """The close read from the capture here, independently of the grader:
    the FINs, the bare ACKs of a FIN, and the first ACK of the client's FIN."""
    s = segs(ev)
    fins = [x for x in s if "FIN" in x["flags"]]
    end = lambda f: (f["seq_raw"] + f["len"] + 1) % 2**32  # noqa: E731
    acks = [x for x in s if not {"FIN", "SYN", "RST"} & set(x["flags"]) and x["len"] == 0
            and any(f["from"] != x["from"] and f["seq"] < x["seq"] and x["ack_raw"] == end(f) for f in fins)]
    cfin = next(f for f in fins if f["from"] == "client")
    first_ack = next(x for x in s if x["seq"] > cfin["seq"] and x["from"] == "server" and "ACK" in x["flags"]
                     and (x["ack_raw"] - end(cfin)) % 2**32 < 2**31)
    return fins, acks, first_ack


@test
def handshake_close_takes_four_segments_when_the_closer_waits():
    # 300 ms is longer than Linux's largest delayed ACK: the first FIN is
    # acknowledged alone before the second FIN leaves, every time.
    ev, path = record("handshake", "close_delay_ms=300", "observe_ms=200")
    fins, acks, first_ack = close_of(ev)
    eq((len(fins), len(acks)), (2, 2), "two FINs, each acknowledged by a bare ACK (from the capture)")
    g = grade(path, "close_segments=4", "fin_acked_by=%d" % first_ack["n"], "time_wait_side=server")
    eq((g["close_segments"]["truth"], g["close_segments"]["result"]), (4, "right"), "close_segments")
    eq(g["close_segments"]["evidence"], sorted(x["seq"] for x in fins + acks), "evidence: the four segments")
    eq(g["fin_acked_by"]["result"], "right", "the bare ACK acknowledges the client's FIN")
    eq(first_ack["flags"], ["ACK"], "that segment is a bare ACK")
    eq(g["fin_acked_by"]["why"]["key"], "quiz.handshake.fin_acked_by.why.pure", "explanation")
    tw = {e["who"] for e in ev if e["type"] in ("observation", "timer") and e.get("state") == "TIME_WAIT"}
    eq(tw, {"client"}, "sock_diag saw the client in TIME_WAIT")
    eq((g["time_wait_side"]["truth"], g["time_wait_side"]["result"]), ("client", "wrong"), "answered server")


@test
def handshake_close_three_or_four_read_from_the_capture():
    ev, path = record("handshake", "observe_ms=200")
    fins, acks, first_ack = close_of(ev)
    n = len(fins) + len(acks)
    g = grade(path, "close_segments=3")
    eq(g["close_segments"]["truth"], n, "the grader counts what the capture shows")
    eq(g["close_segments"]["result"], "right" if n == 3 else "wrong", "graded")
    if n == 3:
        # The FIN piggybacks the ACK: the second FIN acknowledges the first.
        eq(first_ack["n"], fins[1]["n"], "the server's FIN is the first ACK of the client's FIN")
        eq(g["close_segments"]["why"]["key"], "quiz.handshake.close_segments.why.three", "explanation")
        check(f"#{fins[1]['n']}, the server's FIN, also acknowledged #{fins[0]['n']}" in g["close_segments"]["why"]["text"],
              g["close_segments"]["why"]["text"])


@test
def handshake_data_close_fin_rides_on_data():
    ev, path = record("handshake", "scenario=data-close", "observe_ms=200")
    fins, acks, first_ack = close_of(ev)
    cfin = next(f for f in fins if f["from"] == "client")
    check(cfin["len"] > 0, f"the client's FIN carries data ({cfin['len']} bytes)")
    g = grade(path, "fin_acked_by=%d" % first_ack["n"])
    eq(g["fin_acked_by"]["result"], "right", "graded right")
    eq(g["fin_acked_by"]["why"]["params"]["fin_len"], cfin["len"], "the explanation names the data on the FIN")


@test
def handshake_abort_has_no_close_and_no_time_wait():
    ev, path = record("handshake", "scenario=abort", "observe_ms=200")
    check(any("RST" in s["flags"] for s in segs(ev)), "an RST on the wire")
    g = grade(path, "time_wait_side=neither")
    eq(g["time_wait_side"]["result"], "right", "neither side in TIME_WAIT")
    check("close_segments" not in g, "close_segments is not asked of an abort")
    g = grade(path, "close_segments=3")
    eq((g["close_segments"]["result"], g["close_segments"]["why"]["key"]),
       ("undecided", "quiz.handshake.close_segments.why.no_close"), "answered anyway: undecided")


@test
def tcp_echo_recv_calls_and_who_reads_eof():
    ev, path = record("tcp-echo", "messages=5")
    recvs = [e for e in ev if e["type"] == "syscall" and e["who"] == "server" and e["call"] == "recv"]
    eq(len(recvs), 6, "5 messages and the recv() that returns 0")
    g = grade(path, "server_recvs=6", "eof_side=client")
    eq(g["server_recvs"]["result"], "right", "server_recvs")
    eq(g["server_recvs"]["evidence"], [e["seq"] for e in recvs], "evidence: every recv()")
    eq((g["eof_side"]["truth"], g["eof_side"]["result"]), ("server", "wrong"), "eof_side")
    ev, path = record("tcp-echo", "closer=server")
    g = grade(path, "eof_side=client")
    eq(g["eof_side"]["result"], "right", "closer=server: the client reads the EOF")


@test
def tcp_echo_second_connect_returns_before_accept():
    # closer=client: the iterative server holds client 1 until client 2 has
    # connected and been seen in the accept queue (every run).
    ev, path = record("tcp-echo", "clients=2")
    g = grade(path, "second_connect=before")
    eq(g["second_connect"]["result"], "right", "connect() returned first")
    c, a = g["second_connect"]["evidence"]
    check(c < a, f"connect event {c} before accept event {a}")


@test
def udp_ping_lost_probes_follow_the_seeded_wire():
    ev, path = record("udp-ping", "network=two-hosts", "count=10", "interval_ms=20", "timeout_ms=200",
                      "c2s_loss_pct=40", "seed=3")
    lost = [e for e in ev if e["type"] == "probe" and e["status"] == "lost"]
    eq(len(lost), ev[-1]["summary"]["lost"], "probe events and the summary agree")
    check(len(lost) > 0, "40% loss lost some probes")
    g = grade(path, f"lost={len(lost)}")
    eq((g["lost"]["truth"], g["lost"]["result"]), (len(lost), "right"), "lost")
    eq(g["lost"]["evidence"], [e["seq"] for e in lost], "evidence: the lost probes")
    g = grade(path, "lost=0")
    eq(g["lost"]["result"], "wrong", "0 is wrong")


@test
def sticky_nagle_glues_on_the_wire():
    ev, path = record("sticky", "network=two-hosts", "c2s_delay_ms=20", "s2c_delay_ms=20", "count=8")
    data = [e for e in ev if e["type"] == "segment" and e["dir"] == "c2s" and e["bytes"] > 0 and not e["retransmit"]]
    g = grade(path, "segments=8", "boundaries=wire")
    eq(g["segments"]["truth"], len(data), "segments counted from the wire lane")
    eq(len(data), 2, "the first message alone, the other seven held by Nagle")
    eq((g["segments"]["result"], g["boundaries"]["result"]), ("wrong", "right"), "graded")


@test
def run_ask_poses_then_grades():
    r = sl("run", "tcp-echo", "--ask", stdin="x\n4\nserver\n")
    eq(r.returncode, 0, f"exit status ({r.stderr})")
    check("answer to 'server_recvs' must be an integer 0..100000" in r.stdout, "a bad answer is asked again")
    check(r.stdout.index("Running tcp-echo") < r.stdout.index("--- predictions"), "asked before the run")
    eq(r.stdout.count("[right]"), 2, f"both right: {r.stdout[-600:]}")
    r = sl("run", "tcp-echo", "--ask", "--json")
    eq(r.returncode, 2, "--ask with --json")
    r = sl("run", "tcp-echo", "--ask", stdin="")
    eq(r.returncode, 2, "stdin ended")


@test
def grade_refuses_bad_answers():
    ev, path = record("tcp-echo")
    r = sl("grade", path, "-a", "server_recvs=-1")
    eq((r.returncode, r.stderr), (2, "socklab grade: answer to 'server_recvs' must be an integer 0..100000\n"), "range")
    r = sl("grade", path, "-a", "eof_side=both")
    eq(r.stderr, "socklab grade: answer to 'eof_side' must be one of: client, server\n", "choices")
    r = sl("grade", path, "-a", "nope=1")
    eq((r.returncode, r.stderr), (2, "socklab grade: lab tcp-echo has no question 'nope'\n"), "unknown")
    r = sl("grade", os.path.join(TMP, "missing.jsonl"))
    eq(r.returncode, 1, "missing file")


def frames(ev, port, direction):
    return [e for e in ev if e["type"] == "frame" and e["port"] == port and e["dir"] == direction]


def host_if(ev, name):
    topo = next(e for e in ev if e["type"] == "topology")
    return next(h for h in topo["hosts"] if h["name"] == name)["ifs"][0]


@test
def layers_mac_and_fragments_read_from_the_frames():
    ev, path = record("layers", "scenario=other-subnet")
    r, c = host_if(ev, "R"), host_if(ev, "C")
    to_c = next(f for f in frames(ev, "a-eth0", "from_host") if f.get("ip", {}).get("dst") == c["addr"])
    want = "router" if to_c["eth"]["dst"] == r["mac"] else "c" if to_c["eth"]["dst"] == c["mac"] else "?"
    eq(want, "router", "A's frame to C carries R's MAC (read from the capture here)")
    g = grade(path, "mac_to_c=c")
    eq((g["mac_to_c"]["truth"], g["mac_to_c"]["result"]), (want, "wrong"), "graded against the frame")
    check(to_c["seq"] in g["mac_to_c"]["evidence"], "the frame is the evidence")
    eq(set(g), {"mac_to_c"}, "only the other-subnet question is asked of this scenario")
    ev, path = record("layers", "scenario=fragment", "frag_size=4000")
    c = host_if(ev, "C")  # every run builds its own subnets
    ids = {f["ip"]["id"] for f in frames(ev, "a-eth0", "from_host") if f.get("ip", {}).get("dst") == c["addr"]}
    eq(len(ids), 1, "one datagram")
    n = sum(1 for f in frames(ev, "a-eth0", "from_host") if f.get("ip", {}).get("id") in ids)
    g = grade(path, f"fragments={n}")
    eq((g["fragments"]["truth"], g["fragments"]["result"]), (n, "right"), f"{n} fragments")


def need_sandbox():
    if os.geteuid() != 0:
        raise Skip("needs root (a network namespace per run)")
    for tool in ("/usr/bin/bwrap", "/usr/bin/python3"):
        if not os.access(tool, os.X_OK):
            raise Skip(f"{tool} is missing (server/tools/install-deps.sh installs it)")


def prog(name, src):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(src)
    return path


@test
def own_programs_graded_from_their_calls():
    need_sandbox()
    cli = prog("refused.py", "import socket\ntry:\n    socket.create_connection(('server', 9))\nexcept OSError as e:\n    print(e.errno)\n")
    ev, path = record("own", f"client={cli}")
    conn = next(e for e in ev if e["type"] == "syscall" and e["call"] == "connect")
    eq(conn["errno_name"], "ECONNREFUSED", "the connect() the shim traced")
    g = grade(path, "connect_result=ok", "server_recvs=0")
    eq((g["connect_result"]["truth"], g["connect_result"]["result"]), ("refused", "wrong"), "refused")
    eq((g["server_recvs"]["result"], g["server_recvs"]["why"]["key"]),
       ("undecided", "quiz.own.server_recvs.why.no_program"), "no server program: cannot decide")
    srv_src = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
               "s.bind(('0.0.0.0', 8080))\ns.listen(1)\nc, _ = s.accept()\n"
               "while c.recv(3):\n    pass\nc.close()\n")
    cli_src = "import socket\nc = socket.create_connection(('server', 8080))\nc.sendall(b'abcdefgh')\nc.close()\n"
    ev, path = record("own", f"server={prog('s.py', srv_src)}", f"client={prog('c.py', cli_src)}")
    recvs = [e for e in ev if e["type"] == "syscall" and e["who"] == "server" and e["call"] in ("recv", "recvfrom", "read")]
    g = grade(path, f"server_recvs={len(recvs)}", f"first_recv_bytes={recvs[0]['ret']}")
    eq((g["server_recvs"]["result"], g["first_recv_bytes"]["result"]), ("right", "right"),
       f"{len(recvs)} receive calls, the first {recvs[0]['ret']} bytes")
    eq(recvs[0]["ret"], 3, "recv(3) returns at most 3 bytes")
    eq(g["server_recvs"]["evidence"], [e["seq"] for e in recvs], "every receive call is evidence")


@test
def a_run_file_is_graded_when_sent():
    s = Server()
    try:
        with open(os.path.join(os.path.dirname(__file__), "..", "data", "quiz", "layers.jsonl"), "rb") as f:
            body = f.read()
        r = s.request("/api/grade?mac_to_c=router&fragments=2&lang=zh-CN", "POST", body)
        eq(r.status, 200, f"status {r.body[:300]}")
        got = r.json()
        eq((got["run"], got["lab"], got["sent"]), ("01500028f55654bc", "layers", True), "the run named by its events")
        cli = subprocess.run([BIN, "grade", os.path.join(os.path.dirname(__file__), "..", "data", "quiz", "layers.jsonl"),
                              "-a", "mac_to_c=router", "-a", "fragments=2", "--json"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "LANG": "zh_CN.UTF-8"})
        eq(got["verdicts"], json.loads(cli.stdout), "the same verdicts as `socklab grade`")
        eq([(v["q"], v["result"]) for v in got["verdicts"]][:1] + [(v["q"], v["result"]) for v in got["verdicts"] if v["q"] == "fragments"],
           [("mac_to_c", "right"), ("fragments", "wrong")], "graded")

        def err(path, data, status, code, message=None):
            r = s.request(path, "POST", data)
            eq(r.status, status, f"POST {path}: {r.body[:200]}")
            e = r.json()["error"]
            eq(e["code"], code, f"error code for {path}")
            if message:
                eq(e["message"], message, "message")
        err("/api/grade", b"", 400, "bad_events", "the body must hold the run's events, one JSON object a line")
        err("/api/grade", b"{\"type\":\"run.start\",\"lab\":\"layers\"}\n[1]\n", 400, "bad_events",
            "line 2 is not a JSON event: not an object")
        err("/api/grade", b"{\"type\":\"note\"}\n", 400, "bad_events", "the first event must be run.start naming its lab")
        err("/api/grade", b"{\"type\":\"run.start\",\"lab\":\"nope\"}\n", 404, "no_questions")
        err("/api/grade?mac_to_c=nobody", body, 400, "bad_param", "answer to 'mac_to_c' must be one of: router, c, broadcast")
        # Too large: refused on its Content-Length before any body is read,
        # and, sent chunked (no length), once it passes the limit (the rest
        # is read and dropped, never buffered).
        k = socket.create_connection(("127.0.0.1", s.http_port), timeout=20)
        k.sendall(f"POST /api/grade HTTP/1.1\r\nHost: 127.0.0.1:{s.http_port}\r\n"
                  f"Content-Length: {8 * 1024 * 1024 + 1}\r\n\r\n".encode())
        head = k.recv(4096).decode()
        k.close()
        check(head.startswith("HTTP/1.1 413") and "run_too_large" in head, f"by its length: {head[:200]}")
        conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
        conn.request("POST", "/api/grade", body=(b"{}" + b" " * 65534 for _ in range(130)),
                     encode_chunked=True)
        resp = conn.getresponse()
        eq((resp.status, json.loads(resp.read())["error"]["message"]),
           (413, "the events are larger than the 8388608 bytes the server grades"), "chunked, 8.1 MiB")
        conn.close()
        r = s.request("/api/runs", "POST", body)
        eq(r.status, 405, "POST elsewhere")
        # At most 4 bodies are received at once: four senders that stop
        # half-way hold every place (each was let in: 100 Continue), a fifth
        # is told to come back; once they hang up, it is graded.
        held = []
        for _ in range(4):
            k = socket.create_connection(("127.0.0.1", s.http_port), timeout=20)
            k.sendall(f"POST /api/grade HTTP/1.1\r\nHost: 127.0.0.1:{s.http_port}\r\n"
                      f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
            check(k.recv(100).startswith(b"HTTP/1.1 100"), "let in")
            k.sendall(body[:1000])
            held.append(k)
        err("/api/grade", body, 503, "busy", "the server is grading 4 sent runs already; try again in a moment")
        for k in held:
            k.close()
        wait_for(lambda: s.request("/api/grade", "POST", body).status == 200, 20, "the places freed")
        eq(s.sanitizer_reports(), [], "sanitizer reports")
    finally:
        s.cleanup()


run(timeout=400)
