"""Running git (through GitPython) hermetically, under a deadline, with scrubbed errors."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from git.cmd import Git

from controllers.toolkit.git.errors import (
    AuthenticationError,
    EmptyRepositoryError,
    GitOperationError,
    SourceError,
)
from controllers.toolkit.git.redact import scrub_text

# Stderr fragments that mean the server (or our own key/host checks) refused us.
_AUTH_PATTERNS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "returned error: 401",
    "returned error: 403",
    "permission denied (publickey",
    "host key verification failed",
    "no matching host key type",
    "incorrect passphrase",
    "load key",
    "invalid format",
    "too many authentication failures",
)
# The proxy (spec.proxySecretRef) refused us: 407 to a request, or to CONNECT for https.
_PROXY_AUTH_PATTERNS = ("returned error: 407", "http code 407")
_EMPTY_PATTERNS = ("appear to have cloned an empty repository", "remote repository is empty")
_TIMEOUT_MARK = "Timeout: the command"
_FALSE = shutil.which("false") or "/bin/false"
_ENV = shutil.which("env") or "/usr/bin/env"
# Ambient git variables we keep: the deployment's choice of trusted CAs.
_KEEP_AMBIENT = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"})


class Deadline:
    """One overall budget (spec.timeout) shared by every git command of a reconcile."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self, what: str) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise GitOperationError(f"{what}: timeout of {self.seconds:g}s exceeded")
        return left


def base_config(timeout: float) -> list[tuple[str, str]]:
    """Config every git command gets, whatever the credentials.

    Only http(s) and ssh transports are allowed, so a submodule cannot point git at local
    files (file://) or run a helper (ext::); hooks and background gc never run.
    """
    return [
        ("protocol.allow", "never"),
        ("protocol.http.allow", "always"),
        ("protocol.https.allow", "always"),
        ("protocol.ssh.allow", "always"),
        ("core.hooksPath", "/dev/null"),
        ("core.fsmonitor", "false"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("advice.detachedHead", "false"),
        ("fetch.recurseSubmodules", "false"),
        ("init.defaultBranch", "master"),
        # A stalled transfer counts as failed well before the overall deadline kills it.
        ("http.lowSpeedLimit", "1"),
        ("http.lowSpeedTime", str(max(5, int(timeout)))),
    ]


def hermetic_env(home: Path, config: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Environment for git: no system/global config, no prompts, our config via GIT_CONFIG_*.

    Config goes through the environment, not argv, because argv is world-readable in /proc.
    """
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_PARAMETERS": "",
        "GIT_TERMINAL_PROMPT": "0",
        # A failing askpass makes git give up instead of falling back to SSH_ASKPASS.
        "GIT_ASKPASS": _FALSE,
        "SSH_ASKPASS": "",
        "GIT_SSH_VARIANT": "ssh",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _summary(stderr: str) -> str:
    """The lines of git's stderr worth showing: the telling ones first, then fatal/error."""
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip()
        and "askpass" not in ln.lower()
        and not ln.startswith(("Please make sure", "and the repository exists"))
    ]
    patterns = _AUTH_PATTERNS + _PROXY_AUTH_PATTERNS + _EMPTY_PATTERNS
    telling = [ln for ln in lines if any(p in ln.lower() for p in patterns)]
    rest = [ln for ln in lines if ln not in telling and re.match(r"^(fatal|error|remote):", ln)]
    return "; ".join(((telling + rest) or lines)[:3]) or "no output"


def classify(stderr: str) -> type[SourceError]:
    low = stderr.lower()
    if any(p in low for p in _EMPTY_PATTERNS):
        return EmptyRepositoryError
    if any(p in low for p in _AUTH_PATTERNS + _PROXY_AUTH_PATTERNS):
        return AuthenticationError
    return GitOperationError


class GitRunner:
    """Runs git commands for one source: shared env, deadline and secrets to scrub."""

    def __init__(
        self,
        env: Mapping[str, str],
        deadline: Deadline,
        *,
        where: str,
        secrets: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        self.deadline = deadline
        self.where = where
        self.secrets = tuple(secrets)

    def _command(self, args: Sequence[str]) -> list[str]:
        # GitPython starts from our own environment; ambient GIT_* variables we do not set
        # (GIT_SSL_NO_VERIFY, GIT_DIR, GIT_SSL_CERT, ...) are removed by name via env(1).
        drop = sorted(
            name
            for name in os.environ
            if name.startswith("GIT_") and name not in self.env and name not in _KEEP_AMBIENT
        )
        if not drop:
            return ["git", *args]
        return [_ENV, *(f"--unset={name}" for name in drop), "git", *args]

    def _execute(self, args: Sequence[str], what: str, cwd: Path | None) -> tuple[int, str, str]:
        timeout = self.deadline.remaining(what)
        # Commands without a repository run from "/": our own cwd may be gone or be a repo.
        status, stdout, stderr = Git(str(cwd) if cwd else "/").execute(
            self._command(args),
            env=dict(self.env),
            kill_after_timeout=timeout,
            with_extended_output=True,
            with_exceptions=False,
            strip_newline_in_stdout=False,
        )
        out = stdout if isinstance(stdout, str) else stdout.decode("utf-8", "replace")
        err = stderr if isinstance(stderr, str) else stderr.decode("utf-8", "replace")
        if status != 0 and err.startswith(_TIMEOUT_MARK):
            raise GitOperationError(f"{what} for '{self.where}' timed out after {timeout:.0f}s")
        return status, out, err

    def run_status(
        self, args: Sequence[str], *, what: str, cwd: Path | None = None
    ) -> tuple[int, str]:
        """Run ``git <args>`` where failing is an answer: (exit status, stderr)."""
        status, _, err = self._execute(args, what, cwd)
        return status, err

    def run(self, args: Sequence[str], *, what: str, cwd: Path | None = None) -> str:
        """Run ``git <args>``; stdout on success, a typed SourceError otherwise."""
        status, out, err = self._execute(args, what, cwd)
        if status == 0:
            return out
        kind = classify(err)
        why = _summary(err)
        if any(p in err.lower() for p in _PROXY_AUTH_PATTERNS):
            why = f"the proxy (spec.proxySecretRef) refused its credentials: {why}"
        elif kind is AuthenticationError:
            why = f"credentials missing or refused: {why}"
        raise kind(scrub_text(f"{what} for '{self.where}' failed: {why}", self.secrets))
