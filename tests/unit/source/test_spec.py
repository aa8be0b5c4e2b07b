"""GitRepository spec parsing: every field handled or refused by name, sparse paths."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.source.spec import (
    UNSUPPORTED_FIELDS,
    GitRepositorySpec,
    SparseCheckoutError,
    sparse_directories,
)
from controllers.toolkit.git import errors
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError

URL = "https://git.example.invalid/org/repo.git"


def parse(**spec: Any) -> GitRepositorySpec:
    return GitRepositorySpec.parse({"url": URL, "interval": "1m", **spec})


@pytest.mark.parametrize("provider", [None, "", "generic"])
def test_generic_provider_is_the_default_and_works(provider: str | None) -> None:
    assert parse(provider=provider).url == URL


@pytest.mark.parametrize("provider", ["aws", "azure", "github"])
def test_cloud_providers_are_refused_by_field_and_value(provider: str) -> None:
    with pytest.raises(ReconcileError) as caught:
        parse(provider=provider)
    assert caught.value.stalled
    assert caught.value.reason == UNSUPPORTED_FIELD
    assert f"spec.provider: '{provider}' is not supported by headwater" in caught.value.message


def test_service_account_name_is_refused_by_name() -> None:
    assert "spec.serviceAccountName" in UNSUPPORTED_FIELDS
    with pytest.raises(ReconcileError) as caught:
        parse(provider="azure", serviceAccountName="git-reader")
    assert caught.value.stalled
    assert caught.value.reason == UNSUPPORTED_FIELD
    assert "spec.provider: 'azure' is not supported" in caught.value.message
    assert "spec.serviceAccountName is not supported by headwater" in caught.value.message
    with pytest.raises(ReconcileError, match=r"spec\.serviceAccountName is not supported"):
        parse(serviceAccountName="git-reader")


def test_proxy_secret_ref_is_read_for_http_and_refused_for_ssh() -> None:
    assert parse(proxySecretRef={"name": "proxy"}).proxy_secret == "proxy"
    assert parse().proxy_secret is None
    with pytest.raises(ReconcileError) as caught:
        GitRepositorySpec.parse(
            {
                "url": "ssh://git@git.example.invalid/org/repo.git",
                "interval": "1m",
                "proxySecretRef": {"name": "proxy"},
            }
        )
    assert caught.value.stalled
    assert "spec.proxySecretRef" in caught.value.message
    assert "ssh://" in caught.value.message


def test_sparse_checkout_is_recorded_as_written_and_checked_out_as_clean_paths() -> None:
    spec = parse(sparseCheckout=["./deploy/", "apps/prod", "/base"])
    assert spec.sparse_dirs == ("deploy", "apps/prod", "base")
    assert spec.observed()["observedSparseCheckout"] == ["./deploy/", "apps/prod", "/base"]
    assert "observedSparseCheckout" not in parse().observed()
    assert "observedSparseCheckout" not in parse(sparseCheckout=[]).observed()


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("./", "is the repository root"),
        ("apps/../../etc", "must stay inside the repository"),
        ("apps/*", "must be a directory path, not a pattern"),
        ("!apps", "must be a directory path, not a pattern"),
    ],
)
def test_sparse_checkout_paths_that_cannot_work_stall_naming_the_entry(
    path: str, says: str
) -> None:
    with pytest.raises(SparseCheckoutError) as caught:
        parse(sparseCheckout=["deploy", path])
    assert caught.value.stalled
    assert caught.value.reason == errors.GIT_OPERATION_FAILED
    assert f"spec.sparseCheckout[1]: '{path}' {says}" in caught.value.message


def test_sparse_directories_of_nothing_is_nothing() -> None:
    assert sparse_directories(()) == ()


def test_step_errors_found_while_parsing_stall_with_their_own_reason() -> None:
    with pytest.raises(errors.GitOperationError) as caught:
        parse(ref={"name": "pull/1/head"})
    assert caught.value.stalled
    assert caught.value.reason == errors.GIT_OPERATION_FAILED
    with pytest.raises(errors.URLInvalidError) as bad_url:
        GitRepositorySpec.parse({"url": "git@host:org/repo.git", "interval": "1m"})
    assert bad_url.value.stalled


def test_source_errors_are_reconcile_errors_with_scrubbed_messages() -> None:
    exc = errors.AuthenticationError("refused for https://user:hunter2secret@host/repo.git")
    assert isinstance(exc, ReconcileError)
    assert exc.reason == errors.AUTHENTICATION_FAILED
    assert not exc.stalled
    assert "hunter2secret" not in exc.message
    assert str(exc) == exc.message
