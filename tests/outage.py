"""Outages of a shared service, staged on a port of the test's own in front of it."""

from __future__ import annotations

import contextlib
import socket
import threading


class Outage:
    """A port in front of a server (`upstream`: its host and port) that goes down (refusing
    connections and cutting the live ones, as a restart or failover does) and comes back, or
    freezes (what is sent is taken and nothing answered, as by a server whose process stopped
    while its kernel still runs TCP) and thaws. The server itself is never touched."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.links: list[socket.socket] = []
        self.stop = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()
        self.thread: threading.Thread | None = None
        # While down, the port stays bound without listening (refused, as a closed port), so
        # no other socket takes it meanwhile as its local port.
        self.reserved: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.stop.clear()
        if self.reserved is not None:
            self.reserved.close()
            self.reserved = None
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port
        server.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
        self.thread.start()

    def down(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(5)
        for link in self.links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()
        self.links.clear()
        self.reserved = socket.socket()
        self.reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.reserved.bind(("127.0.0.1", self.port))

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def __enter__(self) -> Outage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.stop.is_set():
            self.down()
        if self.reserved is not None:
            self.reserved.close()

    def _serve(self, server: socket.socket) -> None:
        with server:
            while not self.stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.upstream)
                self.links += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while not self.flowing.wait(0.1):
                    if self.stop.is_set():
                        return
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
