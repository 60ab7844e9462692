"""test_oneport.py: the dashboard, the REST API and the WebSocket on one public port.

The front door (server/front.c) accepts every connection on the port, peeks at
its first bytes and hands "GET /ws" to libwebsockets and everything else to
libmicrohttpd. These tests check that both halves work through it, that an
upgrade anywhere but /ws is refused with a reason, that a client slow to send
its first bytes holds only its own connection (never the others), and the
front door's own limits: the per-address cap, the deadline and eviction of the
longest-waiting connection. The hardening of each half is in test_abuse.py,
which runs on this same single-port default.
"""
import asyncio
import atexit
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
from harness import Server, check_stream, events_until_end, request, start_run  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402


def server(*args):
    s = Server(*args)
    atexit.register(s.cleanup)
    return s


def done(s):
    s.stop()
    s.cleanup()


def counters(s):
    return s.get_json("/api/health")["counters"]


def connect(port, source="127.0.0.1", host="127.0.0.1"):
    c = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    c.bind((source, 0))
    c.settimeout(15)
    c.connect((host, port))
    return c


def answer(c):
    """Read one whole HTTP answer (head and Content-Length body) or until close."""
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and data.startswith(b"HTTP/1.1 101"):
            return data
        if sep:
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return data


def exactly(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise ConnectionError(f"closed after {b!r}")
        b += chunk
    return b


def status_of(a):
    return int(a.split(b" ", 2)[1]) if a.startswith(b"HTTP/1.") else None


def error_code(a):
    return json.loads(a.partition(b"\r\n\r\n")[2])["error"]["code"]


def upgrade_request(path, port):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: socklab.v1\r\n\r\n").encode()


def get_request(path):
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


async def ping(url, **kw):
    async with websockets.connect(url, subprotocols=["socklab.v1"], open_timeout=15, **kw) as ws:
        return await request(ws, {"op": "ping", "tag": "p"})


@test
def dashboard_api_and_websocket_share_one_port():
    s = server()
    eq((s.ws_port, s.ws_path), (s.http_port, "/ws"), "port file")
    r = s.get("/")
    eq(r.status, 200, "GET /")
    check(r.headers["Content-Type"].startswith("text/html"), "the dashboard is HTML")
    cfg = s.get_json("/api/config")
    eq((cfg["ws_port"], cfg["ws_path"], cfg["ws_same_port"]), (s.http_port, "/ws", True),
       "/api/config tells the page to use its own origin")
    check(any(lab["name"] == "tcp-echo" for lab in s.get_json("/api/labs")), "/api/labs")

    async def go():
        eq(await ping(f"ws://127.0.0.1:{s.http_port}/ws"), {"type": "pong", "tag": "p"},
           "WebSocket at /ws")
        eq(await ping(f"ws://127.0.0.1:{s.http_port}/ws?x=1"), {"type": "pong", "tag": "p"},
           "WebSocket at /ws with a query")
        async with s.connect() as ws:
            rid = await start_run(ws, {"clients": 2, "messages": 5})
            events = await events_until_end(ws, rid)
        check_stream(events)
        eq(events[-1]["status"], "ok", "run.end over the WebSocket")
        lines = s.get(f"/api/runs/{rid}/events").body.decode().splitlines()
        eq([json.loads(x)["seq"] for x in lines], [e["seq"] for e in events],
           "the same run's events over REST, same port")

    asyncio.run(go())
    # Keep-alive: two requests on one connection, both through the front door
    # to libmicrohttpd once.
    c = connect(s.http_port)
    for path in ("/api/health", "/api/config"):
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        eq(status_of(answer(c)), 200, f"kept-alive GET {path}")
    c.close()
    done(s)


@test
def an_upgrade_to_another_path_is_refused_with_a_reason():
    s = server()
    for path in ("/", "/api/health", "/wsx", "/ws/", "/index.html"):
        c = connect(s.http_port)
        c.sendall(upgrade_request(path, s.http_port))
        a = answer(c)
        c.close()
        eq(status_of(a), 404, f"upgrade at {path}: {a[:80]!r}")
        eq(error_code(a), "not_websocket_path", f"upgrade at {path}: code")
        check(b"served at /ws" in a, f"upgrade at {path}: the message names /ws")
    # A plain GET of the WebSocket path: 426, with a reason.
    c = connect(s.http_port)
    c.sendall(get_request("/ws"))
    a = answer(c)
    c.close()
    eq(status_of(a), 426, f"plain GET /ws: {a[:80]!r}")
    eq(error_code(a), "upgrade_required", "plain GET /ws: code")

    async def go():
        try:
            await ping(f"ws://127.0.0.1:{s.http_port}/")
            check(False, "a WebSocket client at / got in")
        except websockets.exceptions.InvalidStatusCode as e:
            eq(e.status_code, 404, "status a WebSocket client sees at /")

    asyncio.run(go())
    eq(counters(s)["ws_sessions"], 0, "no session was opened")
    done(s)


@test
def a_slow_first_line_does_not_block_others():
    s = server()
    silent = connect(s.http_port, "127.0.0.4")
    slow_ws = connect(s.http_port, "127.0.0.4")
    slow_http = connect(s.http_port, "127.0.0.4")
    req_ws = upgrade_request("/ws", s.http_port)
    req_http = get_request("/api/health")
    # Each has sent a part of its first line that does not decide yet.
    slow_ws.sendall(req_ws[:5])
    slow_http.sendall(req_http[:3])

    async def go():
        for i in range(3):
            eq(await ping(s.ws_url), {"type": "pong", "tag": "p"}, f"WebSocket {i} meanwhile")
        for i in range(3):
            eq(s.get("/api/health").status, 200, f"health {i} meanwhile")

    asyncio.run(go())
    # The slow ones are served once their bytes arrive, from the first byte.
    slow_ws.sendall(req_ws[5:])
    eq(status_of(answer(slow_ws)), 101, "the slow upgrade")
    slow_http.sendall(req_http[3:])
    a = answer(slow_http)
    eq(status_of(a), 200, f"the slow request: {a[:80]!r}")
    eq(json.loads(a.partition(b"\r\n\r\n")[2])["status"], "ok", "its body")
    for c in (silent, slow_ws, slow_http):
        c.close()
    done(s)


@test
def a_connection_that_never_speaks_gets_408_at_the_deadline():
    s = server("--header-timeout", "1")
    c = connect(s.http_port, "127.0.0.5")
    a = answer(c)
    c.close()
    eq(status_of(a), 408, f"answer to silence: {a[:80]!r}")
    eq(error_code(a), "request_timeout", "code")
    check(counters(s)["http_header_timeouts"] >= 1, "http_header_timeouts counted")
    done(s)


@test
def one_address_may_hold_few_connections_before_their_first_bytes():
    s = server("--max-conns-per-addr", "4")
    held = [connect(s.http_port, "127.0.0.6") for _ in range(4)]
    c = connect(s.http_port, "127.0.0.6")
    a = answer(c)
    c.close()
    eq(status_of(a), 503, f"5th silent connection from one address: {a[:80]!r}")
    eq(error_code(a), "too_many_connections", "code")
    check(b"at most 4" in a, "the message names the limit")
    eq(counters(s)["first_bytes_refused"], 1, "first_bytes_refused")
    eq(s.get("/api/health").status, 200, "another address is served")
    # The held ones are still open and are served when they speak.
    held[0].sendall(get_request("/api/health"))
    eq(status_of(answer(held[0])), 200, "a held connection speaks at last")
    for h in held:
        h.close()
    done(s)


@test
def when_full_the_longest_waiting_connection_makes_room():
    s = server("--http-max-conns", "16")
    waiting = [connect(s.http_port, "127.0.0.7") for _ in range(16)]
    # The kernel queues connections in order and the front door accepts
    # them in that order: the newcomer comes after all 16.
    newest = connect(s.http_port, "127.0.0.1")
    a = answer(waiting[0])
    eq(status_of(a), 408, f"the oldest silent connection: {a[:80]!r}")
    eq(error_code(a), "request_timeout", "code")
    newest.sendall(get_request("/api/health"))
    eq(status_of(answer(newest)), 200, "the newcomer is served")
    check(counters(s)["first_bytes_evicted"] >= 1, "first_bytes_evicted counted")
    for c in waiting:
        c.close()
    done(s)


@test
def the_separate_websocket_port_remains_an_option():
    s = server("--ws-port", "0")
    check(s.ws_port != s.http_port, "two ports")
    eq(s.get_json("/api/config")["ws_same_port"], False, "ws_same_port")

    async def go():
        origin = f"http://127.0.0.1:{s.http_port}"
        eq(await ping(f"ws://127.0.0.1:{s.ws_port}/", origin=origin),
           {"type": "pong", "tag": "p"}, "the separate port, any path")
        eq(await ping(f"ws://127.0.0.1:{s.http_port}/ws", origin=origin),
           {"type": "pong", "tag": "p"}, "and /ws on the public port")

    asyncio.run(go())
    # Unmasked frames are refused on both (RFC 6455 5.1): the follower
    # watches the separate port's accepted connections and adopted ones.
    for port, path in ((s.ws_port, "/"), (s.http_port, "/ws")):
        c = connect(port)
        c.sendall(upgrade_request(path, port) + bytes([0x81, 13]) + b'{"op":"ping"}')
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(1)
        eq(status_of(head), 101, f"upgrade on {port}{path}")
        frame = exactly(c, 4)
        eq((frame[0] & 0x0f, int.from_bytes(frame[2:4], "big")), (8, 1002),
           f"unmasked frame on {port}{path}: close 1002")
        c.close()
    done(s)


@test
def an_ipv6_listener_serves_both_on_one_port():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as e:
        raise Skip(f"no IPv6 loopback here: {e}")
    s = server("--listen", "::1")
    c = connect(s.http_port, "::1", host="::1")
    c.sendall(get_request("/api/health"))
    eq(status_of(answer(c)), 200, "health over IPv6")
    c.close()

    async def go():
        eq(await ping(f"ws://[::1]:{s.http_port}/ws"), {"type": "pong", "tag": "p"},
           "WebSocket over IPv6")

    asyncio.run(go())
    done(s)


if __name__ == "__main__":
    run()
