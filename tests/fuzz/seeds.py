"""tests/fuzz/seeds.py NAME DIR: write the seed inputs of fuzz target NAME into DIR."""
import json
import os
import struct
import sys

name, out = sys.argv[1], sys.argv[2]
seeds = {}

if name == "fuzz_decode":
    # Every golden case (first byte: the link type, see fuzz_decode.c).
    src = "tests/data/decode"
    links = {"ethernet": 0, "raw": 1, "linux-sll": 2, "ipv4": 3, "ipv6": 4}
    for f in sorted(os.listdir(src)):
        if not f.endswith(".hex"):
            continue
        link, data = 0, b""
        for line in open(os.path.join(src, f)):
            if line.startswith("# link: "):
                link = links[line[8:].strip()]
            elif not line.startswith("#"):
                data += bytes.fromhex(line)
        seeds[f[:-4]] = bytes([link]) + data

elif name == "fuzz_framing":
    # First byte: format (bit 0) and piece size; then framed messages.
    def frame(fmt, index, body):
        hdr = json.dumps({"total_size": len(body), "index": index}).encode()
        pre = struct.pack("!I", len(hdr)) if fmt == 0 else struct.pack("<i", len(hdr))
        return pre + hdr + body
    for fmt in (0, 1):
        two = frame(fmt, 0, b"hello") + frame(fmt, 1, b"")
        seeds[f"two-{fmt}"] = bytes([fmt | (3 << 1)]) + two
        seeds[f"cut-{fmt}"] = bytes([fmt]) + two[:-3]
        seeds[f"long-{fmt}"] = bytes([fmt | (7 << 1)]) + frame(fmt, 9, bytes(range(256)) * 4)
    seeds["negative"] = b"\x01" + struct.pack("<i", -5) + b"{}"
    seeds["not-json"] = b"\x00" + struct.pack("!I", 3) + b"abc"
    seeds["no-size"] = b"\x00" + struct.pack("!I", 2) + b"{}"

elif name == "fuzz_params":
    # First byte: the lab (low 7 bits) and JSON (bit 7).
    seeds["echo-kv"] = b"\x00messages=5\nsize=64\ntext=hi\nserver_style=concurrent\nclients=2"
    seeds["echo-json"] = b"\x80" + json.dumps({"messages": 5, "mode": "both", "text": "h\u00e9"}).encode()
    seeds["ping-kv"] = b"\x01count=3\nnetwork=two-hosts\nc2s_loss_pct=10"
    seeds["sticky-kv"] = b"\x02nodelay=true\nmessages=4"
    seeds["hs-kv"] = b"\x03scenario=data-close\ndata=5"
    seeds["hs-json"] = b"\x83" + json.dumps({"scenario": "abort", "observe_ms": 0}).encode()
    seeds["layers"] = b"\x04"
    seeds["own"] = b"\x05"
    seeds["bad"] = b"\x00messages=\t5\ntext=\xed\xa0\x80\nnope=1\n=\nx"

elif name == "fuzz_pcap":
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp
    for magic, prec in ((0xa1b2c3d4, "us"), (0xa1b23c4d, "ns")):
        head = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        rec = struct.pack("<IIII", 1, 0, len(eth), len(eth)) + eth
        seeds[f"eth-{prec}"] = head + rec + rec
    raw = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 101)
    seeds["raw-ip"] = raw + struct.pack("<IIII", 1, 0, len(ip + tcp), len(ip + tcp)) + ip + tcp
    seeds["cut"] = seeds["eth-us"][:-7]
    # A pcapng file: section header, interface description, one enhanced packet.
    shb = struct.pack("<IIIHHq", 0x0a0d0d0a, 28, 0x1a2b3c4d, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 65535) + struct.pack("<I", 20)
    pad = (4 - len(eth) % 4) % 4
    blen = 32 + len(eth) + pad
    epb = struct.pack("<IIIIIII", 6, blen, 0, 0, 0, len(eth), len(eth)) + eth + b"\0" * pad + struct.pack("<I", blen)
    seeds["pcapng"] = shb + idb + epb

elif name == "fuzz_ws":
    # NUL-separated messages of one session (see fuzz_ws.c).
    def msgs(*ms):
        return b"\0".join(json.dumps(m).encode() if not isinstance(m, bytes) else m for m in ms)
    seeds["ping"] = msgs({"op": "ping", "tag": "t"})
    seeds["run"] = msgs({"op": "run", "lab": "tcp-echo", "params": {"messages": 3, "size": 8}},
                        {"op": "run", "lab": "handshake", "params": {}, "pcap": "AAAA"})
    seeds["bad"] = msgs(b"{", b"[]", {"op": 5}, {"op": "ping", "tag": 1}, b"")
    seeds["class"] = msgs({"op": "signin", "secret": "fuzz-secret-1"}, {"op": "class.open"},
                          {"op": "class.view", "paused": True, "pos": 3, "speed": 2},
                          {"op": "class.run", "lab": "tcp-echo", "params": {}},
                          {"op": "class.end"})
    seeds["join"] = msgs({"op": "class.join", "class": "ABCDEF", "name": "Ann"},
                         {"op": "class.leave"}, {"op": "watch", "run": "0123456789abcdef"},
                         {"op": "cancel", "run": "0123456789abcdef"})

else:
    sys.exit(f"seeds.py: no seeds for {name}")

os.makedirs(out, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(out, k), "wb") as f:
        f.write(v)
