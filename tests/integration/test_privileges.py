"""test_privileges.py: the lab program setting, capability fallbacks, --parent, and `socklab health`.

The privileged cases create the situation a container creates, on the host: a
bounding set without one capability (dropped in the child before exec), a copy
of socklab carrying file capabilities (written as the security.capability
attribute), a non-root parent. They need root and skip, saying so, without it.
"""
import asyncio
import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Server, binary, check_stream, events_until_end, pid_alive,  # noqa: E402
                     start_run, wait_for)
from tap import Skip, check, eq, run, test  # noqa: E402

CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN = 12, 13, 21
PR_CAPBSET_DROP = 24
NOBODY = 65534
_libc = ctypes.CDLL(None, use_errno=True)


def plain_binary():
    """The normal build: copies with file capabilities run it (no sanitizer)."""
    return os.environ.get("SOCKLAB") or "build/socklab"


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (file capabilities, bounding-set changes)")


def drop_bounding(*caps):
    """A preexec_fn: remove caps from the bounding set of the child before exec."""
    def fn():
        for c in caps:
            if _libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0:
                os._exit(121)
    return fn


def fcaps(caps, effective):
    """A security.capability value (VFS_CAP_REVISION_2) with caps permitted."""
    mask = 0
    for c in caps:
        mask |= 1 << c
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack("<IIIII", magic, mask & 0xFFFFFFFF, 0, mask >> 32, 0)


def copy_with_caps(tmp, caps, effective):
    """A copy of socklab that nobody can execute, carrying file capabilities."""
    path = os.path.join(tmp, "socklab-lab")
    shutil.copy(plain_binary(), path)
    os.chmod(path, 0o755)
    os.setxattr(path, "security.capability", fcaps(caps, effective))
    return path


def arun(coro):
    return asyncio.run(coro)


def one_run(srv, params=None, started=True):
    """One run through the WebSocket; its events (checked against the event
    contract when the run really started)."""
    async def go():
        async with srv.connect() as ws:
            run_id = await start_run(ws, params or {})
            return await events_until_end(ws, run_id)
    events = arun(go())
    if started:
        check_stream(events)
    return events


@test
def health_subcommand_judges_a_server():
    s = Server()
    try:
        url = f"http://127.0.0.1:{s.http_port}/api/health"
        r = subprocess.run([binary(), "health", url], capture_output=True, text=True, timeout=20)
        eq(r.returncode, 0, f"health of a running server ({r.stdout}{r.stderr})")
        eq(r.stdout, f"healthy: {url}\n", "output")
        # Without a URL: the server the SOCKLAB_* variables describe (as in the image).
        env = dict(os.environ, SOCKLAB_LISTEN="0.0.0.0", SOCKLAB_HTTP_PORT=str(s.http_port))
        r = subprocess.run([binary(), "health"], capture_output=True, text=True, timeout=20,
                           env=env)
        eq(r.returncode, 0, f"default URL ({r.stdout})")
        check(f"127.0.0.1:{s.http_port}/api/health" in r.stdout, r.stdout)
        # A path that is not healthy, a port nobody listens on, a bad URL.
        r = subprocess.run([binary(), "health", f"http://127.0.0.1:{s.http_port}/api/nope"],
                           capture_output=True, text=True, timeout=20)
        eq(r.returncode, 1, "404 is unhealthy")
        check("answered HTTP/1.1 404" in r.stdout, r.stdout)
    finally:
        s.stop()
        s.cleanup()
    r = subprocess.run([binary(), "health", url], capture_output=True, text=True, timeout=20)
    eq(r.returncode, 1, "stopped server")
    check("Connection refused" in r.stdout, r.stdout)
    r = subprocess.run([binary(), "health", "http://localhost:8080/"], capture_output=True,
                       text=True, timeout=20)
    eq(r.returncode, 2, "a host name is bad usage")
    check("URL must be http://ADDRESS" in r.stderr, r.stderr)


@test
def lab_exe_is_validated_at_start():
    tmp = tempfile.mkdtemp(prefix="socklab-labexe-")
    not_exec = os.path.join(tmp, "not-executable")
    with open(not_exec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(not_exec, 0o644)
    for args, env, want in [
            (["--lab-exe", "socklab"], {}, "--lab-exe: must be an absolute path"),
            (["--lab-exe", "/nonexistent/socklab"], {},
             "--lab-exe: cannot execute /nonexistent/socklab: No such file or directory"),
            ([], {"SOCKLAB_LAB_EXE": "/tmp"}, "SOCKLAB_LAB_EXE: /tmp is not a regular file"),
            ([], {"SOCKLAB_LAB_EXE": not_exec},
             f"SOCKLAB_LAB_EXE: cannot execute {not_exec}: Permission denied")]:
        r = subprocess.run([binary(), "serve", "--http-port", "0", "--ws-port", "0", *args],
                           capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, **env))
        eq(r.returncode, 2, f"exit status for {args or env}")
        check(want in r.stderr, f"{args or env}: {r.stderr!r} lacks {want!r}")
    shutil.rmtree(tmp)


@test
def lab_exe_runs_the_labs():
    tmp = tempfile.mkdtemp(prefix="socklab-labexe-")
    lab = os.path.join(tmp, "socklab-lab")
    shutil.copy(plain_binary(), lab)
    s = Server("--lab-exe", lab)
    try:
        wait_for(lambda: "lab runs:" in s.stdout(), 10, "the lab program line in the log")
        check(f"socklab serve: lab runs: {lab} with " in s.stdout(), s.stdout())
        events = one_run(s, {"messages": 2})
        eq(events[-1]["status"], "ok", "run status")
        eq(len([e for e in events if e["type"] == "echo"]), 2, "echo events")
        # The runs really come from the copy: break it and they fail (the
        # server reports a run that never started as an error).
        with open(lab, "wb") as f:
            f.write(b"#!/nonexistent/interpreter\n")
        events = one_run(s, {"messages": 2}, started=False)
        eq([e["type"] for e in events], ["error", "run.end"], "events of a run that never started")
        eq(events[-1]["status"], "error", "run of a broken lab program")
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def server_copy(tmp, lab_program=None):
    """A copy of the server's binary in tmp, with lab_program beside it as
    socklab-lab: a path to copy, or the text of a script."""
    exe = os.path.join(tmp, "socklab")
    shutil.copy(binary(), exe)
    if lab_program is not None:
        lab = os.path.join(tmp, "socklab-lab")
        if os.path.exists(lab_program):
            shutil.copy(lab_program, lab)
        else:
            with open(lab, "w") as f:
                f.write(lab_program)
        os.chmod(lab, 0o755)
    return exe


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


def kinds(events):
    """What a run did, whatever order its threads' events interleaved in."""
    return sorted((e["type"], e.get("call", ""), e.get("who", "")) for e in events
                  if e["type"] not in ("run.accepted",))


@test
def lab_program_beside_the_server_runs_the_labs():
    sibling = os.path.join(os.path.dirname(binary()), "socklab-lab")
    check(os.access(sibling, os.X_OK), f"{sibling} is built beside {binary()}")
    tmp = tempfile.mkdtemp(prefix="socklab-labexe-")
    exe = server_copy(tmp, sibling)
    lab = os.path.join(tmp, "socklab-lab")
    s = Server(bin=exe)
    try:
        wait_for(lambda: "lab runs:" in s.stdout(), 10, "the lab program line in the log")
        check(f"socklab serve: lab runs: {lab}" in s.stdout(), s.stdout())
        eq(children(s.pid), [], "the build-id probe was reaped")
        events = one_run(s, {"messages": 2})
        eq(events[-1]["status"], "ok", "run status")
        eq(len([e for e in events if e["type"] == "echo"]), 2, "echo events")
        # The same run on the command line (the server's binary, in-process):
        # the same events, call for call.
        r = subprocess.run([exe, "run", "tcp-echo", "-p", "messages=2", "--json"],
                           capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, f"socklab run ({r.stderr})")
        cli = [json.loads(line) for line in r.stdout.splitlines()]
        eq(kinds(events), kinds(cli), "the server's run and the CLI's emit the same events")
        eq(events[0]["sandbox"], cli[0]["sandbox"], "the same sandbox")
        # The runs really come from socklab-lab: break it and they fail.
        with open(lab, "wb") as f:
            f.write(b"#!/nonexistent/interpreter\n")
        events = one_run(s, {"messages": 2}, started=False)
        eq([e["type"] for e in events], ["error", "run.end"], "events of a run that never started")
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@test
def lab_program_from_another_build_or_broken_is_not_used():
    for script, why in [("#!/bin/sh\necho 0123456789abcdef\n",
                         "is from another build (build 0123456789abcdef, this one "),
                        ("#!/bin/sh\nexit 3\n", "did not start (`build-id` exited with status 3)"),
                        ("#!/nonexistent/interpreter\n",
                         "did not start (it could not be executed)")]:
        tmp = tempfile.mkdtemp(prefix="socklab-labexe-")
        exe = server_copy(tmp, script)
        s = Server(bin=exe)
        try:
            wait_for(lambda: "lab runs:" in s.stdout(), 10, "the lab program line in the log")
            lab = os.path.join(tmp, "socklab-lab")
            check(f"socklab serve: {lab} {why}" in s.stderr(), f"{script!r}: {s.stderr()!r}")
            check("runs execute this binary" in s.stderr(), s.stderr())
            check("socklab serve: lab runs: /proc/self/exe" in s.stdout(), s.stdout())
            eq(children(s.pid), [], "the build-id probe was reaped")
            events = one_run(s, {"messages": 1})
            eq(events[-1]["status"], "ok", f"a run with {script!r} beside the server")
        finally:
            s.stop()
            s.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


@test
def lab_exe_that_may_not_start_falls_back_to_the_server_binary():
    need_root()
    tmp = tempfile.mkdtemp(prefix="socklab-labexe-")
    # Effective file capabilities including one the bounding set lacks: the
    # kernel refuses to exec it (EPERM), as in a container without NET_RAW.
    lab = copy_with_caps(tmp, [CAP_NET_RAW], effective=True)
    s = Server("--lab-exe", lab, preexec_fn=drop_bounding(CAP_NET_RAW))
    try:
        wait_for(lambda: "lab runs:" in s.stdout(), 10, "the lab program line in the log")
        check("cannot start here" in s.stdout() and "CAP_NET_RAW" in s.stdout()
              and "EPERM" in s.stdout(), s.stdout())
        events = one_run(s, {"messages": 2})
        eq(events[-1]["status"], "ok", "the run still works")
        sandbox = events[0]["sandbox"]
        eq(sandbox["netns"], True, "root without NET_RAW still has namespaces")
        eq(sandbox["caps"], ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "caps of the fallback run")
        with open(os.path.join(s.data, "runs", events[0]["run"], "stderr.log")) as f:
            log = f.read()
        check("the lab program may not start here (EPERM" in log, f"stderr.log: {log!r}")
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@test
def without_net_admin_a_run_uses_the_host_loopback_and_says_why():
    need_root()
    # CAP_SYS_ADMIN creates the namespace, but its loopback cannot be brought
    # up: the run must come back to the host's network, not stay in a dead one.
    r = subprocess.run([plain_binary(), "run", "tcp-echo", "--json", "-p", "messages=2"],
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=drop_bounding(CAP_NET_ADMIN))
    eq(r.returncode, 0, f"exit status ({r.stderr})")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    sandbox = events[0]["sandbox"]
    eq(sandbox["netns"], False, "netns")
    check("CAP_NET_ADMIN" in sandbox["note"], f"note {sandbox['note']!r}")
    check("CAP_NET_ADMIN" not in sandbox["caps"], f"caps {sandbox['caps']}")
    eq(events[-1]["status"], "ok", "run status")
    eq(len([e for e in events if e["type"] == "echo" and e["ok"]]), 2, "echoes")
    # --netns on makes the same situation an error naming the capability.
    r = subprocess.run([plain_binary(), "run", "tcp-echo", "--netns", "on"],
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=drop_bounding(CAP_NET_ADMIN))
    eq(r.returncode, 1, "exit status with --netns on")
    check("CAP_NET_ADMIN" in r.stderr, r.stderr)


def start_under_nobody(lab, parent_flag):
    """A non-root parent (python as nobody) that starts a bring-your-own-client
    run from lab and prints its pid. Returns (parent Popen, run pid)."""
    code = ("import os, subprocess, sys, time\n"
            "argv = [sys.argv[1], 'run', 'tcp-echo', '-p', 'mode=server', '-p', 'port=0',\n"
            "        '-p', 'idle_timeout=120', '--json']\n"
            "if sys.argv[2] == '1': argv += ['--parent', str(os.getpid())]\n"
            "p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(120)\n")

    def as_nobody():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    parent = subprocess.Popen(["/usr/bin/python3", "-c", code, lab, "1" if parent_flag else "0"],
                              stdout=subprocess.PIPE, text=True, preexec_fn=as_nobody)
    pid = int(parent.stdout.readline())
    return parent, pid


def run_caps(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


@test
def parent_flag_ends_a_file_capability_run_with_its_parent():
    need_root()
    tmp = tempfile.mkdtemp(prefix="socklab-parent-")
    os.chmod(tmp, 0o755)
    lab = copy_with_caps(tmp, [CAP_NET_RAW], effective=False)
    procs = []
    try:
        # The kernel clears the parent-death signal when it starts a program
        # with file capabilities; without --parent the run outlives a killed
        # parent (this is the control), with it the run goes at once.
        for flag in (False, True):
            parent, pid = start_under_nobody(lab, flag)
            procs += [parent.pid, pid]
            wait_for(lambda: run_caps(pid) == 1 << CAP_NET_RAW, 10,
                     "the run to raise its permitted capability")
            parent.kill()
            parent.wait()
            if flag:
                wait_for(lambda: not pid_alive(pid), 10, "the run to die with its parent")
            else:
                check(pid_alive(pid), "control: without --parent the run survives its parent")
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not pid_alive(pid), 10, "the control run to be killed")
        # A wrong parent: the run refuses to start; a bad value is bad usage.
        r = subprocess.run([plain_binary(), "run", "tcp-echo", "--parent", "1"],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 1, "exit status with a parent that is not ours")
        check("process 1, which started this run, has gone" in r.stderr, r.stderr)
        r = subprocess.run([plain_binary(), "run", "tcp-echo", "--parent", "x"],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, "exit status with --parent x")
        check("--parent must be a process id" in r.stderr, r.stderr)
    finally:
        for p in procs:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(timeout=90)
