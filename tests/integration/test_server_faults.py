"""test_server_faults.py: the server against runs that misbehave (tests/integration/fake_run.py)."""
import asyncio
import atexit
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check_stream, events_until_end, send, start_run  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_run.py")
_srv = None


def srv():
    global _srv
    if _srv is None:
        # --run-timeout 1: the server's own limit fires 1 + 3 s after a start.
        _srv = Server("--run-timeout", "1", env={"SOCKLAB_LAB_EXE": FAKE})
        atexit.register(_srv.cleanup)
    return _srv


def fake_run(mode, cancel=False):
    """Start a fake run; optionally cancel it once it started; return its events."""
    s = srv()

    async def go():
        async with s.connect() as ws:
            rid = await start_run(ws, {"text": f"fake:{mode}"})
            events = await events_until_end(ws, rid, until=lambda e: e["type"] == "run.start")
            if cancel:
                await send(ws, {"op": "cancel", "run": rid})
            events += await events_until_end(ws, rid, timeout=30)
            return rid, events

    rid, events = asyncio.run(go())
    check_stream(events)
    s.wait_no_children()
    meta = s.wait_run_status(rid)
    eq(meta["status"], events[-1]["status"], "meta status matches run.end")
    lines = s.get(f"/api/runs/{rid}/events").body.decode().splitlines()
    eq([json.loads(line) for line in lines], events, "bundle == stream")
    return events, meta


def error_of(events):
    errs = [e for e in events if e["type"] == "error"]
    eq(len(errs), 1, f"one error event in {[e['type'] for e in events]}")
    return errs[0]


@test
def non_json_output_kills_the_run():
    before = srv().get_json("/api/health")["counters"]["runs_bad_output"]
    events, meta = fake_run("garbage")
    err = error_of(events)
    eq(err["code"], "bad_output", "code")
    check("not a JSON object" in err["message"], err["message"])
    check("SIGKILL" in err["message"], f"it ignored SIGTERM, so: {err['message']}")
    eq(events[-1]["status"], "error", "run.end status")
    eq(meta["exit"], {"signal": 9}, "meta exit")
    eq(srv().get_json("/api/health")["counters"]["runs_bad_output"], before + 1, "counted")


@test
def seq_gap_kills_the_run():
    err = error_of(fake_run("seqgap")[0])
    eq(err["code"], "bad_output", "code")
    check("seq missing or not 1" in err["message"], err["message"])


@test
def overlong_line_kills_the_run():
    err = error_of(fake_run("longline")[0])
    eq(err["code"], "bad_output", "code")
    check("longer than 1 MiB" in err["message"], err["message"])


@test
def death_without_run_end_is_reported():
    events, meta = fake_run("die")
    err = error_of(events)
    eq(err["code"], "run_died", "code")
    check("exited with status 3" in err["message"], err["message"])
    eq(events[-1]["status"], "error", "run.end status")
    eq(meta["exit"], {"code": 3}, "meta exit")


@test
def cancel_escalates_to_sigkill():
    events, _ = fake_run("hang", cancel=True)
    err = error_of(events)
    eq(err["code"], "cancelled", "code")
    check("killed by signal 9 (SIGKILL)" in err["message"], err["message"])
    eq(events[-1]["status"], "cancelled", "run.end status")


@test
def server_time_limit_stops_a_hung_run():
    events, _ = fake_run("hang")
    err = error_of(events)
    eq(err["code"], "timeout", "code")
    eq(events[-1]["status"], "timeout", "run.end status")


@test
def server_time_limit_is_reported_as_timeout():
    # The run answers SIGTERM with its own run.end "cancelled"; the server
    # knows it sent SIGTERM because of the time limit and says so.
    events, meta = fake_run("polite")
    eq([e["type"] for e in events], ["run.start", "run.end"], "no synthesized events")
    eq(events[-1]["status"], "timeout", "run.end status")
    eq(meta["exit"], {"code": 1}, "meta exit")


@test
def clean_shutdown():
    srv().stop()


if __name__ == "__main__":
    run(timeout=120)
