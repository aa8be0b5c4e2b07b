"""Breaking things on purpose: a TCP gate that can fail like a server does, figures, memory.

- `FaultGate`: a TCP front for a real server (a git server, a chat stand-in) on its own
  loopback port, switched at run time between passing bytes through (`pass_through`),
  refusing connections (`down`: nothing listens), accepting and then never answering
  (`stall`), answering every HTTP request with a status of its choice (`answer`), and
  passing HTTP answers on with a byte of each body flipped (`corrupt`).
- `figure(name, value)`: prints ``FIGURE name=value`` (what docs/reliability.md (Faults) is
  written from) and appends it to the file `HEADWATER_FIGURES` names, when set.
- `rss_kib(pid)`: the resident memory of a process and its children, from /proc.
- `shard(namespace)`: labels and environment for a controller instance of its own that
  reconciles only the test's objects (Flux's sharding key), so it can be killed freely.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.scaleout import SHARD_KEY

PASS, DOWN, STALL, ANSWER, CORRUPT = "pass", "down", "stall", "answer", "corrupt"


def figure(name: str, value: float | int | str, unit: str = "") -> None:
    """Report one measured figure: a parseable line on stdout, and a JSON line on file."""
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    print(f"FIGURE {name}={shown}{unit}", flush=True)
    target = os.environ.get("HEADWATER_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps({"name": name, "value": value, "unit": unit}) + "\n")


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and every descendant it has right now, in KiB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            if int(entry.name) == pid or _descends(int(entry.name), pid):
                total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


def _descends(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[-1].split()[1])
        if pid == ancestor:
            return True
        seen += 1
    return False


def shard(namespace: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(metadata with the shard label, env for a controller instance serving only it)."""
    env = {
        "HEADWATER_NAMESPACE": namespace,
        "HEADWATER_WATCH_LABEL_SELECTOR": f"{SHARD_KEY}={namespace}",
    }
    return {"labels": {SHARD_KEY: namespace}}, env


class FaultGate:
    """``with FaultGate(upstream_port) as gate:`` clients use `gate.port`; `gate.stall()`..."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = PASS
        self.status = 500
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._release = threading.Event()
        self._listener: socket.socket | None = None
        self.port = 0
        self._thread: threading.Thread | None = None

    # -- switching ---------------------------------------------------------------------

    def pass_through(self) -> None:
        self._set(PASS)

    def down(self) -> None:
        """Stop listening: connections are refused, as with a server that is not running."""
        self._set(DOWN)

    def stall(self) -> None:
        """Accept connections, read what comes, never answer."""
        self._set(STALL)

    def answer(self, status: int) -> None:
        """Answer every HTTP request with `status` (and close)."""
        self.status = status
        self._set(ANSWER)

    def corrupt(self) -> None:
        """Pass through, but flip a byte in every chunk of a response body."""
        self._set(CORRUPT)

    def _set(self, mode: str) -> None:
        with self._lock:
            previous, self.mode = self.mode, mode
            if previous == STALL:
                self._release.set()
            if mode == STALL:
                self._release = threading.Event()
            if mode == DOWN and self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            if mode != DOWN and self._listener is None and self.port:
                self._listen(self.port)

    # -- lifecycle ---------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = int(listener.getsockname()[1])

    def start(self) -> FaultGate:
        self._listen(0)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._release.set()
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultGate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                mode, release = self.mode, self._release
            threading.Thread(target=self._handle, args=(conn, mode, release), daemon=True).start()

    def _handle(self, conn: socket.socket, mode: str, release: threading.Event) -> None:
        with conn:
            if mode == STALL:
                conn.settimeout(0.5)
                while not release.is_set() and not self._stop.is_set():
                    try:
                        if conn.recv(65536) == b"":
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                return
            if mode == ANSWER:
                self._answer(conn)
                return
            self._pipe(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        body = f"injected failure {self.status}\n".encode()
        head = (
            f"HTTP/1.1 {self.status} Injected\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            conn.sendall(head + body)

    def _pipe(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            return
        in_body = False
        with upstream:
            sockets = [conn, upstream]
            while not self._stop.is_set():
                readable, _, _ = select.select(sockets, [], [], 0.5)
                if self.mode not in (PASS, CORRUPT):
                    return  # a new failure ends open connections too: clients reconnect into it
                corrupt = self.mode == CORRUPT
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if corrupt and sock is upstream:
                        data, in_body = _flip(data, in_body)
                    (upstream if sock is conn else conn).sendall(data)


def _flip(data: bytes, in_body: bool) -> tuple[bytes, bool]:
    """Flip one byte of the body part of `data`; returns it and whether the body began."""
    start = 0
    if not in_body:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return data, False
        start, in_body = head_end + 4, True
    if start >= len(data):
        return data, in_body
    middle = start + (len(data) - start) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :], in_body


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as took:`` then ``took[0]`` is the seconds the block ran."""
    took: list[float] = []
    start = time.monotonic()
    try:
        yield took
    finally:
        took.append(time.monotonic() - start)
