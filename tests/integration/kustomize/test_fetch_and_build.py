"""Fetch and build against real parts: artifacts served over loopback by the source
controller's artifact server, and the pinned kustomize binary.

No cluster is needed: these are the kustomize controller's first steps, from
``status.artifact`` to the objects it will apply.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import stat
import tarfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from controllers.source.server import make_app
from controllers.source.storage import ObjectKey, Storage
from controllers.toolkit.artifacts import (
    Artifact,
    ArtifactCache,
    ArtifactDownloadError,
    ArtifactError,
    ArtifactNotFoundError,
    ArtifactTooLargeError,
    DigestMismatchError,
    UnsafeArchiveError,
)
from controllers.toolkit.kustomize.build import BuildError, PathNotFoundError, build
from controllers.toolkit.kustomize.generate import BuildOptions
from controllers.toolkit.kustomize.substitute import PostBuild, substitute

pytestmark = pytest.mark.integration

KEY = ObjectKey("gitrepository", "apps", "podinfo")
LIMIT = 1024 * 1024


# --- a real artifact server with a request log --------------------------------------------


@dataclass
class Served:
    """The source controller's artifact app on loopback, counting what it was asked."""

    storage: Storage
    base_url: str
    requests: Counter[str] = field(default_factory=Counter)
    # Statuses to answer a path with before serving it for real.
    failures: dict[str, list[int]] = field(default_factory=dict)

    def publish(self, files: Mapping[str, str], revision: str = "main@sha1:1") -> dict[str, Any]:
        """Archive a tree as the source controller does; returns its ``status.artifact``."""
        src = self.storage.root.parent / f"src-{len(list(self.storage.root.parent.iterdir()))}"
        for rel, text in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        name = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest() + ".tar.gz"
        return self.storage.archive(KEY, name, src, revision).to_status()

    def publish_bytes(self, name: str, data: bytes) -> dict[str, Any]:
        path = self.storage.root / KEY.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rel = f"{KEY.dir}/{name}"
        return {
            "path": rel,
            "url": f"{self.base_url}/{rel}",
            "revision": "main@sha1:2",
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    storage_root = tmp_path / "storage"
    state: dict[str, Served] = {}

    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        srv = state["served"]
        path = request.path
        if path.startswith("/chunked/"):
            path = path.removeprefix("/chunked")
        srv.requests[path] += 1
        pending = srv.failures.get(path)
        if pending:
            return web.Response(status=pending.pop(0), text="injected\n")
        if request.path.startswith("/chunked/"):
            # Streamed without a Content-Length, so only the bytes can tell the size.
            data = (storage_root / path.lstrip("/")).read_bytes()
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(data), 65536):
                await response.write(data[start : start + 65536])
            await response.write_eof()
            return response
        return await handler(request)

    app = make_app(storage_root)
    app.middlewares.append(observe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    storage = Storage(storage_root, f"127.0.0.1:{port}")
    state["served"] = Served(storage=storage, base_url=f"http://127.0.0.1:{port}")
    try:
        yield state["served"]
    finally:
        await runner.cleanup()


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ArtifactCache]:
    c = ArtifactCache(tmp_path / "cache", max_size=LIMIT, backoff=0.01, keep_unused=4)
    try:
        yield c
    finally:
        await c.close()


def files_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def cache_dirs(cache: ArtifactCache) -> list[str]:
    return sorted(p.name for p in cache.root.iterdir())


def cm(name: str, **data: str) -> str:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if data:
        doc["data"] = data
    return yaml.safe_dump(doc)


# --- fetch --------------------------------------------------------------------------------


async def test_fetch_verifies_and_extracts_read_only(served: Served, cache: ArtifactCache) -> None:
    files = {"deploy/a.yaml": cm("a"), "deploy/sub/b.yaml": cm("b"), "README.md": "hi\n"}
    status = served.publish(files)
    artifact = Artifact.from_status(status)
    async with cache.checkout(artifact) as tree:
        assert files_of(tree) == files
        mode = stat.S_IMODE((tree / "deploy" / "a.yaml").stat().st_mode)
        assert mode & 0o222 == 0  # shared: nobody writes into it
        assert stat.S_IMODE((tree / "deploy").stat().st_mode) & 0o222 == 0
    assert served.requests[f"/{status['path']}"] == 1
    assert artifact.digest == status["digest"]


def one_file_tarball(name: str) -> bytes:
    """A gzip tarball of one one-byte file at `name`, however unsafe the name is."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


async def test_a_digest_mismatch_is_refused_before_anything_is_unpacked(
    served: Served, cache: ArtifactCache, tmp_path: Path
) -> None:
    # A tarball that would fail extraction: if it were unpacked before the digest check,
    # the error would be about the archive, not the digest.
    status = served.publish_bytes("evil.tar.gz", one_file_tarball("../escape.yaml"))
    status["digest"] = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    status["url"] = status["url"].replace("http://", "http://user:hunter2@")
    with pytest.raises(DigestMismatchError) as info:
        async with cache.checkout(Artifact.from_status(status)):
            pytest.fail("a tree was handed out")
    message = str(info.value)
    assert f"{served.base_url}/{status['path']}" in message
    assert "hunter2" not in message and "user" not in message
    assert "it was not unpacked" in message
    assert info.value.reason == "ArtifactFailed"
    assert cache_dirs(cache) == []
    assert not (tmp_path / "escape.yaml").exists()
    assert not (cache.root.parent / "escape.yaml").exists()


async def test_an_oversized_artifact_is_refused(served: Served, tmp_path: Path) -> None:
    status = served.publish({"big.yaml": cm("big", blob="x" * 4096)})
    small = ArtifactCache(tmp_path / "small", max_size=status["size"] - 1, backoff=0.01)
    try:
        # Known from the status: refused without a request.
        with pytest.raises(ArtifactTooLargeError) as info:
            async with small.checkout(Artifact.from_status(status)):
                pass
        assert "more than the limit" in str(info.value)
        assert served.requests[f"/{status['path']}"] == 0

        # Not in the status: the server's Content-Length gives it away.
        unsized = {k: v for k, v in status.items() if k != "size"}
        with pytest.raises(ArtifactTooLargeError) as info:
            async with small.checkout(Artifact.from_status(unsized)):
                pass
        assert "(Content-Length)" in str(info.value)
        assert served.requests[f"/{status['path']}"] == 1  # not retried

        # Streamed without a length: counting the bytes stops it.
        chunked = {**unsized, "url": f"{served.base_url}/chunked/{status['path']}"}
        with pytest.raises(ArtifactTooLargeError) as info:
            async with small.checkout(Artifact.from_status(chunked)):
                pass
        assert f"chunked/{status['path']} is more than the limit" in str(info.value)
        assert cache_dirs(small) == []
    finally:
        await small.close()


async def test_a_missing_artifact_is_its_own_error(served: Served, cache: ArtifactCache) -> None:
    status = served.publish({"a.yaml": cm("a")})
    status["url"] += ".gone"
    with pytest.raises(ArtifactNotFoundError) as info:
        async with cache.checkout(Artifact.from_status(status)):
            pass
    assert "not found (HTTP 404)" in str(info.value)
    assert info.value.reason == "ArtifactFailed"
    assert served.requests[f"/{status['path']}.gone"] == 1  # a 404 is not retried


async def test_server_errors_are_retried(served: Served, cache: ArtifactCache) -> None:
    status = served.publish({"a.yaml": cm("a")})
    path = f"/{status['path']}"
    served.failures[path] = [503, 500]
    async with cache.checkout(Artifact.from_status(status)) as tree:
        assert (tree / "a.yaml").exists()
    assert served.requests[path] == 3


async def test_persistent_failures_give_up_with_a_clear_error(
    served: Served, cache: ArtifactCache
) -> None:
    status = served.publish({"a.yaml": cm("a")})
    path = f"/{status['path']}"
    served.failures[path] = [502] * 10
    with pytest.raises(ArtifactDownloadError) as info:
        async with cache.checkout(Artifact.from_status(status)):
            pass
    assert f"{path} failed after 4 attempts: HTTP 502" in str(info.value)
    assert served.requests[path] == 4

    served.failures[path] = [403]
    with pytest.raises(ArtifactDownloadError) as info:
        async with cache.checkout(Artifact.from_status(status)):
            pass
    assert "HTTP 403" in str(info.value)


async def test_an_unreachable_server_is_retried_then_reported(cache: ArtifactCache) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.tar.gz"
    status = {"url": url, "digest": "sha256:" + "0" * 64}
    with pytest.raises(ArtifactDownloadError) as info:
        async with cache.checkout(Artifact.from_status(status)):
            pass
    assert f"{url} failed after 4 attempts" in str(info.value)


async def test_an_unsafe_archive_is_refused_with_its_url(
    served: Served, cache: ArtifactCache
) -> None:
    status = served.publish_bytes("unsafe.tar.gz", one_file_tarball("/etc/evil.yaml"))
    with pytest.raises(UnsafeArchiveError) as info_:
        async with cache.checkout(Artifact.from_status(status)):
            pass
    assert f"artifact {status['url']}" in str(info_.value)
    assert "must stay inside" in str(info_.value)
    assert cache_dirs(cache) == []


async def test_one_download_and_extraction_per_digest_under_concurrency(
    served: Served, tmp_path: Path
) -> None:
    status = served.publish({f"m{i}.yaml": cm(f"m{i}") for i in range(50)})
    artifact = Artifact.from_status(status)
    cache = ArtifactCache(tmp_path / "shared", max_size=LIMIT, keep_unused=0)
    seen: list[Path] = []
    release = asyncio.Event()

    async def consumer() -> None:
        async with cache.checkout(artifact) as tree:
            seen.append(tree)
            await release.wait()
            assert len(files_of(tree)) == 50

    try:
        tasks = [asyncio.create_task(consumer()) for _ in range(8)]

        async def all_inside() -> None:
            while len(seen) < 8:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_inside(), 60)
        assert len(set(seen)) == 1
        assert served.requests[f"/{status['path']}"] == 1
        assert cache.cached_digests() == [artifact.digest]
        release.set()
        await asyncio.gather(*tasks)
        # Nobody holds it and nothing unused is kept: removed.
        assert cache.cached_digests() == []
        assert not seen[0].exists()
    finally:
        await cache.close()


async def test_a_waiter_giving_up_does_not_cancel_the_shared_download(
    served: Served, cache: ArtifactCache
) -> None:
    status = served.publish({"a.yaml": cm("a")})
    artifact = Artifact.from_status(status)
    path = f"/{status['path']}"
    served.failures[path] = [503]  # the first attempt fails, so the download takes a while

    async def use() -> bool:
        async with cache.checkout(artifact) as tree:
            return (tree / "a.yaml").exists()

    impatient = asyncio.create_task(use())
    patient = asyncio.create_task(use())
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient
    assert served.requests[path] == 2  # one failed attempt, one retry; not two downloads


async def test_unused_trees_are_dropped_least_recently_used_first(
    served: Served, tmp_path: Path
) -> None:
    cache = ArtifactCache(tmp_path / "lru", max_size=LIMIT, keep_unused=2)
    try:
        artifacts = [
            Artifact.from_status(served.publish({"a.yaml": cm(f"v{i}")}, f"main@sha1:{i}"))
            for i in range(4)
        ]
        for artifact in artifacts[:3]:
            async with cache.checkout(artifact):
                pass
        # Use the first again: the second is now the least recently used.
        async with cache.checkout(artifacts[0]):
            pass
        async with cache.checkout(artifacts[3]):
            pass
        assert set(cache.cached_digests()) == {artifacts[0].digest, artifacts[3].digest}
        assert len(cache_dirs(cache)) == 2
        # Held trees are never dropped, however many are unused.
        async with cache.checkout(artifacts[1]) as held:
            for artifact in artifacts[2:]:
                async with cache.checkout(artifact):
                    pass
            assert held.exists()
    finally:
        await cache.close()


async def test_leftovers_of_an_earlier_process_are_cleared(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / ("sha256-" + "a" * 64)).mkdir(parents=True)
    (root / ".download-x.tar.gz").write_text("partial")
    (root / ".extract-y").mkdir()
    (root / "not-ours.txt").write_text("keep")
    cache = ArtifactCache(root, max_size=LIMIT)
    try:
        assert cache_dirs(cache) == ["not-ours.txt"]
    finally:
        await cache.close()


# --- build with the real kustomize --------------------------------------------------------


def write(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def refs(manifests: list[Any]) -> list[str]:
    return [m.ref for m in manifests]


async def test_a_plain_directory_is_built_as_flux_generates_it(tmp_path: Path) -> None:
    tree = write(
        tmp_path / "tree",
        {
            "deploy/a.yaml": cm("a"),
            "deploy/more/b.yml": cm("b") + "---\n" + cm("c"),
            "deploy/base/kustomization.yaml": "resources: [only.yaml]\nnamePrefix: base-\n",
            "deploy/base/only.yaml": cm("only"),
            "deploy/base/ignored.yaml": cm("ignored"),
            "deploy/notes.txt": "not yaml",
            "other/z.yaml": cm("z"),
        },
    )
    manifests = await build(tree, "./deploy", BuildOptions())
    assert sorted(refs(manifests)) == [
        "ConfigMap/a",
        "ConfigMap/b",
        "ConfigMap/base-only",
        "ConfigMap/c",
    ]
    # The shared tree is read, never written.
    assert not (tree / "deploy" / "kustomization.yaml").exists()


async def test_overlays_are_applied(tmp_path: Path) -> None:
    deployment = yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
                },
            },
        }
    )
    tree = write(
        tmp_path / "tree",
        {
            "app/kustomization.yaml": (
                "resources: [deploy.yaml, cm.yaml]\n"
                "namePrefix: mine-\n"
                "images: [{name: nginx, newName: mirror/nginx}]\n"
            ),
            "app/deploy.yaml": deployment,
            "app/cm.yaml": cm("settings", level="info"),
            "components/debug/kustomization.yaml": (
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
                "patches:\n- target: {kind: ConfigMap}\n"
                "  patch: |\n    - op: replace\n      path: /data/level\n      value: debug\n"
            ),
        },
    )
    overlays = {
        "targetNamespace": "team-a",
        "namePrefix": "p-",
        "nameSuffix": "-s",
        "patches": [
            {
                "patch": "- op: add\n  path: /spec/replicas\n  value: 3\n",
                "target": {"kind": "Deployment", "labelSelector": "tier=front"},
            }
        ],
        "images": [{"name": "nginx", "newTag": "1.27"}],
        "components": ["../components/debug", "../components/missing"],
        "ignoreMissingComponents": True,
    }
    manifests = await build(tree, "app", BuildOptions.parse(overlays))
    by_kind = {m.kind: m.object for m in manifests}
    assert refs(manifests) == ["ConfigMap/team-a/p-settings-s", "Deployment/team-a/p-web-s"]
    deploy = by_kind["Deployment"]
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/nginx:1.27"
    assert by_kind["ConfigMap"]["data"] == {"level": "debug"}


async def test_a_missing_component_fails_unless_ignored(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"a.yaml": cm("a")})
    with pytest.raises(BuildError) as info:
        await build(tree, "", BuildOptions.parse({"components": ["components/absent"]}))
    assert "components/absent" in str(info.value)
    assert refs(
        await build(
            tree, "", BuildOptions.parse({"components": ["x"], "ignoreMissingComponents": True})
        )
    ) == ["ConfigMap/a"]


async def test_an_invalid_file_fails_naming_it(tmp_path: Path) -> None:
    tree = write(
        tmp_path / "tree",
        {
            "deploy/ok.yaml": cm("ok"),
            "deploy/broken.yaml": "kind: ConfigMap\nmetadata:\n  name: [x\n",
        },
    )
    with pytest.raises(BuildError) as info:
        await build(tree, "deploy", BuildOptions())
    assert str(info.value).startswith("invalid YAML in 'deploy/broken.yaml': line ")
    assert info.value.reason == "BuildFailed"


async def test_a_kustomize_error_carries_kustomizes_message(tmp_path: Path) -> None:
    tree = write(
        tmp_path / "tree",
        {
            "app/kustomization.yaml": "resources: [present.yaml, absent.yaml]\n",
            "app/present.yaml": cm("present"),
        },
    )
    with pytest.raises(BuildError) as info:
        await build(tree, "app", BuildOptions())
    message = str(info.value)
    assert message.startswith("kustomize build failed: ")
    assert "absent.yaml" in message
    assert str(tmp_path) not in message and "headwater-build-" not in message


async def test_invalid_yaml_under_a_users_kustomization_is_named_by_kustomize(
    tmp_path: Path,
) -> None:
    tree = write(
        tmp_path / "tree",
        {
            "app/kustomization.yaml": "resources: [bad.yaml]\n",
            "app/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   oops: 1\n",
        },
    )
    with pytest.raises(BuildError) as info:
        await build(tree, "app", BuildOptions())
    assert "bad.yaml" in str(info.value)


async def test_files_outside_a_kustomizations_root_are_refused_by_kustomize(
    tmp_path: Path,
) -> None:
    # LoadRestrictionsRootOnly: a kustomization reads files only below itself.
    tree = write(
        tmp_path / "tree",
        {
            "app/kustomization.yaml": "resources: [a.yaml]\npatches: [{path: ../shared/p.yaml}]\n",
            "app/a.yaml": cm("a"),
            "shared/p.yaml": cm("a", x="y"),
        },
    )
    with pytest.raises(BuildError) as info:
        await build(tree, "app", BuildOptions())
    assert "is not in or below" in str(info.value)


async def test_remote_bases_are_refused_before_kustomize_runs(tmp_path: Path) -> None:
    tree = write(
        tmp_path / "tree",
        {"app/kustomization.yaml": "resources:\n- https://github.com/org/repo//deploy?ref=v1\n"},
    )
    with pytest.raises(BuildError) as info:
        await build(tree, "app", BuildOptions())
    assert "'app/kustomization.yaml': resources entry" in str(info.value)
    assert "is remote" in str(info.value)


async def test_a_path_outside_the_artifact_is_refused(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"a.yaml": cm("a")})
    for path, message in (("../..", "must stay inside"), ("nope", "'nope' is not in the artifact")):
        with pytest.raises(PathNotFoundError) as info:
            await build(tree, path, BuildOptions())
        assert message in str(info.value)


async def test_output_is_bounded(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"a.yaml": cm("a", blob="x" * 10_000)})
    with pytest.raises(BuildError) as info:
        await build(tree, "", BuildOptions(), max_output=1000)
    assert "larger than 1000 bytes" in str(info.value)


async def test_a_build_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    # A stand-in for a kustomize that never finishes, leaving a child process behind.
    pid_file = tmp_path / "pids"
    hang = tmp_path / "hang.sh"
    hang.write_text(f"#!/bin/sh\n/bin/sleep 3600 &\necho $! $$ > {pid_file}\nwait\n")
    hang.chmod(0o755)
    tree = write(tmp_path / "tree", {"a.yaml": cm("a")})
    with pytest.raises(BuildError) as info:
        # The guard: if only the shell died, its child would hold the pipes open.
        await asyncio.wait_for(build(tree, "", BuildOptions(), kustomize=str(hang), timeout=1), 60)
    assert "kustomize build timed out after 1s" in str(info.value)
    for pid in pid_file.read_text().split():
        assert not running(int(pid))


def running(pid: int) -> bool:
    """Whether `pid` still runs; a killed child nobody reaped yet is a zombie, not running."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state and "dead" not in state


async def test_build_leaves_no_scratch_behind(tmp_path: Path) -> None:
    work_root = tmp_path / "work"
    work_root.mkdir()
    tree = write(
        tmp_path / "tree", {"ok/a.yaml": cm("a"), "bad/kustomization.yaml": "resources: [x"}
    )
    await build(tree, "ok", BuildOptions.parse({"targetNamespace": "x"}), work_root=work_root)
    with pytest.raises(BuildError):
        await build(tree, "bad", BuildOptions(), work_root=work_root)
    assert list(work_root.iterdir()) == []


async def test_fetch_build_and_substitute_end_to_end(served: Served, cache: ArtifactCache) -> None:
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  replicas: ${REPLICAS}\n  selector: {matchLabels: {app: web}}\n"
        "  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n"
        "      - name: web\n        image: nginx:${TAG:=1.27}\n"
    )
    status = served.publish({"clusters/prod/app.yaml": deployment})
    secrets = {("Secret", "vars"): {"REPLICAS": "4"}}

    async def read(kind: str, name: str) -> Mapping[str, str] | None:
        return secrets.get((kind, name))

    async with cache.checkout(Artifact.from_status(status)) as tree:
        built = await build(tree, "clusters/prod", BuildOptions.parse({"targetNamespace": "prod"}))
    post_build = {"substituteFrom": [{"kind": "Secret", "name": "vars"}]}
    [web_deploy] = await substitute(built, PostBuild.parse(post_build), read)
    assert web_deploy.ref == "Deployment/prod/web"
    assert web_deploy.object["spec"]["replicas"] == 4
    assert web_deploy.object["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_artifact_errors_share_flux_reason() -> None:
    for cls in (
        ArtifactNotFoundError,
        ArtifactDownloadError,
        ArtifactTooLargeError,
        DigestMismatchError,
        UnsafeArchiveError,
    ):
        assert issubclass(cls, ArtifactError)
        assert cls("x").reason == "ArtifactFailed"
