"""test_capture.py: capture that never loses silently: a lossless ring on the issue's burst, and an overflowing one that says so and draws no verdict."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")
# The case: 200 x 2000 bytes between two hosts, the receiver
# reading only after 2 s, so the sender's segments leave in bursts.
BURST = ["network=two-hosts", "count=200", "size=2000", "recv_delay_ms=2000", "bufsize=100000"]
REPEAT = 20
# Notes sticky draws from the wire lane (its verdicts, causes, releases and
# segment sizes); sticky.verdict.incomplete is its "no verdict" note.
WIRE_VERDICTS = ("sticky.verdict.", "sticky.cause.", "sticky.release.", "sticky.mss.",
                 "sticky.evidence.")
NO_VERDICT = "sticky.verdict.incomplete"


def root():
    if os.geteuid() != 0:
        raise Skip("needs root (a raw socket for the capture, namespaces for two-hosts)")


def lab(name, *params, ring_kb=None):
    """Run a lab with --json; return (events, summary)."""
    env = dict(os.environ)
    env.pop("SOCKLAB_CAPTURE_RING_KB", None)
    if ring_kb is not None:
        env["SOCKLAB_CAPTURE_RING_KB"] = str(ring_kb)
    args = [BIN, "run", name, "--json"]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=90, env=env)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report: {r.stderr[-800:]}")
    eq(r.returncode, 0, f"exit of {name} {params}: {r.stderr[-400:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    eq(events[-1]["type"], "run.end", "last event")
    return events, events[-1]["summary"]


def notes(events):
    return [e for e in events if e["type"] == "note"]


def note_keys(events):
    return [e["key"] for e in notes(events)]


def burst_once(i):
    ev, s = lab("sticky", *BURST)
    return i, ev, s


@test
def two_host_burst_loses_nothing_in_20_runs():
    root()
    # Two runs at a time (each has its own namespaces): the machine has two
    # cores, and a capture must not lose frames under that load either.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(burst_once, range(REPEAT)))
    for i, ev, s in results:
        what = f"run {i + 1} of {REPEAT}"
        eq(s["capture"]["drops"], 0, f"{what}: frames the kernel dropped")
        eq(s["capture"]["complete"], True, f"{what}: capture complete")
        eq(s["send_bytes"], 400000, f"{what}: send_bytes")
        eq(s["wire_bytes"], 400000, f"{what}: wire_bytes")
        eq(s["recv_bytes"], 400000, f"{what}: recv_bytes")
        data = [g for g in ev if g["type"] == "segment" and g["bytes"] and not g["retransmit"]]
        eq(sum(g["bytes"] for g in data), 400000, f"{what}: bytes of the segment events")
        check(s["capture"]["frames"] >= len(data), f"{what}: frames {s['capture']} < {len(data)}")
        check("capture.incomplete" not in note_keys(ev), f"{what}: no incomplete note")
        check(NO_VERDICT not in note_keys(ev), f"{what}: a verdict is drawn")
        check(any(k.startswith(WIRE_VERDICTS) for k in note_keys(ev)), f"{what}: {note_keys(ev)}")


@test
def a_tiny_ring_overflows_says_so_and_withholds_the_verdict():
    root()
    # 8 KiB: two blocks of 4 KiB, four full-size frames, against bursts of
    # ten and more segments of 1514 bytes.
    ev, s = lab("sticky", *BURST, ring_kb=8)
    cap = s["capture"]
    check(cap["drops"] > 0, f"drops counted: {cap}")
    eq(cap["complete"], False, "capture complete")
    check(cap["ring_full"] > 0, f"the kernel found the ring full: {cap}")
    # The lanes that do not come from the capture are whole.
    eq(s["send_bytes"], 400000, "send_bytes")
    eq(s["recv_bytes"], 400000, "recv_bytes")
    check(s["wire_bytes"] < 400000, f"the wire lane has gaps: {s['wire_bytes']}")
    inc = [n for n in notes(ev) if n["key"] == "capture.incomplete"]
    eq(len(inc), 1, "one capture.incomplete note")
    eq(inc[0]["params"]["missed"], cap["drops"], "the note's count is the summary's")
    check(f"missed {cap['drops']} frames" in inc[0]["text"], inc[0]["text"])
    check("the counts below are incomplete" in inc[0]["text"], inc[0]["text"])
    nv = [n for n in notes(ev) if n["key"] == NO_VERDICT]
    eq(len(nv), 1, f"one no-verdict note: {note_keys(ev)}")
    eq(nv[0]["params"]["drops"], cap["drops"], "the no-verdict note's drops")
    check(nv[0]["text"].startswith("No verdict: the capture is incomplete"), nv[0]["text"])
    wire = [k for k in note_keys(ev) if k.startswith(WIRE_VERDICTS) and k != NO_VERDICT]
    eq(wire, [], "verdicts drawn from the wire lane")
    eq(s["boundaries_lost"], "unknown", "where boundaries were lost")


@test
def handshake_with_an_overflowing_capture_compares_nothing():
    root()
    ev, s = lab("handshake", "network=loopback", "data=65536", "reply=65536", ring_kb=8)
    cap = s["capture"]
    check(cap["drops"] > 0, f"drops counted: {cap}")
    eq(cap["complete"], False, "capture complete")
    check("capture.incomplete" in note_keys(ev), note_keys(ev))
    check("capture.no_verdict" in note_keys(ev), note_keys(ev))
    eq([e for e in ev if e["type"] == "state.compare"], [], "comparisons drawn from segments")
    eq(s["disagreements"], None, "disagreements")
    eq(s["close"], None, "close pattern")


@test
def handshake_with_a_whole_capture_reports_it():
    root()
    ev, s = lab("handshake", "network=loopback")
    eq(s["capture"]["drops"], 0, "drops")
    eq(s["capture"]["complete"], True, "complete")
    # Loopback: one copy of every segment.
    eq(s["capture"]["frames"], s["segments"], "frames captured, segments shown")
    check("capture.incomplete" not in note_keys(ev), note_keys(ev))
    check(len([e for e in ev if e["type"] == "state.compare"]) == 2, "both sides compared")


@test
def a_bad_ring_size_is_named():
    root()
    env = dict(os.environ, SOCKLAB_CAPTURE_RING_KB="4")
    r = subprocess.run([BIN, "run", "sticky", "--json"], capture_output=True, text=True,
                       timeout=60, env=env)
    eq(r.returncode, 1, "exit code")
    errs = [json.loads(line) for line in r.stdout.splitlines()]
    errs = [e for e in errs if e["type"] == "error"]
    check(errs and "SOCKLAB_CAPTURE_RING_KB" in errs[0]["message"], f"error: {errs}")
    check("from 8 to 65536" in errs[0]["message"], errs[0]["message"])


if __name__ == "__main__":
    run(timeout=180)
