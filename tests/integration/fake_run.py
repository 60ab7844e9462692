#!/usr/bin/python3
"""fake_run.py: a stand-in for `socklab run --json` that misbehaves on purpose (server tests).

`socklab serve` runs it instead of itself when SOCKLAB_LAB_EXE points here.
It gets the same arguments (run LAB --json --run-id ID --timeout SEC --parent PID -p K=V...)
and picks a behaviour from the text parameter, "fake:MODE":
  garbage   run.start, then a line that is not JSON, then hangs ignoring SIGTERM
  seqgap    run.start, then an event with seq 2
  longline  run.start, then 2 MiB without a newline, then hangs
  die       run.start, then exits with status 3 without run.end
  hang      run.start, then ignores SIGTERM and its own timeout forever
  polite    run.start, then waits; on SIGTERM prints run.end "cancelled", exits 1
"""
import json
import signal
import sys
import time

args = sys.argv[1:]
run_id = args[args.index("--run-id") + 1]
lab = args[1]
params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "-p")
mode = params.get("text", "fake:polite").split(":", 1)[1]
seq = 0


def emit(type_, **fields):
    global seq
    ev = {"v": 1, "run": run_id, "seq": seq, "t_us": seq * 10, "lab": lab, "type": type_}
    ev.update(fields)
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()
    seq += 1


def hang():
    while True:
        time.sleep(3600)


def polite_term(signum, frame):
    emit("run.end", status="cancelled", summary={})
    sys.exit(1)


# Signal dispositions first: the server may cancel as soon as it sees run.start.
if mode in ("garbage", "hang"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode not in ("seqgap", "longline", "die"):
    signal.signal(signal.SIGTERM, polite_term)
emit("run.start", params=params, sandbox={"netns": False}, fake=mode)
if mode == "garbage":
    sys.stdout.write("this is not json\n")
    sys.stdout.flush()
    hang()
elif mode == "seqgap":
    seq = 2
    emit("note", key="x", text="skipped one", params={})
    hang()
elif mode == "longline":
    sys.stdout.write("x" * (2 * 1024 * 1024))
    sys.stdout.flush()
    hang()
elif mode == "die":
    sys.exit(3)
else:
    hang()
