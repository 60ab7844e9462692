"""test_proxy.py: socklab behind the documented nginx configuration (docker/nginx-socklab.conf), WebSocket upgrade included."""
import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import urllib.request  # noqa: E402

import websockets  # noqa: E402
from harness import Server, check_stream, events_until_end, recv, start_run, wait_for  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# install-deps.sh unpacks Debian's nginx into build/nginx (no system service).
_LOCAL_NGINX = os.path.join(ROOT, "build", "nginx", "usr", "sbin", "nginx")
NGINX = _LOCAL_NGINX if os.access(_LOCAL_NGINX, os.X_OK) else shutil.which("nginx")
SECRET = "proxy-test-secret"

_state = {}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def setup():
    """socklab on loopback and nginx in front of it with the documented site file
    (TLS lines dropped, ports and name set for the test)."""
    if "srv" in _state:
        return _state
    if not NGINX:
        raise Skip("nginx is missing: `server/tools/install-deps.sh test` unpacks it into build/nginx")
    tmp = tempfile.mkdtemp(prefix="socklab-proxy-")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    srv = Server("--origin", origin, "--instructor-secret", SECRET)
    with open(os.path.join(ROOT, "docker", "nginx-socklab.conf")) as f:
        site = f.read()
    lines = [ln for ln in site.splitlines() if not ln.rstrip().endswith("# SSL")]
    site = "\n".join(lines)
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{srv.http_port};")
    site = site.replace("server_name lab.example.edu;",
                        f"listen 127.0.0.1:{port};\n\tserver_name 127.0.0.1;")
    check(f"127.0.0.1:{srv.http_port}" in site and f"listen 127.0.0.1:{port}" in site,
          "the site file has the expected upstream and server lines")
    with open(os.path.join(tmp, "site.conf"), "w") as f:
        f.write(site)
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
	access_log off;
	client_body_temp_path {tmp}/body;
	proxy_temp_path {tmp}/proxy;
	fastcgi_temp_path {tmp}/fastcgi;
	uwsgi_temp_path {tmp}/uwsgi;
	scgi_temp_path {tmp}/scgi;
	include {tmp}/site.conf;
}}
""")
    # -e: the error log from the start, not the compiled-in /var/log/nginx path.
    proc = subprocess.Popen([NGINX, "-p", tmp, "-e", os.path.join(tmp, "error.log"),
                             "-c", os.path.join(tmp, "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    wait_for(up, 20, "nginx to listen")

    def cleanup():
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    atexit.register(cleanup)
    _state.update(srv=srv, port=port, origin=origin, nginx=proc, tmp=tmp)
    return _state


def via_proxy(path):
    st = setup()
    with urllib.request.urlopen(f"http://127.0.0.1:{st['port']}{path}", timeout=20) as r:
        return r.status, dict(r.headers), r.read()


def ws(origin=None):
    st = setup()
    return websockets.connect(f"ws://127.0.0.1:{st['port']}/ws", subprotocols=["socklab.v1"],
                              origin=origin or st["origin"], max_size=None, open_timeout=20)


@test
def pages_and_config_through_the_proxy():
    st = setup()
    status, headers, body = via_proxy("/api/config")
    eq(status, 200, "status")
    import json
    cfg = json.loads(body)
    # One port: the page connects to its own origin at /ws, so behind the
    # proxy it needs no --public-ws-url.
    eq((cfg["ws_url"], cfg["ws_same_port"], cfg["ws_path"]), (None, True, "/ws"),
       "the page uses its own origin")
    status, headers, body = via_proxy("/")
    eq(status, 200, "page")
    check("connect-src 'self'" in headers.get("Content-Security-Policy", ""),
          f"CSP allows the page's own origin: {headers.get('Content-Security-Policy')}")


@test
def a_run_streams_through_the_websocket_upgrade():
    async def go():
        async with ws() as w:
            run_id = await start_run(w, {"messages": 5})
            events = await events_until_end(w, run_id)
            check_stream(events)
            eq(events[-1]["status"], "ok", "status")
    asyncio.run(go())


@test
def a_class_works_through_the_proxy():
    async def go():
        async with ws() as teacher, ws() as student:
            await teacher.send('{"op":"signin","secret":"%s"}' % SECRET)
            eq((await recv(teacher))["type"], "signin.accepted", "sign-in")
            await teacher.send('{"op":"class.open"}')
            code = (await recv(teacher))["class"]
            await student.send('{"op":"class.join","class":"%s","name":"via nginx"}' % code)
            eq((await recv(student))["type"], "class.joined", "joined")
            await teacher.send('{"op":"class.run","lab":"tcp-echo","params":{"messages":3}}')
            got = []
            while not got or got[-1].get("type") != "run.end":
                m = await recv(student)
                got.extend(m if isinstance(m, list) else [m])
            check_stream([m for m in got if "seq" in m])
    asyncio.run(go())


@test
def a_foreign_origin_is_refused_through_the_proxy():
    async def go():
        try:
            async with ws(origin="http://evil.example"):
                pass
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        return None
    status = asyncio.run(go())
    check(status is not None and status >= 400, f"handshake refused (status {status})")


@test
def shutdown_is_clean():
    st = setup()
    st["srv"].stop()


if __name__ == "__main__":
    run(timeout=120)
