"""The benchmark's CPU figure (issue 28 item 3) counts what it says: the CPU of a process tree,
children included (also after they exit), and finds a server by the port it listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from bench import cpu

BURN = ("import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass'])\n"
        "child.wait()\n"
        "time.sleep(30)\n")


def test_a_trees_cpu_includes_a_child_that_has_exited():
    parent = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        start = cpu.tree_seconds([parent.pid])
        deadline = time.monotonic() + 20
        while cpu.tree_seconds([parent.pid]) - start < 0.5:  # the child burns 0.6 s, then ends
            assert time.monotonic() < deadline, "the child's CPU was never counted"
            time.sleep(0.1)
        time.sleep(1.0)  # the child is gone and reaped: its time is now the parent's cutime
        assert len(subprocess.run(["ps", "--ppid", str(parent.pid), "-o", "pid="],
                                  capture_output=True, text=True).stdout.split()) == 0
        assert 0.5 <= cpu.tree_seconds([parent.pid]) - start < 2.0
        assert cpu.tree_seconds([]) == 0
    finally:
        parent.kill()
        parent.wait()


def test_the_listener_of_a_port_is_found():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert cpu.listener(port) == os.getpid()
    assert cpu.listener(port) is None
    assert cpu.per_thousand(2.0, 4000) == 0.5 and cpu.per_thousand(1.0, 0) is None
