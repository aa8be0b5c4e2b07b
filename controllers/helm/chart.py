"""The packaged chart a release installs: downloaded by URL, digest-verified, read.

The source controller publishes a HelmChart's chart as `status.artifact`
(the `.tgz`, `revision` = chart version, `digest` = sha256 of the file).
Charts are kept on disk by digest, so a release that reconciles again with
the same chart downloads nothing; helm is given the verified file itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from controllers.toolkit.artifacts import Artifact, ArtifactError, DownloadPolicy, download

# A chart's Chart.yaml or CRD file larger than this is not a chart we read.
_MAX_MEMBER = 4 * 1024 * 1024


class ChartError(Exception):
    """The chart file cannot be used (not a chart archive, no Chart.yaml)."""


@dataclass(frozen=True)
class ChartMetadata:
    name: str
    version: str
    app_version: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def read_metadata(path: Path) -> ChartMetadata:
    """Chart.yaml of a packaged chart (the one at the archive's top directory)."""
    text = _read_members(path, lambda parts: len(parts) == 2 and parts[1] == "Chart.yaml")
    if not text:
        raise ChartError("the chart archive has no Chart.yaml")
    try:
        chart = yaml.safe_load(next(iter(text.values())))
    except yaml.YAMLError:
        raise ChartError("the chart's Chart.yaml is not valid YAML") from None
    if not isinstance(chart, dict) or not chart.get("name") or not chart.get("version"):
        raise ChartError("the chart's Chart.yaml has no name or version")
    return ChartMetadata(
        str(chart["name"]), str(chart["version"]), str(chart.get("appVersion") or "")
    )


def read_crds(path: Path) -> list[str]:
    """The YAML files of the chart's own `crds/` directory (not its subcharts'), by name."""
    files = _read_members(
        path,
        lambda parts: (
            len(parts) >= 3
            and parts[1] == "crds"
            and parts[-1].endswith((".yaml", ".yml", ".json"))
        ),
    )
    return [files[name] for name in sorted(files)]


def _read_members(path: Path, wanted: Callable[[list[str]], bool]) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or not wanted(parts):
                    continue
                if member.size > _MAX_MEMBER:
                    raise ChartError(
                        f"{member.name} in the chart is larger than {_MAX_MEMBER} bytes"
                    )
                handle = archive.extractfile(member)
                if handle is not None:
                    found[member.name] = handle.read().decode("utf-8", "replace")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ChartError(f"the chart is not a gzip tar archive: {exc}") from None
    return found


class ChartStore:
    """Verified chart files by digest; the `keep` most recently used stay on disk."""

    def __init__(self, root: Path, *, max_size: int, keep: int = 64) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.policy = DownloadPolicy(max_size=max_size)
        self.keep = keep
        self._session: aiohttp.ClientSession | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    def _path(self, artifact: Artifact) -> Path:
        algorithm, _, hexpart = artifact.digest.partition(":")
        return self.root / f"{algorithm}-{hexpart}.tgz"

    async def fetch(self, artifact: Artifact) -> Path:
        """The verified chart file of `artifact` (ArtifactError when it cannot be had)."""
        path = self._path(artifact)
        lock = self._locks.setdefault(artifact.digest, asyncio.Lock())
        async with lock:
            if path.exists():
                os.utime(path)
                return path
            if self._session is None or self._session.closed:
                # auto_decompress off: the digest is over the bytes as served.
                self._session = aiohttp.ClientSession(auto_decompress=False)
            partial = self.root / f".download-{secrets.token_hex(6)}"
            try:
                await download(self._session, artifact, partial, self.policy)
                os.rename(partial, path)
            except ArtifactError:
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
        self._evict()
        return path

    def _evict(self) -> None:
        charts = sorted(self.root.glob("*.tgz"), key=lambda p: p.stat().st_mtime)
        for old in charts[: max(len(charts) - self.keep, 0)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
