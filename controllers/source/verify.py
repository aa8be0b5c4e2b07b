"""PGP verification of the checked-out commit and/or tag (``spec.verify``).

Keys come from the verification Secret's ``*.asc`` values. They are imported into a
throw-away GNUPGHOME and git's own ``verify-commit`` / ``verify-tag`` run the real gpg
against it; gpg's machine-readable status lines decide, not its exit code alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from controllers.toolkit.git.errors import VerificationError
from controllers.toolkit.git.gitexec import Deadline, GitRunner, hermetic_env

GPG = shutil.which("gpg") or "gpg"
GPGCONF = shutil.which("gpgconf") or "gpgconf"


class VerifyMode(StrEnum):
    HEAD = "HEAD"
    TAG = "Tag"
    TAG_AND_HEAD = "TagAndHEAD"

    @classmethod
    def parse(cls, value: str | None) -> VerifyMode:
        """spec.verify.mode; Flux accepts ``head`` too and defaults to HEAD."""
        if value in (None, "", "HEAD", "head"):
            return cls.HEAD
        for mode in cls:
            if value == mode.value:
                return mode
        raise VerificationError(f"unknown verification mode '{value}': use HEAD, Tag or TagAndHEAD")

    @property
    def checks_head(self) -> bool:
        return self in (VerifyMode.HEAD, VerifyMode.TAG_AND_HEAD)

    @property
    def checks_tag(self) -> bool:
        return self in (VerifyMode.TAG, VerifyMode.TAG_AND_HEAD)


@dataclass(frozen=True)
class VerificationResult:
    mode: VerifyMode
    commit_key: str | None  # fingerprint that signed the commit, when checked
    tag_key: str | None  # fingerprint that signed the tag, when checked

    @property
    def message(self) -> str:
        parts = []
        if self.commit_key:
            parts.append(f"commit signed by key {self.commit_key}")
        if self.tag_key:
            parts.append(f"tag signed by key {self.tag_key}")
        return "verified " + " and ".join(parts)


def keys_from_secret(data: Mapping[str, bytes]) -> dict[str, bytes]:
    """The armored PGP public keys of a verification Secret (``*.asc`` keys)."""
    keys = {k: v for k, v in sorted(data.items()) if k.endswith(".asc")}
    if not keys:
        if any(k.endswith(".sshpub") for k in data):
            # Flux also verifies SSH signatures; headwater only PGP: say so, not "no keys".
            raise VerificationError(
                "the verification secret holds only SSH keys ('*.sshpub'): SSH signature "
                "verification is not supported by headwater, use PGP keys ('*.asc')"
            )
        raise VerificationError("the verification secret holds no PGP keys ('*.asc' entries)")
    return keys


def _import_keys(home: Path, keys: Mapping[str, bytes], timeout: float) -> None:
    for name, armored in keys.items():
        try:
            proc = subprocess.run(
                [
                    GPG,
                    "--batch",
                    "--no-tty",
                    "--homedir",
                    str(home),
                    "--status-fd",
                    "1",
                    "--import",
                ],
                input=armored,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VerificationError(f"importing key '{name}' timed out") from None
        if proc.returncode != 0 or b"[GNUPG:] IMPORT_OK" not in proc.stdout:
            raise VerificationError(f"key '{name}' of the verification secret is not a PGP key")


def _signer(status: str) -> str | None:
    """The fingerprint of a good, valid signature in gpg status output, else None."""
    good = bad = False
    fingerprint = None
    for line in status.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "[GNUPG:]":
            continue
        if fields[1] == "GOODSIG":
            good = True
        elif fields[1] in ("BADSIG", "ERRSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY"):
            bad = True
        elif fields[1] == "VALIDSIG" and len(fields) > 2:
            # The primary key's fingerprint (last field) names the key users put in the
            # Secret, even when a subkey made the signature.
            fingerprint = fields[11] if len(fields) > 11 else fields[2]
    return fingerprint if good and not bad else None


def _check(
    runner: GitRunner, repo: Path, args: list[str], what: str, keys: Mapping[str, bytes]
) -> str:
    status, err = runner.run_status(args, what=f"verifying {what}", cwd=repo)
    signer = _signer(err)
    if status == 0 and signer:
        return signer
    if "[GNUPG:]" not in err:
        raise VerificationError(f"{what} is not signed")
    names = ", ".join(keys)
    raise VerificationError(
        f"signature of {what} could not be verified with the keys in the secret ({names})"
    )


def verify_checkout(
    repo: Path,
    commit: str,
    tag: str | None,
    mode: VerifyMode,
    keys: Mapping[str, bytes],
    *,
    timeout: float = 30.0,
) -> VerificationResult:
    """Verify `commit` (HEAD) and/or the annotated `tag` in the checkout at `repo`."""
    if mode.checks_tag and not tag:
        raise VerificationError(
            f"verification mode {mode.value} needs a tag: set spec.ref.tag or spec.ref.semver"
        )
    home = Path(tempfile.mkdtemp(prefix="headwater-gpg-"))
    try:
        _import_keys(home, keys, timeout)
        env = hermetic_env(home, [("gpg.program", GPG), ("gpg.format", "openpgp")])
        env["GNUPGHOME"] = str(home)
        runner = GitRunner(env, Deadline(timeout), where=str(repo))
        tag_key = commit_key = None
        if mode.checks_tag:
            assert tag is not None
            kind = runner.run(
                ["cat-file", "-t", f"refs/tags/{tag}"], what=f"reading tag '{tag}'", cwd=repo
            ).strip()
            if kind != "tag":
                raise VerificationError(f"tag '{tag}' is a lightweight tag and cannot be signed")
            tag_key = _check(runner, repo, ["verify-tag", "--raw", tag], f"tag '{tag}'", keys)
        if mode.checks_head:
            commit_key = _check(
                runner, repo, ["verify-commit", "--raw", commit], f"commit '{commit}'", keys
            )
        return VerificationResult(mode=mode, commit_key=commit_key, tag_key=tag_key)
    finally:
        # gpg may have started an agent for this home; stop it before removing the home.
        subprocess.run(
            [GPGCONF, "--homedir", str(home), "--kill", "all"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)
