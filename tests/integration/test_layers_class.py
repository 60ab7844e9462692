"""test_layers_class.py: a layers run as a class run over real WebSockets, and its replays.

The instructor runs layers in a class (A's link through socklab's relay, so
the wire's events travel too); every student must get every event of the run,
in order, exactly as the run's bundle holds them; a later watch replays the
same events from the first; the run's pcap holds one packet per frame event
and tshark reads the same addresses in the same order.
"""
import atexit
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import classlib  # noqa: E402
from harness import Server  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

SECRET = "layers-class-secret"
STUDENTS = 3
PARAMS = {"scenario": "other-subnet", "a_delay_ms": 5, "a_loss_pct": 0, "seed": 5}

_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = Server("--instructor-secret", SECRET)
        atexit.register(_srv.cleanup)
    return _srv


_state = {}


@test
def a_layers_class_run_reaches_every_student_event_for_event():
    run_id, bundle = classlib.class_run(srv(), SECRET, "layers", PARAMS, STUDENTS)
    types = {e["type"] for e in bundle}
    check({"topology", "frame", "hop", "wire", "neigh"} <= types, f"event types {sorted(types)}")
    _state["run"] = run_id
    _state["bundle"] = bundle


@test
def a_finished_layers_run_replays_from_its_bundle():
    s = srv()
    run_id, bundle = _state["run"], _state["bundle"]
    eq(classlib.replay(s, run_id), bundle, "watch replays the same events")
    meta = s.get_json(f"/api/runs/{run_id}")
    eq(meta.get("lab"), "layers", f"run meta {meta}")
    # The pcap: one packet per frame event, in the same order and addresses.
    frames = [e for e in bundle if e["type"] == "frame"]
    rows = [tuple(r) for r in classlib.tshark(s, run_id, "eth.src", "eth.dst")]
    eq(rows, [(e["eth"]["src"], e["eth"]["dst"]) for e in frames], "tshark's frames vs the frame events")
    check(len(frames) > 10, f"frames {len(frames)}")


if __name__ == "__main__":
    run(timeout=180)
