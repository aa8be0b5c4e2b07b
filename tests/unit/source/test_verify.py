"""Verification settings and key handling (signatures themselves: integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.source.verify import VerifyMode, keys_from_secret, verify_checkout
from controllers.toolkit.git.errors import VERIFICATION_ERROR, VerificationError


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, VerifyMode.HEAD),
        ("", VerifyMode.HEAD),
        ("HEAD", VerifyMode.HEAD),
        ("head", VerifyMode.HEAD),
        ("Tag", VerifyMode.TAG),
        ("TagAndHEAD", VerifyMode.TAG_AND_HEAD),
    ],
)
def test_modes(value: str | None, mode: VerifyMode) -> None:
    assert VerifyMode.parse(value) is mode


def test_mode_flags() -> None:
    assert VerifyMode.HEAD.checks_head and not VerifyMode.HEAD.checks_tag
    assert VerifyMode.TAG.checks_tag and not VerifyMode.TAG.checks_head
    assert VerifyMode.TAG_AND_HEAD.checks_tag and VerifyMode.TAG_AND_HEAD.checks_head


def test_unknown_mode() -> None:
    with pytest.raises(VerificationError) as info:
        VerifyMode.parse("tag")
    assert info.value.reason == VERIFICATION_ERROR


def test_keys_from_secret() -> None:
    keys = keys_from_secret({"b.asc": b"B", "a.asc": b"A", "readme": b"x", "c.sshpub": b"s"})
    assert list(keys) == ["a.asc", "b.asc"]
    with pytest.raises(VerificationError, match=r"no PGP keys \('\*\.asc' entries\)"):
        keys_from_secret({"readme": b"x"})
    with pytest.raises(VerificationError, match="SSH signature verification is not supported"):
        keys_from_secret({"signer.sshpub": b"ssh-ed25519 AAAA"})


def test_tag_mode_needs_a_tag(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as info:
        verify_checkout(tmp_path, "a" * 40, None, VerifyMode.TAG, {"k.asc": b"x"})
    assert "needs a tag" in str(info.value)


def test_garbage_key_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as info:
        verify_checkout(
            tmp_path, "a" * 40, None, VerifyMode.HEAD, {"team.asc": b"not a key at all"}
        )
    assert "'team.asc'" in str(info.value)
    assert "not a key at all" not in str(info.value)
