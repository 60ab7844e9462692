"""test_input_files.py: CLI parameters refused consistently, file modes and paths a student sees (issue 17, items 11 and 12)."""
import asyncio
import base64
import glob
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, events_until_end, request  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

ASAN = os.environ.get("SOCKLAB_ASAN", "build/asan/socklab")
BIN = ASAN if os.path.exists(ASAN) else os.environ.get("SOCKLAB", "build/socklab")
TMP = tempfile.mkdtemp(prefix="socklab-input-")
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


def sl(*args, env=None):
    """Run the CLI (arguments may be bytes); return (exit code, stderr text)."""
    penv = dict(os.environ)
    penv.update(env or {})
    r = subprocess.run([BIN, *args], capture_output=True, timeout=60, env=penv)
    err = r.stderr.decode(errors="replace")
    for bad in SANITIZER_MARKS:
        check(bad not in err, f"sanitizer report from {args}: {err[-800:]}")
    return r.returncode, err


def tiny_pcap():
    """A pcap (microsecond, Ethernet) holding one TCP SYN from 10.0.0.1:1234 to 10.0.0.2:80."""
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    frame = eth + ip + tcp
    head = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    return head + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame


@test
def integer_parameters_refuse_any_leading_white_space():
    want = "parameter 'messages': must be an integer from 1 to 1000"
    for value in ("\t5", " 5", "\n5", "\v5", "+5", "5 ", ""):
        rc, err = sl("run", "tcp-echo", "-p", f"messages={value}")
        eq(rc, 2, f"exit code for messages={value!r}")
        check(want in err, f"messages={value!r}: {err!r}")
    rc, err = sl("run", "tcp-echo", "--json", "-p", "messages=1")
    eq(rc, 0, f"messages=1 is accepted: {err}")


@test
def text_refuses_surrogates_and_code_points_above_u10ffff():
    want = b"parameter 'text': must be well-formed UTF-8 text"
    cases = {
        "surrogate U+D800": b"a\xed\xa0\x80b",
        "surrogate U+DFFF": b"\xed\xbf\xbf",
        "U+110000": b"\xf4\x90\x80\x80",
        "F5 lead byte": b"\xf5\x80\x80\x80",
        "overlong U+002F": b"\xe0\x80\xaf",
        "overlong 4-byte": b"\xf0\x80\x80\x80",
    }
    for what, raw in cases.items():
        rc, err = sl(b"run", b"tcp-echo", b"-p", b"text=" + raw)
        eq(rc, 2, f"exit code for {what}")
        check(want.decode() in err, f"{what}: {err!r}")
    # The largest code point and one just below the surrogates are text, and
    # they reach run.start as they were given.
    r = subprocess.run([BIN, "run", "tcp-echo", "--json", "-p", "messages=1",
                        "-p", "text=\U0010ffff\ud7ff".encode("utf-8", "surrogatepass")],
                       capture_output=True, timeout=60)
    eq(r.returncode, 0, f"valid text accepted: {r.stderr[-300:]!r}")
    start = json.loads(r.stdout.split(b"\n")[0])
    eq(start["type"], "run.start", "first event")
    eq(start["params"].get("text"), "\U0010ffff\ud7ff", "text in run.start")


@test
def a_bad_bundle_directory_leaks_nothing():
    if "asan" not in BIN:
        raise Skip("no sanitizer build (make asan)")
    missing = os.path.join(TMP, "no", "such", "dir")
    rc, err = sl("run", "tcp-echo", "--bundle", missing,
                 env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"})
    eq(rc, 2, "exit code")
    check(f"--bundle {missing}: No such file or directory" in err, f"message: {err!r}")


@test
def replay_errors_and_captures_keep_the_server_private():
    old = os.umask(0o022)
    s = Server()
    try:
        async def go(pcap):
            async with s.connect() as ws:
                reply = await request(ws, {"op": "run", "lab": "handshake", "params": {},
                                           "pcap": base64.b64encode(pcap).decode()})
                eq(reply.get("type"), "run.accepted", f"reply {reply}")
                return reply["run"], await events_until_end(ws, reply["run"])

        run_id, ev = asyncio.run(go(b"this is not a capture file at all"))
        errs = [e for e in ev if e["type"] == "error"]
        check(errs, f"an error event: {ev}")
        msg = errs[0]["message"]
        check("upload.pcap" in msg, f"the error names the file: {msg}")
        check(s.data not in msg and "/runs/" not in msg, f"no server path in {msg!r}")

        run_id, ev = asyncio.run(go(tiny_pcap()))
        eq(ev[-1]["status"], "ok", f"replay of a good capture: {ev[-3:]}")
        s.wait_run_status(run_id)
        bundle = os.path.join(s.data, "runs", run_id)
        modes = {os.path.basename(p): stat.S_IMODE(os.stat(p).st_mode)
                 for p in glob.glob(os.path.join(bundle, "*"))}
        check("capture.pcap" in modes, f"the replay wrote a capture: {sorted(modes)}")
        for name, mode in modes.items():
            eq(oct(mode), oct(0o600), f"mode of {name}")
        eq(oct(stat.S_IMODE(os.stat(bundle).st_mode)), oct(0o700), "bundle directory mode")
        s.wait_no_children()
    finally:
        os.umask(old)
        s.stop()
        s.cleanup()


@test
def the_cli_capture_file_is_private_too():
    old = os.umask(0o022)
    try:
        src = os.path.join(TMP, "in.pcap")
        with open(src, "wb") as f:
            f.write(tiny_pcap())
        out = os.path.join(TMP, "out.pcap")
        bundle = os.path.join(TMP, "bundle")
        rc, err = sl("run", "handshake", "--json", "-p", f"replay={src}", "--pcap", out,
                     "--bundle", bundle)
        eq(rc, 0, f"replay: {err}")
        eq(oct(stat.S_IMODE(os.stat(out).st_mode)), oct(0o600), "capture mode")
        for name in ("events.jsonl", "meta.json"):
            eq(oct(stat.S_IMODE(os.stat(os.path.join(bundle, name)).st_mode)), oct(0o600),
               f"--bundle {name} mode")
    finally:
        os.umask(old)


try:
    run(timeout=120)
finally:
    shutil.rmtree(TMP, ignore_errors=True)
