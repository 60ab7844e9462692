"""test_nats.py: --nats: every run event appended to the JetStream stream SOCKLAB_RUNS.

Against a real nats-server (Debian's, with JetStream) that each test starts on
a free port with its own store; the stream is read back with
build/tests/nats_read and compared with the run's bundle byte for byte. NATS
down at start, and NATS restarted, must not stop runs: their events wait and
reach the stream once it is back. Every wait polls a real condition.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import binary, events_until_end, pid_alive, start_run, wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402
from natslib import (NATS_SERVER, READER, ROOT, Nats, bundle_bytes, done, free_port,  # noqa: E402,F401
                     nats_health, one_run, server, stream_lines)


def need_reader():
    check(os.path.exists(READER), f"{READER} is missing: make unit builds it")


@test
def every_event_of_a_run_is_in_the_stream_as_in_the_bundle():
    need_reader()
    n = Nats()
    s = server("--nats", n.url)
    rid, count = one_run(s)
    wait_for(lambda: nats_health(s)["acked"] >= count, 30, "the stream to acknowledge the run")
    # Its index entries and its files go after its lines.
    wait_for(lambda: nats_health(s)["files"]["published"] >= 1 and nats_health(s)["queued"] == 0,
             30, "the run's files published")
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
    s.wait_run_status(rid)
    # Its lines, its index entries (the meta at its start, then at its
    # end: once or twice, as the run.end line and the process exit come)
    # and its files (queued once its process has been reaped).
    wait_for(lambda: nats_health(s)["queued"] >= count + 3, 30, "the run's files queued")
    h = nats_health(s)
    eq((h["published"], h["dropped"]), (0, 0), "nothing published, nothing dropped")
    check(count + 3 <= h["queued"] <= count + 4,
          f"the run's {count} lines, index entries and files wait for NATS: {h['queued']}")
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
    # What must hold is what reached NATS, not how: a publish refused while
    # the restarted server's JetStream recovered its stream is counted in
    # "failed" and sent again (bus_on_ack), so that counter may move here.
    for rid in (rid1, rid2):
        eq(stream_lines(n.url, rid), bundle_bytes(s, rid), f"run {rid}: stream equals bundle")
    # ... and the run index: another replica lists both runs, ended ok.
    b = server("--nats", n.url)
    wait_for(lambda: {r["id"]: r["status"] for r in b.get_json("/api/runs")}.get(rid2) == "ok",
             30, "a second replica to list the run made while NATS was away, ended ok")
    eq({r["id"]: r["status"] for r in b.get_json("/api/runs") if r["id"] in (rid1, rid2)},
       {rid1: "ok", rid2: "ok"}, "both runs in the index")
    done(b)
    done(s)
    n.stop()


@test
def a_bad_nats_url_is_refused_naming_the_flag():
    for bad in ("http://127.0.0.1:4222", "nats://", "nats://host:99999", "nats://a b"):
        r = subprocess.run([binary(), "serve", "--http-port", "0", "--nats", bad],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, f"--nats {bad}: exit status")
        check("--nats: must be a nats:// URL" in r.stderr, f"--nats {bad}: {r.stderr!r}")


# ---- two replicas: any replica serves any run from the stream ----

def replica(n):
    return server("--nats", n.url)


def raw_watch(s, rid, until_end=True, on_event=None, timeout=90):
    """Watch rid on s; return (accepted, raw event lines, the last non-event
    message). Stops at run.end, at watch.incomplete or at an error."""
    import time as _t

    async def go():
        async with s.connect() as ws:
            await ws.send(json.dumps({"op": "watch", "run": rid}))
            accepted = None
            lines, last = [], None
            deadline = _t.monotonic() + timeout
            while True:
                left = deadline - _t.monotonic()
                check(left > 0, f"watch of {rid} on {s.base}: nothing ended it in {timeout}s "
                      f"({len(lines)} events)")
                raw = await asyncio.wait_for(ws.recv(), left)
                m = json.loads(raw)
                if m.get("type") == "watch.accepted":
                    accepted = m
                    continue
                if m.get("type") == "cluster":
                    continue  # classes across replicas ok/degraded: not the watch's
                if "seq" not in m:
                    last = m
                    return accepted, lines, last
                lines.append(raw)
                if on_event:
                    await on_event(m)
                if m["type"] == "run.end":
                    return accepted, lines, last
    return asyncio.run(go())


def two_replicas():
    need_reader()
    n = Nats()
    a, b = replica(n), replica(n)
    return n, a, b


def listed(s, rid):
    return any(r["id"] == rid for r in s.get_json("/api/runs"))


@test
def a_run_on_one_replica_is_listed_fetched_and_watched_on_another():
    n, a, b = two_replicas()
    rid, count = one_run(a, messages=5)
    wait_for(lambda: nats_health(a)["acked"] >= count, 30, "A's run acknowledged")
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    meta = b.get_json(f"/api/runs/{rid}")
    eq((meta["status"], meta["remote"], meta["replica"], meta["lab"]),
       ("ok", True, nats_health(a)["replica"], "tcp-echo"), "B's meta of A's run")
    eq(b.get(f"/api/runs/{rid}/events").body, bundle_bytes(a, rid),
       "B's /api/runs/ID/events equals A's events.jsonl")
    accepted, lines, last = raw_watch(b, rid)
    eq((accepted["live"], accepted["source"]), (False, "stream"), "watch.accepted on B")
    eq(("\n".join(lines) + "\n").encode(), bundle_bytes(a, rid),
       "B's watch delivers A's events byte for byte")
    eq(last, None, "nothing after run.end")
    wait_for(lambda: "files" in b.get_json(f"/api/runs/{rid}"), 30, "A's files in the index")
    r = b.get(f"/api/runs/{rid}/capture.pcap")
    eq((r.status, r.json()["error"]["code"], r.json()["error"]["message"]),
       (404, "no_capture", "this run has no packet capture"), "a run without a capture")
    eq(b.get(f"/api/runs/{'0' * 16}/events").status, 404, "an unknown run")
    check(not listed(a, "0" * 16), "sanity")
    done(b)
    done(a)
    n.stop()


@test
def a_live_run_on_one_replica_is_followed_live_on_another():
    n, a, b = two_replicas()

    async def start():
        async with a.connect() as ws:
            rid = await start_run(ws, {"messages": 40, "interval_ms": 100})
            await events_until_end(ws, rid)
            return rid
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rid", asyncio.run(start())))
    t.start()
    wait_for(lambda: any(r["status"] == "running" for r in b.get_json("/api/runs")), 30,
             "B to list A's run as running")
    rid = [r["id"] for r in b.get_json("/api/runs") if r["status"] == "running"][0]
    # Grading waits for the end, on B as on A: a 409 seen while B's index
    # says "running" both before and after the request.
    g = b.get(f"/api/runs/{rid}/grade")
    check(b.get_json(f"/api/runs/{rid}")["status"] == "running",
          "the 4 s run still going after one request (the check below needs it)")
    eq((g.status, g.json()["error"]["code"]), (409, "run_in_progress"),
       "grading A's run on B while it goes on")
    accepted, lines, last = raw_watch(b, rid)
    t.join(120)
    eq(result.get("rid"), rid, "the run B followed is A's")
    eq(accepted["live"], True, "B's watch started while the run went on")
    eq(("\n".join(lines) + "\n").encode(), bundle_bytes(a, rid),
       "followed live on B: A's events byte for byte")
    done(b)
    done(a)
    n.stop()


@test
def a_replica_killed_mid_run_leaves_an_incomplete_run_never_a_made_up_end():
    n, a, b = two_replicas()
    holder = {}

    async def start():
        async with a.connect() as ws:
            rid = await start_run(ws, {"messages": 1000, "interval_ms": 100})
            holder["rid"] = rid
            try:
                await events_until_end(ws, rid, timeout=300)
            except Exception:  # A is killed under this connection: expected
                pass
    import threading
    t = threading.Thread(target=lambda: asyncio.run(start()), daemon=True)
    t.start()
    wait_for(lambda: "rid" in holder, 30, "A to start the run")
    rid = holder["rid"]
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    children = a.children()

    async def kill_after_three(ev):
        if ev["seq"] == 3 and a.proc.poll() is None:
            a.proc.kill()
    accepted, lines, last = raw_watch(b, rid, on_event=kill_after_three, timeout=120)
    a.proc.wait()
    a.stopped = True
    wait_for(lambda: not [p for p in children if pid_alive(p)], 30, "A's run processes to die")
    eq(last and last.get("type"), "watch.incomplete", f"B ends the watch with: {last}")
    events = [json.loads(x) for x in lines]
    check(len(events) >= 4, f"B got the events before the kill ({len(events)})")
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    check(all(e["type"] != "run.end" for e in events), "no run.end was made up")
    eq(last["events"], len(events), "watch.incomplete counts what the stream holds")
    check("stopped before the run ended" in last["reason"], last["reason"])
    meta = b.get_json(f"/api/runs/{rid}")
    eq((meta["status"], meta["incomplete"]), ("incomplete", True), "B's meta of the killed run")
    eq(b.get(f"/api/runs/{rid}/events").body, ("\n".join(lines) + "\n").encode(),
       "B serves what the stream holds")
    done(b)
    a.cleanup()
    n.stop()


@test
def nats_stopped_then_back_replicas_degrade_then_resync():
    n, a, b = two_replicas()
    rid1, count1 = one_run(a)
    # Settled before NATS goes (lines in flight when it dies are sent
    # again: lines_in_flight_when_nats_dies_are_resent_in_order).
    wait_for(lambda: nats_health(a)["acked"] >= count1, 30, "A's first run acknowledged")
    wait_for(lambda: listed(b, rid1), 30, "B to list A's first run")
    wait_for(lambda: nats_health(b)["replicas"]["state"] == "ok", 30, "B's index in sync")
    n.stop()
    wait_for(lambda: nats_health(b)["replicas"]["state"] == "degraded", 30,
             "B to say runs across replicas are degraded")
    check("NATS is not reachable" in nats_health(b)["replicas"]["reason"], "the reason")
    eq(b.get_json("/api/health")["status"], "ok", "B still serves")
    own, _ = one_run(b)
    check(listed(b, own) and listed(b, rid1), "B lists its own run and A's last seen")
    rid2, count2 = one_run(a)
    n = Nats(port=n.port, store_dir=n.store)
    wait_for(lambda: nats_health(b)["replicas"]["state"] == "ok", 60, "B to resync")
    wait_for(lambda: listed(b, rid2), 60, "B to list the run A made while NATS was away")
    try:
        wait_for(lambda: nats_health(a)["acked"] >= count1 + count2, 60,
                 "A's lines in the stream")
    except AssertionError:
        raise AssertionError(f"A's lines in the stream ({count1}+{count2}): {nats_health(a)}")
    eq(b.get(f"/api/runs/{rid2}/events").body, bundle_bytes(a, rid2),
       "B serves it from the stream byte for byte")
    eq(a.get(f"/api/runs/{own}/events").body, bundle_bytes(b, own), "and A serves B's")
    done(b)
    done(a)
    n.stop()


@test
def a_pruned_run_is_purged_from_the_stream():
    need_reader()
    n = Nats()
    a = server("--nats", n.url, "--keep-runs", "10")
    ids = [one_run(a, messages=1)[0] for _ in range(11)]
    wait_for(lambda: nats_health(a)["purged"] >= 1, 30, "the pruned run purged")
    wait_for(lambda: nats_health(a)["files"]["published"] >= 11, 30, "every run's files published")
    eq(stream_lines(n.url, ids[0]), b"", "the oldest run's events left the stream")
    eq(stream_lines(n.url, ids[-1]), bundle_bytes(a, ids[-1]), "the newest is there")

    def file_chunks(rid):
        r = subprocess.run([READER, n.url, "SOCKLAB_RUN_FILES", f"socklab.files.{rid}.stderr.log"],
                           capture_output=True, timeout=60)
        eq(r.returncode, 0, f"nats_read: {r.stderr.decode()}")
        return r.stdout
    eq(file_chunks(ids[0]), b"", "the oldest run's files left their stream")
    eq(file_chunks(ids[-1]), bundle_file(a, ids[-1], "stderr.log") + b"\n",
       "the newest run's stderr.log is there (one chunk)")
    done(a)
    n.stop()


@test
def lines_in_flight_when_nats_dies_are_resent_in_order():
    """NATS frozen (SIGSTOP) while A publishes, so lines are sent and not
    acknowledged, then SIGKILLed and started again on its store: A sends
    every unacknowledged line again after the reconnect, and B, following
    the run live from the stream throughout, gets every event once, in
    order, byte-equal to A's events.jsonl."""
    import threading
    n, a, b = two_replicas()
    holder, watched = {}, {}

    async def start():
        async with a.connect() as ws:
            rid = await start_run(ws, {"messages": 300, "interval_ms": 20})
            holder["rid"] = rid
            await events_until_end(ws, rid, timeout=300)
            holder["ended"] = True
    t = threading.Thread(target=lambda: asyncio.run(start()), daemon=True)
    t.start()
    wait_for(lambda: "rid" in holder, 30, "A to start the run")
    rid = holder["rid"]
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    tb = threading.Thread(target=lambda: watched.setdefault("w", raw_watch(b, rid, timeout=280)),
                          daemon=True)
    tb.start()
    wait_for(lambda: nats_health(a)["acked"] >= 20, 30, "A's first lines stored")
    n.proc.send_signal(signal.SIGSTOP)
    wait_for(lambda: nats_health(a)["in_flight"] >= 10, 30,
             "lines sent to the frozen NATS and not acknowledged")
    n.proc.kill()
    n.proc.wait()
    n = Nats(port=n.port, store_dir=n.store)
    t.join(300)
    check(holder.get("ended"), "A's run ended")

    def settled():
        h = nats_health(a)
        return h["in_flight"] == 0 and h["queued"] == 0 and h
    try:
        h = wait_for(settled, 120, "every line of A acknowledged")
    except AssertionError:
        raise AssertionError(f"every line of A acknowledged: {nats_health(a)}") from None
    check(h["resent"] >= 10, f"the lines in flight were sent again: {h}")
    eq(h["dropped"], 0, "nothing dropped")
    tb.join(300)
    accepted, lines, last = watched["w"]
    eq(accepted["live"], True, "B followed the run live")
    want = bundle_bytes(a, rid)
    eq(("\n".join(lines) + "\n").encode(), want,
       "B's watch: every event once, in order, byte-equal to A's events.jsonl")
    eq(last, None, "nothing after run.end")
    eq(b.get(f"/api/runs/{rid}/events").body, want, "B's /events equals A's events.jsonl")
    seqs = [json.loads(x)["seq"] for x in stream_lines(n.url, rid).splitlines()]
    eq(sorted(seqs), list(range(want.count(b"\n"))), "the stream holds every seq once")
    done(b)
    done(a)
    n.stop()


@test
def a_replica_stops_within_its_grace_period_while_nats_is_down():
    """Stopping watchers and subscriptions asks NATS to delete their
    consumers; with NATS gone each ask waited 5 s (17 to 20 s in all), past
    the 10 s a container is given (compose's stop_grace_period)."""
    n, a, b = two_replicas()
    rid, _ = one_run(a)
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    eq(b.get(f"/api/runs/{rid}/events").body, bundle_bytes(a, rid), "B copied A's run")
    n.proc.kill()
    n.proc.wait()
    wait_for(lambda: nats_health(b)["state"] == "reconnecting", 30, "B to notice")
    b.stop(timeout=10)  # exit status 0, no sanitizer report, within 10 s
    a.stop(timeout=10)
    b.cleanup()
    a.cleanup()


# ---- run files across replicas: chunks in SOCKLAB_RUN_FILES ----

CHUNKER = os.path.join(ROOT, "build", "tests", "nats_chunk")


@test
def a_run_on_one_replica_is_graded_on_another():
    """The dashboard grades a student's answers with GET /api/runs/ID/grade;
    behind a balancer with no affinity that request may reach any replica.
    B grades A's run from its copy of the stream, exactly as A does; bad
    answers are refused naming the question on B (a run still going: a_live_run_on_one_replica_...)."""
    n, a, b = two_replicas()
    rid, count = one_run(a, messages=5)
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    q = "/grade?server_recvs=6&eof_side=client&lang=zh-CN"
    on_a = a.get(f"/api/runs/{rid}{q}")
    on_b = b.get(f"/api/runs/{rid}{q}")
    eq((on_a.status, on_b.status), (200, 200), f"grading on A and B: {on_b.body[:300]!r}")
    eq(on_b.json(), on_a.json(), "B's verdicts are A's, field for field")
    v = {x["q"]: x for x in on_b.json()["verdicts"]}
    # 5 messages and the FIN: six recv() calls on the server (the calls in A's
    # bundle, counted here independently of the grader).
    recvs = [e for e in map(json.loads, bundle_bytes(a, rid).splitlines())
             if e["type"] == "syscall" and e.get("who", "").startswith("server")
             and e["call"] == "recv"]
    eq((v["server_recvs"]["truth"], v["server_recvs"]["result"]), (len(recvs), "right"
       if len(recvs) == 6 else "wrong"), "server_recvs graded on B")
    eq(v["eof_side"]["result"], "wrong", "eof_side: the server reads the end of the stream")
    check(v["eof_side"]["why"]["text"] and not v["eof_side"]["why"]["text"].isascii(),
          "lang=zh-CN explanations on B")
    bad = b.get(f"/api/runs/{rid}/grade?server_recvs=x")
    eq((bad.status, bad.json()["error"]["param"]), (400, "server_recvs"), "a bad answer on B")
    eq(b.get(f"/api/runs/{'0' * 16}/grade").status, 404, "an unknown run")
    done(b)
    done(a)
    n.stop()


def sha256_of(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def capture_run(s):
    """A tcp-echo run with capture=on whose capture is several chunks long."""
    async def go():
        async with s.connect() as ws:
            rid = await start_run(ws, {"capture": True, "messages": 40, "size": 16000})
            events = await events_until_end(ws, rid, timeout=120)
        eq(events[-1]["status"], "ok", f"run.end: {events[-1]}")
        return rid
    return asyncio.run(go())


def bundle_file(s, rid, name):
    with open(os.path.join(s.data, "runs", rid, name), "rb") as f:
        return f.read()


def files_of(s, rid):
    """The run's files as the index says (waits for them to be published)."""
    return wait_for(lambda: s.get_json(f"/api/runs/{rid}").get("files"), 60,
                    "the run's files in the index")


@test
def a_capture_made_on_one_replica_downloads_byte_identical_from_another():
    n, a, b = two_replicas()
    rid = capture_run(a)
    pcap = bundle_file(a, rid, "capture.pcap")
    check(len(pcap) > 2 * 128 * 1024, f"the capture spans several chunks ({len(pcap)} bytes)")
    wait_for(lambda: listed(b, rid), 30, "B to list A's run")
    files = files_of(b, rid)
    eq(files["capture.pcap"], {"bytes": len(pcap), "sha256": sha256_of(pcap),
                               "chunks": -(-len(pcap) // (128 * 1024))},
       "the index's manifest of capture.pcap")
    stderr = bundle_file(a, rid, "stderr.log")
    eq((files["stderr.log"]["bytes"], files["stderr.log"]["sha256"]),
       (len(stderr), sha256_of(stderr)), "stderr.log is shared too")
    check("events.jsonl" not in files and "meta.json" not in files,
          "events and meta travel as the stream and the index, not as files")
    r = b.get(f"/api/runs/{rid}/capture.pcap")
    eq(r.status, 200, f"B serves A's capture: {r.body[:300]!r}")
    eq((len(r.body), sha256_of(r.body)), (len(pcap), sha256_of(pcap)),
       "B's capture.pcap is byte-identical to A's (length, SHA-256)")
    eq(r.headers.get("Content-Type"), "application/vnd.tcpdump.pcap", "its type")
    eq(b.get(f"/api/runs/{rid}/capture.pcap").body, pcap, "served again from B's copy")
    h = nats_health(a)["files"]
    check(h["published"] >= 2 and h["failed"] == 0, f"A's files health: {h}")
    eq(nats_health(b)["files"]["fetched"], 1, "B reassembled one file")
    done(b)
    done(a)
    n.stop()


@test
def a_missing_or_corrupt_chunk_is_refused_never_served_truncated():
    check(os.path.exists(CHUNKER), f"{CHUNKER} is missing: make unit builds it")
    n, a, b = two_replicas()
    lost, bad = capture_run(a), capture_run(a)
    for rid in (lost, bad):
        wait_for(lambda: listed(b, rid), 30, "B to list A's run")
        chunks = files_of(b, rid)["capture.pcap"]["chunks"]
        check(chunks >= 3, f"several chunks ({chunks})")

    def chunk(rid, index, how):
        r = subprocess.run([CHUNKER, n.url, "SOCKLAB_RUN_FILES",
                            f"socklab.files.{rid}.capture.pcap", str(index), how],
                           capture_output=True, timeout=60)
        eq(r.returncode, 0, f"nats_chunk: {r.stderr.decode()}")
    chunk(lost, 1, "del")
    r = b.get(f"/api/runs/{lost}/capture.pcap")
    err = r.json()["error"]
    eq((r.status, err["code"]), (502, "file_error"), f"a lost chunk: {err}")
    total = files_of(b, lost)["capture.pcap"]["chunks"]
    check(f"lacks chunk 1 of the {total} of capture.pcap" in err["message"], err["message"])
    chunk(bad, 0, "flip")
    r = b.get(f"/api/runs/{bad}/capture.pcap")
    err = r.json()["error"]
    eq((r.status, err["code"]), (502, "file_error"), f"a corrupt chunk: {err}")
    check("does not match its SHA-256" in err["message"]
          and files_of(b, bad)["capture.pcap"]["sha256"] in err["message"], err["message"])
    remote = os.listdir(os.path.join(b.data, "remote"))
    check(not [f for f in remote if "capture.pcap" in f],
          f"no partial copy is left on B: {remote}")
    eq(nats_health(b)["files"]["bad"], 2, "B counts the two refused files")
    done(b)
    done(a)
    n.stop()


if __name__ == "__main__":
    run(timeout=240)
