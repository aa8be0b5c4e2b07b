"""Check out, commit and push for an ImageUpdateAutomation, through the toolkit's git wing.

The same credentials code as a GitRepository's fetch (`toolkit/git/credentials.py`):
the Secret's basic auth, bearer token, CA, mTLS or SSH key reach git through a private
temporary directory and the environment, never argv. `prepare` checks the ref out
(depth 1) into a work tree the caller edits; `commit_and_push` commits what changed
(signed with the Secret's OpenPGP key when configured) and pushes every destination in
one `git push --atomic`, so either every ref moves or none does: a rejected push (a
protected branch, a pre-receive hook saying no) leaves the remote as it was.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controllers.toolkit.git.checkout import Checkout, fetch
from controllers.toolkit.git.credentials import GitAuth, ProxyConfig, git_environment
from controllers.toolkit.git.errors import GitOperationError, SourceError
from controllers.toolkit.git.gitexec import Deadline, GitRunner
from controllers.toolkit.git.gitref import HEADS, GitRef
from controllers.toolkit.git.giturl import GitURL

GPG = shutil.which("gpg") or "/usr/bin/gpg"
GPGCONF = shutil.which("gpgconf") or "/usr/bin/gpgconf"


class SigningError(SourceError):
    reason = "InvalidSigningKey"
    stalled = False


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class SigningKey:
    armored: bytes
    passphrase: str | None = None


@dataclass(frozen=True)
class Pushed:
    commit: str
    destinations: tuple[str, ...]  # remote refs that now point at `commit`


def prepare(
    url: GitURL,
    ref: GitRef,
    auth: GitAuth,
    dest: Path,
    *,
    timeout: float,
    proxy: ProxyConfig | None,
) -> Checkout:
    """The ref checked out (detached) in the empty directory `dest`."""
    checkout = fetch(url, ref, auth, dest, timeout=timeout, proxy=proxy)
    assert isinstance(checkout, Checkout)
    return checkout


def _add_config(env: dict[str, str], items: Sequence[tuple[str, str]]) -> None:
    count = int(env.get("GIT_CONFIG_COUNT", "0"))
    for key, value in items:
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    env["GIT_CONFIG_COUNT"] = str(count)


def _gpg(home: Path, args: Sequence[str], stdin: bytes | None, timeout: float) -> str:
    done = subprocess.run(
        [GPG, "--homedir", str(home), "--batch", "--no-tty", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        # gpg's own words, never the key: it does not echo key material.
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise SigningError(f"gpg {args[0]} failed: {why[0]}")
    return done.stdout.decode("utf-8", "replace")


def _signing_config(key: SigningKey, home: Path, timeout: float) -> list[tuple[str, str]]:
    """Import the key into a private keyring; git config that signs with it."""
    gnupg = home / "gnupg"
    gnupg.mkdir(mode=0o700)
    args = ["--pinentry-mode", "loopback"]
    passfile = None
    if key.passphrase is not None:
        passfile = home / "gpg-passphrase"
        passfile.write_text(key.passphrase)
        passfile.chmod(0o600)
        args += ["--passphrase-file", str(passfile)]
    _gpg(gnupg, ["--import", *args], key.armored, timeout)
    listing = _gpg(gnupg, ["--list-secret-keys", "--with-colons"], None, timeout)
    fingerprints = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
    if not fingerprints:
        raise SigningError("the signing key Secret's git.asc holds no private key")
    program = home / "gpg-sign"
    line = [GPG, "--homedir", str(gnupg), "--batch", "--no-tty", *args]
    program.write_text(f'#!/bin/sh\nexec {shlex.join(line)} "$@"\n')
    program.chmod(0o700)
    return [
        ("gpg.program", str(program)),
        ("user.signingkey", fingerprints[0]),
        ("commit.gpgsign", "true"),
    ]


def commit_and_push(
    checkout: Checkout,
    url: GitURL,
    auth: GitAuth,
    *,
    files: Sequence[str],
    message: str,
    author: Author,
    signing: SigningKey | None,
    push_branch: str,
    force: bool,
    refspec: str | None,
    options: Mapping[str, str],
    timeout: float,
    proxy: ProxyConfig | None,
) -> Pushed:
    """Commit `files` (already edited in the work tree) and push them atomically."""
    work = checkout.path
    with git_environment(auth, url, timeout, proxy) as genv:
        env = dict(genv.env)
        identity = author.name or author.email
        env.update(
            {
                "GIT_AUTHOR_NAME": identity,
                "GIT_AUTHOR_EMAIL": author.email,
                "GIT_COMMITTER_NAME": identity,
                "GIT_COMMITTER_EMAIL": author.email,
            }
        )
        try:
            if signing is not None:
                _add_config(env, _signing_config(signing, genv.home, timeout))
            return _commit_and_push(
                work,
                url,
                env,
                genv.secrets,
                files,
                message,
                push_branch,
                force,
                refspec,
                options,
                timeout,
            )
        finally:
            if signing is not None:
                # gpg leaves an agent running for the keyring; it must not outlive it.
                subprocess.run(
                    [GPGCONF, "--homedir", str(genv.home / "gnupg"), "--kill", "all"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )


def _commit_and_push(
    work: Path,
    url: GitURL,
    env: dict[str, str],
    secrets: Sequence[str],
    files: Sequence[str],
    message: str,
    push_branch: str,
    force: bool,
    refspec: str | None,
    options: Mapping[str, str],
    timeout: float,
) -> Pushed:
    home = Path(env["HOME"])
    runner = GitRunner(env, Deadline(timeout), where=str(url), secrets=secrets)
    runner.run(["add", "--", *files], what="staging the updated files", cwd=work)
    with tempfile.NamedTemporaryFile("w", dir=home, suffix=".msg", delete=False) as fh:
        fh.write(message)
    runner.run(
        ["commit", "-q", "--no-verify", "-F", fh.name], what="committing the update", cwd=work
    )
    commit = runner.run(["rev-parse", "HEAD"], what="reading the commit", cwd=work).strip()
    # Local branches, so a refspec's source (refs/heads/<branch>) names the new commit.
    runner.run(["update-ref", HEADS + push_branch, commit], what="naming the commit", cwd=work)
    destinations = [f"{HEADS}{push_branch}"]
    specs = [f"{'+' if force else ''}{commit}:{HEADS}{push_branch}"]
    if refspec:
        src, _, dst = refspec.partition(":")
        specs.append(f"{src}:{dst}")
        destinations.append(dst)
    args = ["push", "--atomic"]
    for key, value in sorted(options.items()):
        args.append(f"--push-option={key}={value}" if value else f"--push-option={key}")
    try:
        # To the URL, not a remote: the checkout has none unless submodules need it.
        runner.run([*args, url.url, *specs], what="pushing the update", cwd=work)
    except GitOperationError as exc:
        raise GitOperationError(f"push rejected: {exc.message}") from None
    return Pushed(commit=commit, destinations=tuple(destinations))
