"""CPU seconds a request costs (issue 28 item 3): every process involved, not the load generator.

A figure that carries over to another machine where throughput does not: on this one the
database shares two cores with the server and wrk, so requests a second mostly say who won the
cores; CPU seconds per 1,000 requests say what each request costs whoever runs it.

What is counted around a wrk run (`Processes.seconds` before and after): the server's process
tree (granian's main process and its workers), and, when given, the PostgreSQL server (the
postmaster that listens on the database's port, with every backend) and a redis-server. From
/proc/<pid>/stat: each live process's user and system time, plus what its exited children
used (cutime, cstime), so a PostgreSQL backend that ends during the run is still counted.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks of the process and its reaped children), None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after "pid (comm)": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based
    return int(fields[1]), sum(int(tick) for tick in fields[11:15])


def tree_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the processes `roots` and all their descendants."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = found
    below: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        below.setdefault(parent, []).append(pid)
    ticks, seen, todo = 0, set(), [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ticks += table[pid][1]
        todo.extend(below.get(pid, ()))
    return ticks / TICKS


def listener(port: int) -> int | None:
    """The process listening on TCP `port` (IPv4 or IPv6), e.g. a PostgreSQL postmaster; None
    when none is found (another user's process, without the right to read its descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


class Processes:
    """The processes whose CPU a run is charged: roots of process trees."""

    def __init__(self, roots: list[int]):
        self.roots = [pid for pid in roots if pid is not None]

    def seconds(self) -> float:
        return tree_seconds(self.roots)


def per_thousand(seconds: float, requests: int) -> float | None:
    """CPU seconds per 1,000 requests (= CPU milliseconds per request)."""
    return seconds * 1000 / requests if requests else None
