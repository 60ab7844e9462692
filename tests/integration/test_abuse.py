"""test_abuse.py: `socklab serve` against clients that try to exhaust or misuse it.

Attackers connect from other loopback addresses (127.0.0.2 and up) so that the
per-address limits they run into never touch the legitimate client on
127.0.0.1. Every assertion is on an answer, a status, a close code or a
counter; waits poll a real condition against a deadline.
"""
import asyncio
import atexit
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
from harness import Server, events_until_end, recv, request, send, start_run, wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

_servers = []


def server(*args, **kw):
    s = Server(*args, **kw)
    _servers.append(s)
    atexit.register(s.cleanup)
    return s


def done(s):
    s.stop()
    s.cleanup()


def counters(s):
    return s.get_json("/api/health")["counters"]


def raw_http(s, request_bytes, source="127.0.0.1", timeout=10):
    """Send request_bytes on a fresh connection; the whole answer (until close
    or the first complete response)."""
    c = socket.create_connection(("127.0.0.1", s.http_port), timeout=timeout,
                                 source_address=(source, 0))
    try:
        c.sendall(request_bytes)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    return data
    finally:
        c.close()


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None


def body_json(answer):
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def header(answer, name):
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return None


def open_idle(port, source, n):
    """n TCP connections from source that send nothing."""
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind((source, 0))
        c.settimeout(10)
        c.connect(("127.0.0.1", port))
        socks.append(c)
    return socks


def closed_by_server(c):
    """True once the server has closed c (EOF or reset), False while it is open."""
    c.setblocking(False)
    try:
        return c.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        c.setblocking(True)


# ---- HTTP ----

@test
def http_idle_connections_from_one_address_do_not_block_others():
    # 300 idle connections from one address (more than the old server's 256
    # connection limit): the per-address limit closes all but 8 of them,
    # and the dashboard, API and liveness probe answer everyone else.
    s = server("--max-conns-per-addr", "8")
    idle = open_idle(s.http_port, "127.0.0.2", 300)
    try:
        wait_for(lambda: sum(closed_by_server(c) for c in idle) >= 292, 20,
                 "the server to close the connections over the per-address limit")
        eq(sum(not closed_by_server(c) for c in idle), 8, "connections kept from 127.0.0.2")
        for path in ("/api/health", "/api/config", "/"):
            a = raw_http(s, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            eq(status_of(a), 200, f"GET {path} from 127.0.0.1 while 127.0.0.2 holds connections")
    finally:
        for c in idle:
            c.close()
    done(s)


@test
def http_slowloris_gets_408_at_the_request_deadline():
    # One byte at a time never completes the request: whatever the pace, the
    # connection is answered 408 and closed once --header-timeout has passed
    # since it opened (the old server's idle timer restarted at every byte).
    s = server("--header-timeout", "2")
    c = socket.create_connection(("127.0.0.1", s.http_port), timeout=10,
                                 source_address=("127.0.0.3", 0))
    request_bytes = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    answer = b""
    try:
        c.sendall(request_bytes[:1])
        sent = 1
        while sent < len(request_bytes):
            # A byte every 0.2 s, until the server answers (or gives up).
            c.settimeout(0.2)
            try:
                chunk = c.recv(4096)
            except socket.timeout:
                c.sendall(request_bytes[sent:sent + 1])
                sent += 1
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        check(sent < len(request_bytes), "the server let the whole trickled request through")
    except BrokenPipeError:
        pass
    finally:
        c.close()
    eq(status_of(answer), 408, f"answer to a trickled request: {answer[:200]!r}")
    eq(body_json(answer)["error"]["code"], "request_timeout", "error code")
    check(counters(s)["http_header_timeouts"] >= 1, "http_header_timeouts counted")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    eq(status_of(a), 200, "a normal request afterwards")
    done(s)


@test
def http_too_many_query_arguments_get_400_at_once():
    s = server()
    for n, want in ((100, 200), (500, 400), (2000, 400)):
        q = "&".join(f"a{i}=1" for i in range(n))
        a = raw_http(s, f"GET /api/health?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        eq(status_of(a), want, f"status with {n} query arguments")
        if want == 400:
            err = body_json(a)["error"]
            eq(err["code"], "too_many_arguments", "error code")
            check("at most 100" in err["message"], err["message"])
    eq(counters(s)["http_too_many_args"], 2, "http_too_many_args")
    done(s)


@test
def http_host_header_is_checked_against_dns_rebinding():
    s = server()
    for host in ("evil.example", f"evil.example:{s.http_port}", "10.1.2.3", "localhost.evil"):
        a = raw_http(s, f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        eq(status_of(a), 421, f"GET /api/runs with Host: {host}")
        eq(body_json(a)["error"]["code"], "bad_host", "error code")
        csp = header(a, "Content-Security-Policy")
        check(csp and "evil" not in csp and "10.1.2.3" not in csp, f"CSP names a foreign host: {csp}")
    for host in (f"127.0.0.1:{s.http_port}", f"localhost:{s.http_port}", "[::1]", "127.0.0.1"):
        a = raw_http(s, f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        eq(status_of(a), 200, f"GET /api/runs with Host: {host}")
    eq(counters(s)["http_bad_host"], 4, "http_bad_host")
    done(s)

    # Names an operator gave (a reverse proxy's public name) are accepted.
    s = server("--origin", "https://lab.example.edu")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: lab.example.edu\r\n\r\n")
    eq(status_of(a), 200, "Host named by --origin")
    check(f"ws://lab.example.edu:{s.ws_port}" in header(a, "Content-Security-Policy"),
          "CSP names the allowed host")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: other.example.edu\r\n\r\n")
    eq(status_of(a), 421, "Host not named")
    done(s)


if __name__ == "__main__":
    run(timeout=120)
