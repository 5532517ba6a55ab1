"""A TCP forwarder on loopback that can lose one direction of traffic, for tests of messages that
never arrive (tests/e2e): what the connecting side sends vanishes while ``lose_upstream`` is
set, as on a network that fails one way, and the answers still flow back."""
from __future__ import annotations

import socket
import threading


class LossyProxy:
    """Listens on ``self.port`` (127.0.0.1) and forwards every connection to ``target_port``.

    ``lose_upstream``: while True, bytes from the connecting side are read and dropped.
    ``drop_connections()`` closes the current connections (unread bytes are discarded);
    ``close()`` stops listening too. Threads are daemons and every blocking call ends when its
    socket is closed."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.lose_upstream = False
        self.lost_bytes = 0
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return   # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if upstream and self.lose_upstream:
                self.lost_bytes += len(data)
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        self._close(src, dst)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def drop_connections(self) -> None:
        with self._lock:
            socks, self._sockets = self._sockets, []
        self._close(*socks)

    def close(self) -> None:
        self._close(self._listener)
        self.drop_connections()
