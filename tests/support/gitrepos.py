"""Building real git repositories for tests: commits, branches, tags (lightweight,
annotated, signed), submodules, arbitrary refs such as ``refs/pull/1/head``, empty repos.

Each repository is a bare ``<name>.git`` under a project root that the test git servers
serve, plus a private work clone the helpers commit from and push with plain git.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 60.0


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GNUPGHOME", "SSH_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_AUTHOR_NAME="Headwater Test",
        GIT_AUTHOR_EMAIL="test@headwater.invalid",
        GIT_COMMITTER_NAME="Headwater Test",
        GIT_COMMITTER_EMAIL="test@headwater.invalid",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = GIT_TIMEOUT,
) -> str:
    """Run a command, raising with its stderr when it fails."""
    proc = subprocess.run(
        list(args),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode()


@dataclass
class GpgKey:
    """A signing key in its own GNUPGHOME (short path: gpg's socket path limit is ~100)."""

    home: Path
    fingerprint: str
    public_armored: bytes

    @classmethod
    def create(cls, uid: str = "Headwater Test <test@headwater.invalid>") -> GpgKey:
        home = Path(tempfile.mkdtemp(prefix="hw-gpg-"))
        gpg = ["gpg", "--batch", "--no-tty", "--homedir", str(home)]
        run(
            [
                *gpg,
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-generate-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ]
        )
        listing = run([*gpg, "--with-colons", "--list-secret-keys"])
        fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
        public = run([*gpg, "--armor", "--export", fpr]).encode()
        return cls(home=home, fingerprint=fpr, public_armored=public)

    def private_armored(self) -> bytes:
        """The private key, armored: what a signing-key Secret's `git.asc` holds."""
        gpg = ["gpg", "--batch", "--no-tty", "--homedir", str(self.home)]
        args = ["--pinentry-mode", "loopback", "--passphrase", "", "--armor"]
        return run([*gpg, *args, "--export-secret-keys", self.fingerprint]).encode()

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)


class Repo:
    """One repository: `bare` is what servers serve, `work` is where commits are made."""

    def __init__(self, project_root: Path, name: str, *, default_branch: str = "master") -> None:
        self.name = name
        self.project_root = project_root
        self.bare = project_root / f"{name}.git"
        self.default_branch = default_branch
        self.home = Path(tempfile.mkdtemp(prefix="hw-repo-home-"))
        self.work = self.home / "work"
        self.env = _base_env(self.home)
        run(["git", "init", "-q", "--bare", "-b", default_branch, str(self.bare)], env=self.env)
        run(["git", "init", "-q", "-b", default_branch, str(self.work)], env=self.env)
        self.git("remote", "add", "origin", str(self.bare))

    def git(self, *args: str, gpg: GpgKey | None = None) -> str:
        env = dict(self.env)
        if gpg is not None:
            env["GNUPGHOME"] = str(gpg.home)
        return run(["git", *args], cwd=self.work, env=env).strip()

    def _checkout_branch(self, branch: str) -> None:
        current = self.git("symbolic-ref", "--short", "-q", "HEAD") if self._has_head() else ""
        if current == branch:
            return
        exists = self.git("branch", "--list", branch)
        if exists:
            self.git("checkout", "-q", branch)
        elif self._has_head():
            self.git("checkout", "-q", "-b", branch)
        else:
            self.git("checkout", "-q", "--orphan", branch)

    def _has_head(self) -> bool:
        try:
            self.git("rev-parse", "-q", "--verify", "HEAD")
        except RuntimeError:
            return False
        return True

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str = "change",
        *,
        branch: str | None = None,
        sign: GpgKey | None = None,
        executable: Sequence[str] = (),
        push: bool = True,
    ) -> str:
        """Write `files` (None deletes), commit on `branch`, push; returns the commit id."""
        branch = branch or self.default_branch
        self._checkout_branch(branch)
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                self.git("rm", "-q", "-r", "--", rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            path.chmod(0o755 if rel in executable else 0o644)
            self.git("add", "--", rel)
        args = ["commit", "-q", "--allow-empty", "-m", message]
        if sign is not None:
            args = ["-c", "gpg.program=gpg", "-c", f"user.signingkey={sign.fingerprint}", *args]
            args.append("-S")
        self.git(*args, gpg=sign)
        if push:
            self.git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD")

    def symlink(self, rel: str, target: str, *, branch: str | None = None) -> str:
        """Commit a symlink `rel` -> `target`."""
        self._checkout_branch(branch or self.default_branch)
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        self.git("add", "--", rel)
        self.git("commit", "-q", "-m", f"symlink {rel}")
        self.git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{self._current()}")
        return self.git("rev-parse", "HEAD")

    def _current(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD")

    def tag(
        self,
        name: str,
        target: str = "HEAD",
        *,
        annotated: bool = False,
        sign: GpgKey | None = None,
        message: str | None = None,
    ) -> str:
        """Create and push a tag; returns the commit it points at."""
        args = ["tag"]
        if sign is not None:
            args = ["-c", "gpg.program=gpg", "-c", f"user.signingkey={sign.fingerprint}", "tag"]
            args += ["-s", "-m", message or name]
        elif annotated:
            args += ["-a", "-m", message or name]
        self.git(*args, name, target, gpg=sign)
        self.git("push", "-q", "--force", "origin", f"refs/tags/{name}:refs/tags/{name}")
        return self.git("rev-parse", f"{name}^{{commit}}")

    def set_ref(self, ref: str, commit: str) -> None:
        """Point an arbitrary ref of the served repository (e.g. refs/pull/1/head) at commit."""
        self.git("push", "-q", "--force", "origin", f"{commit}:{ref}")

    def delete_branch(self, branch: str) -> None:
        self.git("push", "-q", "origin", f":refs/heads/{branch}")

    def add_submodule(self, path: str, url: str, commit: str, *, branch: str | None = None) -> str:
        """Record submodule `path` at `commit` of `url` without cloning it; returns the commit.

        `url` may be relative (``../other.git``), resolved against the superproject's URL.
        """
        self._checkout_branch(branch or self.default_branch)
        gitmodules = self.work / ".gitmodules"
        existing = gitmodules.read_text() if gitmodules.exists() else ""
        gitmodules.write_text(existing + f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n')
        self.git("add", ".gitmodules")
        self.git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
        self.git("commit", "-q", "-m", f"submodule {path}")
        self.git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{self._current()}")
        return self.git("rev-parse", "HEAD")

    def head(self, branch: str | None = None) -> str:
        ref = f"refs/heads/{branch or self.default_branch}"
        return run(["git", "--git-dir", str(self.bare), "rev-parse", ref], env=self.env).strip()

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class RepoFactory:
    """Creates uniquely named repositories under one served project root."""

    def __init__(self, project_root: Path, prefix: str = "repo") -> None:
        self.project_root = project_root
        self.prefix = prefix
        self._count = 0
        self._repos: list[Repo] = []

    def _name(self, name: str | None) -> str:
        self._count += 1
        return name or f"{self.prefix}-{self._count}"

    def create(self, name: str | None = None, *, default_branch: str = "master") -> Repo:
        repo = Repo(self.project_root, self._name(name), default_branch=default_branch)
        self._repos.append(repo)
        return repo

    def empty(self, name: str | None = None) -> Path:
        """A bare repository with no commits at all; returns its path."""
        bare = self.project_root / f"{self._name(name)}.git"
        run(["git", "init", "-q", "--bare", str(bare)], env=_base_env(self.project_root))
        return bare

    def close(self) -> None:
        for repo in self._repos:
            repo.close()
