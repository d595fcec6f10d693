"""An HTTP server on loopback run in a thread, for the fixtures of every folder (imported by
conftests and tests), that leaves no thread behind when stopped.

``ThreadingHTTPServer`` serves each connection in a daemon thread and its ``server_close`` does
not wait for those: a client that keeps its connection open (an httpx client not yet closed, a
keep-alive pool) keeps a handler thread reading after the test is over. `LoopbackHTTPServer.stop`
ends those connections as a real server does at shutdown and joins their threads.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        """``port``: 0 for a free one; a given one to come back where a stopped server was."""
        super().__init__(("127.0.0.1", port), handler)
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._handlers: list[threading.Thread] = []
        self._serving: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._connections.add(request)
            self._handlers = [t for t in self._handlers if t.is_alive()]
            self._handlers.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def start(self, poll_interval: float = 0.05) -> None:
        self._serving = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )
        self._serving.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end the connections still open and wait for every thread."""
        if self._serving is not None:
            self.shutdown()
            self._serving.join(timeout)
        self.server_close()
        with self._lock:
            connections, handlers = list(self._connections), list(self._handlers)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # the handler reading it sees the end and returns
            except OSError:
                pass  # closed by its handler meanwhile
        for thread in handlers:
            thread.join(timeout)
