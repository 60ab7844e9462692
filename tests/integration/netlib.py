"""netlib.py: what a two-host run leaves behind, for the leak checks.

Shared by test_net.py, test_syn_flood.py and test_time_wait.py: the address
lease a run holds, the network namespaces and links that exist, and which
processes hold a namespace (for a failure message)."""
import glob
import os
import subprocess

from tap import Skip


def host_links():
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def lease_names():
    with open("/proc/net/unix") as f:
        return {line.split()[-1] for line in f if "@socklab-net-" in line}


def lease_of(first):
    """The address lease a run holds: block k of 198.18.0.0/15 is @socklab-net-k.
    Only this one is checked, since other runs on the machine (another test
    suite, a container sharing the host's network) hold leases of their own."""
    a, b, c, d = (int(x) for x in first["network"]["subnet"].split("."))
    return f"@socklab-net-{((a << 24 | b << 16 | c << 8 | d) - (198 << 24 | 18 << 16)) // 4}"


def net_inodes(pattern):
    found = set()
    for link in glob.glob(pattern):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("net:["):
            found.add(target)
    return found


def holders(inodes):
    """Which processes hold any of these namespaces (pid: command line), for a
    failure message: a namespace inode freed with the run can be given to
    another process's new namespace at once."""
    out = {}
    for link in glob.glob("/proc/[0-9]*/task/*/ns/net") + glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(link) in inodes:
                pid = link.split("/")[2]
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out[pid] = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            continue
    return out


def root():
    if os.geteuid() != 0:
        raise Skip("needs root (namespaces and the capture)")
