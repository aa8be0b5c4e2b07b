"""A real server (sshd, docker-registry, ...) as a child process of the tests: started on
a freshly picked port, retried when another process took that port first, its output in
a log file the failure messages quote, and stopped for good or for a restart."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

START_ATTEMPTS = 3  # a freshly picked free port can be taken by someone else


class ServerProcess:
    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(
        self,
        prepare: Callable[[], Sequence[str]],
        ready: Callable[[subprocess.Popen[bytes]], None],
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start the command `prepare()` returns (it picks the port and writes the
        config each attempt) and wait with `ready(proc)`, which raises RuntimeError
        while the server is not usable."""
        last_error: Exception | None = None
        for _ in range(START_ATTEMPTS):
            command = list(prepare())
            self._log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                command,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
            try:
                ready(self.proc)
                return
            except RuntimeError as exc:
                last_error = exc
                self.terminate()
        raise RuntimeError(f"{self.name} did not start: {last_error}; log: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
