"""test_stream_order.py: an observing lab's --json stream has its socket calls and its segments in the order they happened."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")


def root():
    if os.geteuid() != 0:
        raise Skip("needs root (a raw socket for the capture, namespaces for two-hosts)")


def when(e):
    """When an event happened: a call when it returned, a segment when the
    kernel stamped it (t_kernel_us; sticky names it t_wire_us)."""
    if e["type"] == "syscall":
        return e["t_call_us"] + e["blocked_us"]
    if e["type"] == "segment":
        return e.get("t_kernel_us", e.get("t_wire_us"))
    return None


def out_of_order(events):
    """Every (earlier, later) pair of a call and a segment that the stream
    has the other way round: an event that comes after one of the other
    kind that happened later."""
    bad, latest = [], {}
    for e in events:
        t = when(e)
        if t is None:
            continue
        kind = "call" if e["type"] == "syscall" else "segment"
        other = "segment" if kind == "call" else "call"
        if other in latest and t < latest[other][0]:
            bad.append((e["seq"], kind, t, "after", latest[other][1], other, latest[other][0]))
        if kind not in latest or t > latest[kind][0]:
            latest[kind] = (t, e["seq"])
    return bad


def lab_run(lab, *params):
    root()
    args = [BIN, "run", lab, "--json"]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report: {r.stderr[-800:]}")
    eq(r.returncode, 0, f"exit of {lab} {params}: {r.stderr[-400:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    ts = [e["t_us"] for e in events]
    eq(ts, sorted(ts), "t_us never decreases along seq")
    return events


def assert_in_order(events, min_calls, min_segments):
    calls = [e for e in events if e["type"] == "syscall"]
    segs = [e for e in events if e["type"] == "segment"]
    check(len(calls) >= min_calls, f"{len(calls)} calls, want at least {min_calls}")
    check(len(segs) >= min_segments, f"{len(segs)} segments, want at least {min_segments}")
    bad = out_of_order(events)
    eq(bad[:5], [], f"{len(bad)} calls and segments out of time order (seq, kind, t, 'after', seq, kind, t)")


@test
def the_checker_sees_a_call_emitted_after_a_later_segment():
    # The check itself: a call that returned at 100 but comes after a segment
    # stamped 150 is reported, and so is a segment stamped 50 after it.
    seg = {"seq": 0, "type": "segment", "t_kernel_us": 150}
    call = {"seq": 1, "type": "syscall", "t_call_us": 90, "blocked_us": 10}
    eq(len(out_of_order([seg, call])), 1, "call after a later segment")
    early = {"seq": 2, "type": "segment", "t_wire_us": 50}
    eq(len(out_of_order([call, early])), 1, "segment after a later call")
    eq(out_of_order([call, seg]), [], "in order")


@test
def handshake_calls_and_segments_in_time_order():
    # The default exercise: connect, a request and a reply, both closes.
    events = lab_run("handshake")
    assert_in_order(events, 10, 8)
    # connect() returns after the SYN and the SYN-ACK, so it follows them.
    connect = next(e for e in events if e["type"] == "syscall" and e["call"] == "connect")
    syn = next(e for e in events if e["type"] == "segment" and e.get("flags_short") == "S")
    check(syn["seq"] < connect["seq"], f"SYN (seq {syn['seq']}) before connect() returns (seq {connect['seq']})")


@test
def handshake_duplicates_in_time_order():
    # The duplicate-RST case: many more segments around the calls.
    events = lab_run("handshake", "data=8000", "reply=8000", "c2s_dup_pct=30", "s2c_dup_pct=30",
                     "seed=12", "observe_ms=1000")
    assert_in_order(events, 10, 20)


@test
def sticky_loopback_in_time_order():
    events = lab_run("sticky", "count=20")
    assert_in_order(events, 20, 10)


@test
def sticky_two_hosts_in_time_order():
    events = lab_run("sticky", "network=two-hosts", "count=50", "size=2000", "recv_delay_ms=200",
                     "bufsize=100000")
    assert_in_order(events, 50, 50)


if __name__ == "__main__":
    run(timeout=90)
