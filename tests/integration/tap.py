"""tap.py: a minimal TAP test helper for socklab's Python tests (stdlib only).

Each test is a function decorated with @test; run() executes them in order,
each under an alarm timeout, and prints one TAP line per test:
  ok N - name
  not ok N - name: reason
  ok N - name # SKIP why
tests/run collects these lines from every test program.
"""
import os
import signal
import sys
import traceback

_tests = []


class Skip(Exception):
    """Raise to skip the running test; the message says why."""


def test(fn):
    _tests.append(fn)
    return fn


def eq(got, want, what=""):
    """Assert got == want, printing both sides."""
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def _alarm(signum, frame):
    raise TimeoutError("test timed out")


def run(timeout=60):
    only = os.environ.get("TEST_ONLY")
    failed = 0
    signal.signal(signal.SIGALRM, _alarm)
    print(f"1..{len(_tests)}", flush=True)
    for n, fn in enumerate(_tests, 1):
        name = fn.__name__
        if only and only not in name:
            print(f"ok {n} - {name} # SKIP not selected by TEST_ONLY", flush=True)
            continue
        signal.alarm(timeout)
        try:
            fn()
            print(f"ok {n} - {name}", flush=True)
        except Skip as e:
            print(f"ok {n} - {name} # SKIP {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            reason = str(e).replace("\n", " ")[:500] or type(e).__name__
            print(f"not ok {n} - {name}: {reason}", flush=True)
            traceback.print_exc(file=sys.stderr)
        finally:
            signal.alarm(0)
    sys.exit(1 if failed else 0)
