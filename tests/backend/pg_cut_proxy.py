"""A TCP proxy in front of a real PostgreSQL that can make one COMMIT *ambiguous*: it
forwards the COMMIT, lets the server commit it, and then closes the client's connection
instead of passing the answer on. That is what a client sees when the primary shuts
down (a failover) between committing and answering: an error for a transaction that is
committed (issue 16's ambiguous-commit hazard)."""

from __future__ import annotations

import socket
import struct
import threading

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


class CommitCutProxy:
    """``arm()`` cuts the next COMMIT that ends a transaction which wrote DuckLake's
    snapshot table: after the server committed it (``land=True``: ambiguous), before the
    server saw it (``land=False``: the transaction aborts with the connection), or just
    after sending it on (``land="sent"``: the server may still be committing);
    ``cut`` tells whether it happened. ``queries`` keeps the simple-protocol query texts
    seen (for diagnostics)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.land = True
        self.sever_on_cut = False
        self.cut = threading.Event()
        self.queries: list[str] = []
        self.severed = threading.Event()   # the catalog is "down": every connection refused
        self._conns: list[_Conn] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, land: bool = True, sever: bool = False) -> None:
        """``sever``: the catalog stays down after the cut (until ``restore()``)."""
        self.land, self.sever_on_cut = land, sever
        self.cut.clear()
        self.armed.set()

    def sever(self) -> None:
        """Close every connection and refuse new ones (a catalog that is down), until
        ``restore()``."""
        self.severed.set()
        for conn in list(self._conns):
            conn._shut()

    def restore(self) -> None:
        self.severed.clear()

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    # ---- plumbing

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.severed.is_set():
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            conn = _Conn(self, client, server)
            self._conns.append(conn)
            threading.Thread(target=conn.client_to_server, daemon=True).start()
            threading.Thread(target=conn.server_to_client, daemon=True).start()


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class _Conn:
    def __init__(self, proxy: CommitCutProxy, client: socket.socket, server: socket.socket):
        self.proxy, self.client, self.server = proxy, client, server
        self.wrote_snapshot = False
        self.cutting = threading.Event()

    def _shut(self) -> None:
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def client_to_server(self) -> None:
        try:
            untyped = True
            while True:
                if untyped:                      # SSL/GSS request or the startup message
                    head = _read_exact(self.client, 8)
                    length, code = struct.unpack("!ii", head)
                    msg = head + _read_exact(self.client, length - 8)
                    self.server.sendall(msg)
                    if code not in (SSL_REQUEST, GSS_REQUEST):
                        untyped = False
                    continue
                head = _read_exact(self.client, 5)
                kind, length = head[:1], struct.unpack("!i", head[1:])[0]
                body = _read_exact(self.client, length - 4)
                if kind == b"Q":
                    text = body.rstrip(b"\0").decode("utf-8", "replace")
                    self.proxy.queries.append(text)
                    if text.lstrip().upper().startswith("BEGIN"):   # a transaction starts
                        self.wrote_snapshot = False
                    if "ducklake_snapshot" in text and "INSERT" in text.upper():
                        self.wrote_snapshot = True
                    if (self.proxy.armed.is_set() and self.wrote_snapshot
                            and text.strip().upper().rstrip(";").endswith("COMMIT")):
                        self.proxy.armed.clear()
                        if not self.proxy.land:     # the server never sees the COMMIT
                            self.proxy.cut.set()
                            if self.proxy.sever_on_cut:
                                self.proxy.sever()
                            self._shut()
                            return
                        self.cutting.set()
                        if self.proxy.land == "sent":   # forwarded, then cut at once
                            self.server.sendall(head + body)
                            self.proxy.cut.set()
                            self._shut()
                            return
                self.server.sendall(head + body)
        except (ConnectionError, OSError):
            self._shut()

    def server_to_client(self) -> None:
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                if self.cutting.is_set():
                    # the server has answered the COMMIT: it is committed. The client
                    # never hears so.
                    self.proxy.cut.set()
                    if self.proxy.sever_on_cut:
                        self.proxy.sever()
                    self._shut()
                    return
                self.client.sendall(data)
        except (ConnectionError, OSError):
            self._shut()
