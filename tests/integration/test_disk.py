"""test_disk.py: run bundles bounded in bytes and whole under a full disk (issue 17, items 7, 8 and 9)."""
import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, events_until_end, request, start_run, wait_for  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

MIB = 1024 * 1024
BIG = {"clients": 4, "messages": 1000, "size": 65536, "server_style": "concurrent"}


def du(path):
    """Bytes the files under path take (as the store counts them: blocks, at least the length)."""
    total = 0
    for f in glob.glob(os.path.join(path, "*", "*")):
        st = os.stat(f)
        total += max(st.st_blocks * 512, st.st_size)
    return total


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    check(data == b"" or data.endswith(b"\n"), f"{path} ends with a whole line")
    return [json.loads(x) for x in data.split(b"\n") if x]


async def one_run(s, params, timeout=120):
    async with s.connect() as ws:
        rid = await start_run(ws, params)
        return rid, await events_until_end(ws, rid, timeout=timeout)


def fake_bundle(data, rid, created, size, mtime):
    """An old finished bundle of about size bytes."""
    d = os.path.join(data, "runs", rid)
    os.makedirs(d, mode=0o700)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"id": rid, "lab": "tcp-echo", "status": "ok", "created": created,
                   "events": 1, "params": {}}, f)
    with open(os.path.join(d, "events.jsonl"), "wb") as f:
        f.write(b"x" * (size - 1) + b"\n")
    os.utime(d, (mtime, mtime))


@test
def a_run_that_reaches_its_byte_limit_ends_truncated():
    s = Server("--max-run-data", "1M", "--max-data", "64M")
    try:
        rid, ev = asyncio.run(one_run(s, BIG))
        end, err = ev[-1], ev[-2]
        eq(end["status"], "truncated", "run.end status")
        eq(err["type"], "error", "an error says why")
        eq(err["code"], "data_limit", "error code")
        check("limit of 1048576 bytes per run (--max-run-data)" in err["message"],
              f"message names the limit: {err['message']}")
        meta = s.wait_run_status(rid)
        eq(meta["status"], "truncated", "meta status")
        eq(meta["limit"]["bytes"], MIB, "meta limit")
        check(meta["limit"]["reached"] <= MIB, f"reached {meta['limit']['reached']}")
        path = os.path.join(s.data, "runs", rid, "events.jsonl")
        lines = read_lines(path)
        eq([e["seq"] for e in lines], list(range(len(ev))), "the bundle holds every event sent")
        eq(meta["events"], len(lines), "meta counts them")
        check(os.path.getsize(path) <= MIB, f"events.jsonl is {os.path.getsize(path)} bytes")
        eq(s.get_json("/api/health")["counters"]["runs_bad_output"], 0, "not bad output")
        s.wait_no_children()
    finally:
        s.stop()
        s.cleanup()


@test
def bundles_stay_within_max_data_oldest_first():
    tmp = tempfile.mkdtemp(prefix="socklab-disk-")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "runs"), mode=0o700)
    # Twelve old bundles of 3 MiB (36 MiB) against a 16 MiB total.
    ids = [f"{i:016x}" for i in range(1, 13)]
    for i, rid in enumerate(ids):
        fake_bundle(data, rid, f"2026-01-01T00:00:{i:02d}.000Z", 3 * MIB, 1_700_000_000 + i)
    s = Server("--max-data", "16M", "--max-run-data", "1M", data=data)
    try:
        left = sorted(os.listdir(os.path.join(data, "runs")))
        check(du(os.path.join(data, "runs")) <= 16 * MIB, f"pruned at start-up: {du(data)}")
        eq(left, ids[-len(left):], "the oldest went first")
        listed = [m["id"] for m in s.get_json("/api/runs")]
        eq(listed, sorted(left, reverse=True), "the list follows the disk")
        # Each new run needs room for its whole limit: one more old bundle goes.
        rid, ev = asyncio.run(one_run(s, {"messages": 3}))
        eq(ev[-1]["status"], "ok", "run status")
        s.wait_run_status(rid)
        s.wait_no_children()
        total = du(os.path.join(data, "runs"))
        check(total <= 16 * MIB, f"{total} bytes on disk, limit 16 MiB")
        now = sorted(os.listdir(os.path.join(data, "runs")))
        check(rid in now and len(now) <= len(left), f"bundles now {now}")
        health = s.get_json("/api/health")["data"]
        eq(health["max_bytes"], 16 * MIB, "health max_bytes")
        check(health["pruned"] >= len(ids) - len(left), f"pruned counted: {health}")
        limits = s.get_json("/api/config")["limits"]
        eq((limits["max_data"], limits["max_run_data"]), (16 * MIB, MIB), "limits")
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@test
def byte_limits_are_checked_and_default_from_the_disk():
    for args, want in ((["--max-data", "1M"], "--max-data: must be a byte count from 16M to 1024T"),
                       (["--max-run-data", "12Q"], "--max-run-data: must be a byte count from 64K"),
                       (["--max-data", "16M", "--max-run-data", "32M"],
                        "--max-run-data (33554432 bytes) must not be more than --max-data")):
        tmp = tempfile.mkdtemp(prefix="socklab-disk-")
        try:
            bin_ = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
            r = subprocess.run([bin_, "serve", "--http-port", "0", "--ws-port", "0",
                                "--data", os.path.join(tmp, "d"), *args],
                               capture_output=True, text=True, timeout=30)
            eq(r.returncode, 2, f"exit for {args}: {r.stderr}")
            check(want in r.stderr, f"{args}: {r.stderr!r}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    s = Server()
    try:
        vfs = os.statvfs(s.data)
        quarter = vfs.f_blocks * vfs.f_frsize // 4
        limits = s.get_json("/api/config")["limits"]
        eq(limits["max_data"], max(quarter, 64 * MIB), "a quarter of the filesystem")
        eq(limits["max_run_data"],
           min(256 * MIB, max(MIB, limits["max_data"] // (2 * limits["max_runs"]))),
           f"shared by twice --max-runs ({limits['max_runs']})")
    finally:
        s.stop()
        s.cleanup()


@test
def the_run_list_comes_from_memory():
    tmp = tempfile.mkdtemp(prefix="socklab-disk-")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "runs"), mode=0o700)
    ids = [f"{i:016x}" for i in range(1, 201)]
    for i, rid in enumerate(ids):
        fake_bundle(data, rid, f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z", 64, 1_700_000_000 + i)
    s = Server(data=data)
    try:
        listed = [m["id"] for m in s.get_json("/api/runs")]
        eq(listed, list(reversed(ids))[:100], "newest 100 first")
        # The HTTP thread reads no meta.json: files changed behind the
        # server's back do not change the answers (they were read once).
        for rid in ids:
            os.unlink(os.path.join(data, "runs", rid, "meta.json"))
        eq([m["id"] for m in s.get_json("/api/runs")], listed, "same list without the files")
        eq(s.get_json(f"/api/runs/{ids[0]}")["status"], "ok", "one run from memory")
        # A run started now is listed first while it runs and after.
        rid, ev = asyncio.run(one_run(s, {"messages": 2}))
        meta = s.wait_run_status(rid)
        eq(s.get_json("/api/runs")[0]["id"], rid, "the new run is first")
        eq(meta["events"], len(ev), "its count")
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- a full disk: a small tmpfs in the server's own mount namespace ----

def tmpfs_server(size, *extra):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare(1) to mount a small tmpfs in a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip(f"no private mount namespace here: {probe.stderr.decode()[-200:]}")
    tmp = tempfile.mkdtemp(prefix="socklab-full-")
    data = os.path.join(tmp, "data")
    os.makedirs(data, mode=0o700)
    script = 'mount -t tmpfs -o size="$0",mode=0700 socklab-test "$1" && shift && exec "$@"'
    # The namespace, and the tmpfs with it, go when the server exits.
    s = Server(*extra, data=data, wrap=["unshare", "-m", "--propagation", "private",
                                        "sh", "-c", script, size, data])
    s.tmp_extra = tmp
    return s


def inside(s, *parts):
    """A path in the server's mount namespace, seen from here."""
    return os.path.join(f"/proc/{s.pid}/root", s.data.lstrip("/"), *parts)


def fill(s, leave):
    """Fill the tmpfs, then give back about leave bytes."""
    path = inside(s, "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = os.path.getsize(path)
    os.truncate(path, max(0, size - leave))
    return path


def served_lines(s, rid):
    r = s.get(f"/api/runs/{rid}/events")
    eq(r.status, 200, "events status")
    check(r.body == b"" or r.body.endswith(b"\n"), "served events end with a whole line")
    return [json.loads(x) for x in r.body.split(b"\n") if x]


@test
def a_full_disk_never_tears_a_line_and_meta_tells_the_truth():
    s = tmpfs_server("4m")
    try:
        filler = fill(s, 24 * 1024)
        rid, ev = asyncio.run(one_run(s, {"messages": 400, "size": 64}))
        eq(ev[-1]["status"], "ok", "the run itself went on to its end")
        meta = s.wait_run_status(rid)
        eq(meta.get("incomplete"), True, f"meta says incomplete: {meta}")
        eq(meta["save_error"], "No space left on device", "why")
        eq(meta["events_seen"], len(ev), "every event the run sent")
        stored = read_lines(inside(s, "runs", rid, "events.jsonl"))
        check(0 < len(stored) < len(ev), f"{len(stored)} of {len(ev)} events stored")
        eq([e["seq"] for e in stored], list(range(len(stored))), "a gap-free prefix")
        eq(meta["events"], len(stored), "meta counts what is stored")
        eq(served_lines(s, rid), stored, "HTTP serves exactly that")
        # A later run while the disk is still full still gets a record (the
        # oldest bundle makes room), and nothing stays "running".
        rid2, ev2 = asyncio.run(one_run(s, {"messages": 50}))
        meta2 = s.wait_run_status(rid2)
        check(meta2["status"] != "running", f"status {meta2['status']}")
        on_disk = json.load(open(inside(s, "runs", rid2, "meta.json")))
        check(on_disk["status"] != "running", f"meta.json on disk: {on_disk['status']}")
        eq(on_disk.get("incomplete", False), meta2.get("incomplete", False), "disk and API agree")
        # Space returns: the next run is whole, and no record stays out of date.
        os.unlink(filler)
        rid3, ev3 = asyncio.run(one_run(s, {"messages": 50}))
        meta3 = s.wait_run_status(rid3)
        check("incomplete" not in meta3, f"complete again: {meta3}")
        eq(len(read_lines(inside(s, "runs", rid3, "events.jsonl"))), len(ev3), "all stored")
        wait_for(lambda: s.get_json("/api/health")["data"]["unsaved"] == 0, 20,
                 "every meta.json written")
        for d in glob.glob(inside(s, "runs", "*")):
            m = json.load(open(os.path.join(d, "meta.json")))
            eq(m, s.get_json(f"/api/runs/{os.path.basename(d)}"), "disk and API agree")
            check(m["status"] != "running", f"{d}: running")
        s.wait_no_children()
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(s.tmp_extra, ignore_errors=True)


@test
def a_disk_full_from_the_start_still_records_every_run():
    s = tmpfs_server("2m")
    try:
        filler = fill(s, 0)
        rid, ev = asyncio.run(one_run(s, {"messages": 20}))
        meta = s.wait_run_status(rid)
        eq(meta["status"], "ok", "status from the run")
        eq((meta["incomplete"], meta["events"], meta["events_seen"]), (True, 0, len(ev)),
           "nothing could be stored, and it says so")
        eq(served_lines(s, rid), [], "no events served, none torn")
        unsaved = s.get_json("/api/health")["data"]["unsaved"]
        check(unsaved >= 1, f"the server knows a record is not on disk: {unsaved}")
        os.unlink(filler)
        wait_for(lambda: s.get_json("/api/health")["data"]["unsaved"] == 0, 20,
                 "the record written once there is room")
        eq(json.load(open(inside(s, "runs", rid, "meta.json"))), s.get_json(f"/api/runs/{rid}"),
           "meta.json on disk")
        s.wait_no_children()
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(s.tmp_extra, ignore_errors=True)


run(timeout=240)
