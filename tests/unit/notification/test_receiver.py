"""Receivers: webhookPath, spec checks, signature checks, and the webhook server's answers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest

from controllers.notification.receiver import (
    RESOURCE,
    ReceiverReconciler,
    ReceiverSpec,
    ReceiverSpecError,
    ResourceRef,
    token_from_secret,
    webhook_path,
)
from controllers.notification.targets import (
    TargetError,
    annotation_patch,
    label_selector,
    rfc3339_nano,
)
from controllers.notification.webhooks import (
    Rejected,
    find_receiver,
    make_app,
    validate,
    verify_signature,
)
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import EventRecorder
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.http import HttpServer
from controllers.toolkit.runtime.patching import ObjectWriter
from tests.support.fakes import ListSink, RecordingWriter

TOKEN = "receiver-token-0123456789"
BODY = b'{"ref":"refs/heads/main","after":"0123456789abcdef"}'


def spec(**values: Any) -> ReceiverSpec:
    return ReceiverSpec.parse(
        {
            "type": "github",
            "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
            **values,
        }
    )


def signed(body: bytes, algorithm: str = "sha256", key: str = TOKEN) -> str:
    return f"{algorithm}=" + hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def test_webhook_path_is_fluxs() -> None:
    digest = hashlib.sha256(b"s3cret" + b"flux-system" + b"apps").hexdigest()
    assert webhook_path("s3cret", "flux-system", "apps") == f"/hook/{digest}"
    assert webhook_path("other", "flux-system", "apps") != webhook_path(
        "s3cret", "flux-system", "apps"
    )


def test_spec_defaults_and_errors_name_the_field() -> None:
    parsed = spec(events=["push"])
    assert parsed.interval == 600.0
    assert parsed.resources == (ResourceRef(kind="GitRepository", name="app"),)
    with pytest.raises(ReceiverSpecError, match=r"spec\.type: receiver type 'quay'"):
        spec(type="quay")
    with pytest.raises(ReceiverSpecError, match=r"spec\.resources\[0\]: matchLabels"):
        spec(resources=[{"kind": "GitRepository", "name": "*"}])
    with pytest.raises(ReceiverSpecError, match=r"spec\.interval"):
        spec(interval="soon")
    with pytest.raises(ReceiverSpecError, match=r"spec\.resources\[1\]: apiVersion must be given"):
        spec(resources=[{"kind": "GitRepository", "name": "a"}, {"kind": "Widget", "name": "b"}])


def test_token_errors_say_what_is_missing() -> None:
    assert token_from_secret({"token": b"abc"}, "ns", "s") == "abc"
    with pytest.raises(LookupError, match="not found"):
        token_from_secret(None, "ns", "s")
    with pytest.raises(LookupError, match="required field 'token'"):
        token_from_secret({"other": b"x"}, "ns", "s")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_hmac_signatures_of_each_algorithm_verify(algorithm: str) -> None:
    verify_signature("X-Signature", signed(BODY, algorithm), BODY, TOKEN)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing X-Signature"),
        ("", "missing X-Signature"),
        ("md5=abc", "sha1=, sha256= or sha512="),
        ("deadbeef", "sha1=, sha256= or sha512="),
        (signed(BODY, key="wrong"), "does not match"),
        (signed(BODY + b" "), "does not match"),
    ],
)
def test_bad_signatures_are_rejected(header: str | None, problem: str) -> None:
    with pytest.raises(Rejected) as caught:
        verify_signature("X-Signature", header, BODY, TOKEN)
    assert caught.value.status == 400
    assert problem in caught.value.message
    assert TOKEN not in caught.value.message


def test_github_checks_signature_then_event() -> None:
    github = spec(events=["push"])
    headers = {"X-Hub-Signature-256": signed(BODY), "X-GitHub-Event": "push"}
    assert validate(github, headers, BODY, TOKEN) is None
    sha1_only = {"X-Hub-Signature": signed(BODY, "sha1"), "X-GitHub-Event": "Push"}
    assert validate(github, sha1_only, BODY, TOKEN) is None
    with pytest.raises(Rejected, match="'release'"):
        validate(github, {**headers, "X-GitHub-Event": "release"}, BODY, TOKEN)
    with pytest.raises(Rejected, match="missing X-Hub-Signature"):
        validate(github, {"X-GitHub-Event": "push"}, BODY, TOKEN)
    ping = {"X-Hub-Signature-256": signed(BODY), "X-GitHub-Event": "ping"}
    assert validate(github, ping, BODY, TOKEN) == "ping"
    with pytest.raises(Rejected):
        validate(github, {**ping, "X-Hub-Signature-256": signed(BODY, key="x")}, BODY, TOKEN)


def test_gitlab_checks_token_then_event() -> None:
    gitlab = spec(type="gitlab", events=["Push Hook"])
    ok = {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}
    assert validate(gitlab, ok, BODY, TOKEN) is None
    with pytest.raises(Rejected, match="X-Gitlab-Token"):
        validate(gitlab, {**ok, "X-Gitlab-Token": "guess"}, BODY, TOKEN)
    with pytest.raises(Rejected, match="X-Gitlab-Token"):
        validate(gitlab, {"X-Gitlab-Event": "Push Hook"}, BODY, TOKEN)
    with pytest.raises(Rejected, match="'Tag Push Hook'"):
        validate(gitlab, {**ok, "X-Gitlab-Event": "Tag Push Hook"}, BODY, TOKEN)


def test_generic_needs_nothing_and_generic_hmac_a_signature() -> None:
    assert validate(spec(type="generic"), {}, BODY, TOKEN) is None
    hmac_spec = spec(type="generic-hmac")
    assert validate(hmac_spec, {"X-Signature": signed(BODY, "sha512")}, BODY, TOKEN) is None
    with pytest.raises(Rejected):
        validate(hmac_spec, {}, BODY, TOKEN)


def test_receivers_are_found_by_their_published_path() -> None:
    one = {"metadata": {"name": "a"}, "status": {"webhookPath": "/hook/aaa"}}
    two = {"metadata": {"name": "b"}, "status": {"webhookPath": "/hook/bbb"}}
    unpublished = {"metadata": {"name": "c"}, "status": {}}
    assert find_receiver([one, two, unpublished], "/hook/bbb") is two
    assert find_receiver([one, two, unpublished], "/hook/") is None


def test_requested_at_values_and_patches() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_nano(1_700_000_000_100_000_000) == "2023-11-14T22:13:20.1Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert annotation_patch("t") == {
        "metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "t"}}
    }
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"


# -- the server, with the cluster side replaced by in-memory receivers and targets ------


@dataclass
class Backend:
    receivers: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[tuple[str, str], Mapping[str, bytes]] = field(default_factory=dict)
    requested: list[tuple[ResourceRef, str, str]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)

    def list(self) -> list[dict[str, Any]]:
        return self.receivers

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return self.secrets.get((namespace, name))

    async def request(self, ref: ResourceRef, namespace: str, value: str) -> list[str]:
        if ref.name in self.broken:
            raise TargetError(f"annotating {ref.kind} '{namespace}/{ref.name}' failed: not found")
        self.requested.append((ref, namespace, value))
        return [f"{namespace}/{ref.name}"]


def receiver(
    type_: str, *, ready: str = "True", suspend: bool = False, **spec_values: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {
            "type": type_,
            "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
            "suspend": suspend,
            **spec_values,
        },
        "status": {
            "webhookPath": webhook_path(TOKEN, "app", "apps"),
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, Backend]]:
    backend = Backend(secrets={("apps", "webhook-token"): {"token": TOKEN.encode()}})
    server = HttpServer(
        make_app(backend.list, backend.read_secret, backend.request), "127.0.0.1", 0
    )
    await server.start()
    try:
        yield server.url.rstrip("/") + webhook_path(TOKEN, "app", "apps"), backend
    finally:
        await server.stop()


async def hook(url: str, body: bytes = BODY, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_a_signed_github_push_requests_a_reconcile(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(receiver("github", events=["push"]))
    status, text = await hook(
        url, **{"X-Hub-Signature-256": signed(BODY), "X-GitHub-Event": "push"}
    )
    assert (status, text.strip()) == (200, "reconcile requested for 1 object(s)")
    [(ref, namespace, value)] = backend.requested
    assert (ref.name, namespace) == ("app", "apps")
    assert value.endswith("Z")


async def test_forged_and_unsigned_requests_change_nothing(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(receiver("github"))
    forged = signed(BODY, key="attacker")
    assert (await hook(url, **{"X-Hub-Signature-256": forged, "X-GitHub-Event": "push"}))[0] == 400
    assert (await hook(url, **{"X-GitHub-Event": "push"}))[0] == 400
    tampered = signed(BODY)
    assert (await hook(url, BODY + b"x", **{"X-Hub-Signature-256": tampered}))[0] == 400
    assert backend.requested == []


async def test_github_ping_is_answered_without_a_reconcile(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(receiver("github", events=["push"]))
    status, text = await hook(
        url, **{"X-Hub-Signature-256": signed(BODY), "X-GitHub-Event": "ping"}
    )
    assert (status, text.strip()) == (200, "pong")
    assert backend.requested == []


async def test_unknown_paths_suspended_and_unready_receivers(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    assert (await hook(url))[0] == 404
    backend.receivers.append(receiver("generic", suspend=True))
    assert (await hook(url))[0] == 503
    backend.receivers[0] = receiver("generic", ready="False")
    assert (await hook(url))[0] == 503
    backend.receivers[0] = receiver("generic")
    assert (await hook(url.rsplit("/", 1)[0] + "/" + "0" * 64))[0] == 404
    assert (await hook(url))[0] == 200
    assert len(backend.requested) == 1


async def test_a_missing_token_is_400_and_a_failed_target_500(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(
        receiver(
            "generic",
            resources=[
                {"kind": "GitRepository", "name": "gone"},
                {"kind": "GitRepository", "name": "app"},
            ],
        )
    )
    backend.broken.add("gone")
    status, text = await hook(url)
    assert status == 500
    assert "GitRepository 'apps/gone'" in text
    assert [r.name for r, _, _ in backend.requested] == ["app"]  # the others are still asked
    backend.secrets.clear()
    assert (await hook(url))[0] == 400


async def test_gitlab_token_check_over_http(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(receiver("gitlab", events=["Push Hook"]))
    assert (await hook(url, **{"X-Gitlab-Token": "guess", "X-Gitlab-Event": "Push Hook"}))[0] == 400
    assert backend.requested == []
    assert (await hook(url, **{"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}))[0] == 200


async def test_oversized_payloads_are_refused(hooks: tuple[str, Backend]) -> None:
    url, backend = hooks
    backend.receivers.append(receiver("generic"))
    assert (await hook(url, b"x" * (3 * 1024 * 1024 + 1)))[0] == 413
    assert backend.requested == []


def receiver_object(**spec_values: Any) -> dict[str, Any]:
    return {
        "apiVersion": RESOURCE.api_version,
        "kind": RESOURCE.kind,
        "metadata": {"name": "hook", "namespace": "apps", "generation": 1},
        "spec": {
            "type": "github",
            "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
            **spec_values,
        },
        "status": {"webhookPath": "/hook/old"},
    }


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"resourceFilter": "res.metadata.name == 'app'"}, "spec.resourceFilter"),
        (
            {"resources": [{"kind": "GitRepository", "name": "app", "filter": "true"}]},
            "spec.resources.filter",
        ),
        ({"oidcProviders": [{"issuerURL": "https://issuer.example"}]}, "spec.oidcProviders"),
    ],
)
async def test_unsupported_fields_stall_the_receiver_and_withdraw_its_path(
    values: dict[str, Any], field: str
) -> None:
    obj = receiver_object(**values)
    writer = RecordingWriter(obj["status"])
    sink = ListSink()
    frame = ReconcileFrame(RESOURCE, cast(ObjectWriter, writer), EventRecorder("test", [sink]))

    async def read_secret(namespace: str, name: str) -> Mapping[str, bytes] | None:
        return {"token": TOKEN.encode()}

    reconciler = ReceiverReconciler(frame=frame, read_secret=read_secret)
    outcome = await reconciler.reconcile(obj)

    assert outcome.requeue_after is None  # stalled: retrying cannot help
    assert "webhookPath" not in writer.live
    stalled = cond.get_condition(writer.live, cond.STALLED)
    assert stalled is not None and stalled["reason"] == UNSUPPORTED_FIELD
    assert f"{field} is not supported by headwater" in stalled["message"]
    assert [event.reason for event in sink.events] == [UNSUPPORTED_FIELD]
