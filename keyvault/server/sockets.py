"""The sockets `keyvault serve` listens on, made by KeyVault rather than granian: one per
worker where the kernel hands a stopping socket's queue to the others, else one shared."""

from __future__ import annotations

import os
from pathlib import Path

from .workers import WORKER_INDEX

MIGRATE_REQUESTS = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def kernel_migrates_requests() -> bool:
    """net.ipv4.tcp_migrate_req=1: a closing SO_REUSEPORT socket hands its queued connections
    to the others of its group instead of resetting them (Linux 5.14+)."""
    try:
        return MIGRATE_REQUESTS.read_text().strip() == "1"
    except OSError:
        return False


def per_worker_sockets(mode: str) -> bool:
    """KEYVAULT_LISTEN_SOCKETS: `per-worker`, `shared`, or `auto` (per-worker where the kernel
    migrates a stopping socket's queue, else shared). Why it matters: _server_class."""
    return mode == "per-worker" or (mode == "auto" and kernel_migrates_requests())


def _listening_socket(host: str, port: int, backlog: int, reuse_port: bool):
    """A listening TCP socket that hands a connection over only once its request has arrived
    (TCP_DEFER_ACCEPT). That matters when a worker stops: granian then closes the connections
    it has accepted but not yet read a byte from (hyper's graceful shutdown), and without this a
    client that had just connected lost its request."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _server_class(per_worker: bool):
    """granian's server, listening one of two ways, on sockets KeyVault makes (_listening_socket).

    Per worker: each worker accepts from a SO_REUSEPORT socket of its own, and the kernel
    spreads new connections over them evenly. But when a worker stops, as SIGHUP's rolling
    restart makes each old one do, the kernel resets the connections queued on its socket,
    unless net.ipv4.tcp_migrate_req=1 moves them to the others. The socket is made in the main
    process just before the worker is forked, and the main process lets go of its copy once the
    worker has it, so the socket closes (and its queue moves on) when the worker stops.

    Shared: one socket that every worker accepts from. A stopping worker only stops taking
    connections, and the rest take what is queued: a restart loses nothing without the sysctl.
    But whichever worker is awake first takes a burst of new connections, and keep-alive
    clients then stay with it: on the bench, 32 connections split 32/0 in some runs, leaving a
    core idle (bench/README.md). tests/test_server.py holds both to account.
    """
    import socket

    from granian._granian import SocketHolder
    from granian.server import Server

    class KeyVaultServer(Server):
        def _init_shared_socket(self):
            if self.bind_uds:
                return super()._init_shared_socket()
            self._ssp = self._shd = self._sso = None
            if not per_worker:
                self._hold(_listening_socket(self.bind_addr, self.bind_port, self.backlog,
                                             reuse_port=False))

        def _hold(self, sock: socket.socket) -> None:
            self._sso, self._sfd = sock, sock.fileno()
            self._shd = SocketHolder(self._sfd, False, self.backlog)

        def _spawn_worker(self, idx, target, callback_loader):
            sock = None
            if per_worker and not self.bind_uds:
                sock = _listening_socket(self.bind_addr, self.bind_port, self.backlog,
                                         reuse_port=True)
                self._hold(sock)
            worker = super()._spawn_worker(idx, target, callback_loader)
            if sock is not None:
                self._ssp = self._shd = self._sso = None
            start = worker.start

            def start_and_let_go():
                os.environ[WORKER_INDEX] = str(idx)  # the fork copies it (_pin)
                try:
                    start()  # forks: the worker has its copy of the socket
                finally:
                    if sock is not None:
                        sock.close()

            worker.start = start_and_let_go
            return worker

    return KeyVaultServer
