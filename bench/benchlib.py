"""Helpers shared by bench/run, bench/run-rdma and bench/run-tcp.

Sizes ("4K", "1M"), min/median/max, the JSON line a tool prints, markdown
tables, page-cache test files, child processes stopped by their own PID, and
matplotlib on a display-less backend. Plain functions: each script keeps its
own error type and its own messages.
"""
import json
import os
import signal
import statistics
import subprocess

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def parse_size(text):
    """'4K' -> 4096, '1M', '2G'; a bare number is bytes."""
    mult = {"K": KIB, "M": MIB, "G": GIB}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text)


def size_name(n):
    """The shortest exact name of n bytes: 4096 -> '4K', 1000 -> '1000'."""
    for unit, mult in (("G", GIB), ("M", MIB), ("K", KIB)):
        if n >= mult and n % mult == 0:
            return "%d%s" % (n // mult, unit)
    return str(n)


def stats(values):
    """(min, median, max) of a non-empty list."""
    return min(values), statistics.median(values), max(values)


def tail(text, n=15):
    """The last n lines of text, for an error message."""
    return "\n".join(text.strip().splitlines()[-n:])


def first_json(text):
    """The first line of text that starts with '{', parsed; None when there is none."""
    for line in text.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    return None


def md_table(header, rows):
    """A markdown table: one header row, then one row per sequence of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def make_file(path, size):
    """Writes size random bytes to path, every MiB different (no reader can dedupe them)."""
    with open(path, "wb") as f:
        chunk = bytearray(os.urandom(MIB))
        for i in range(size // MIB):
            chunk[0] = i & 0xFF
            f.write(chunk)
        f.write(chunk[: size % MIB])


def port_listens(port):
    """Whether some socket listens on TCP port `port` (ss, so no connection is made)."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    return bool(out.strip())


def terminate(proc, grace=10, kill_note=None):
    """Stops a child we started, by its own PID: SIGTERM, then SIGKILL after `grace` seconds.
    kill_note, when given, is printed (with '%d' for the PID) before the SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if kill_note:
            print(kill_note % proc.pid, flush=True)
        proc.kill()
        proc.wait()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed); raises what the import raises."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
