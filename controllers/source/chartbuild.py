"""Building a HelmChart's artifact: locate, patch values, resolve dependencies, package.

Blocking steps (they run in a worker thread). Archives are unpacked only with the
toolkit's `safe_extract` (regular files and directories, nothing outside the target,
no links), packaging and dependencies are the helm binary's (`helmexec`), and no
chart is ever rendered here.

Failures are `ChartBuildError`s carrying Flux's build error reasons and summaries
("values files merge error: no values file found at path 'x'"); the persistent
ones (InvalidChartReference, ValuesFilesError) stall the HelmChart until its spec or
its source changes.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controllers.source import helmexec
from controllers.source.chartvalues import ValuesFileError, merge_values_files
from controllers.toolkit.artifacts import (
    ArtifactError,
    PathError,
    clean_relative,
    safe_extract,
)
from controllers.toolkit.semverrange import Version

# Flux's chart build error reasons (internal/helm/chart BuildErrorReason).
INVALID_CHART_REFERENCE = "InvalidChartReference"
CHART_PULL_ERROR = "ChartPullError"
VALUES_FILES_ERROR = "ValuesFilesError"
DEPENDENCY_BUILD_ERROR = "DependencyBuildError"
CHART_PACKAGE_ERROR = "ChartPackageError"

_SUMMARIES = {
    INVALID_CHART_REFERENCE: "invalid chart reference",
    CHART_PULL_ERROR: "chart pull error",
    VALUES_FILES_ERROR: "values files merge error",
    DEPENDENCY_BUILD_ERROR: "dependency build error",
    CHART_PACKAGE_ERROR: "chart package error",
}
# Retrying cannot fix these until the spec or the source changes.
PERSISTENT = frozenset({INVALID_CHART_REFERENCE, VALUES_FILES_ERROR})
# Which failure condition each reason lands on (Flux: FetchFailed or BuildFailed).
BUILD_REASONS = frozenset({VALUES_FILES_ERROR, DEPENDENCY_BUILD_ERROR, CHART_PACKAGE_ERROR})

MAX_CHART_FILES = 10_000
MAX_UNPACKED_CHART = 100 * 1024 * 1024
CHART_FILE = "Chart.yaml"
VALUES_FILE = "values.yaml"


class ChartBuildError(Exception):
    """A build step failed; `reason` is Flux's, the message starts with its summary."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.message = f"{_SUMMARIES.get(reason, 'unknown build error')}: {detail}"
        super().__init__(self.message)

    @property
    def persistent(self) -> bool:
        return self.reason in PERSISTENT

    @property
    def build_failure(self) -> bool:
        """A BuildFailed condition (else FetchFailed), as Flux sorts them."""
        return self.reason in BUILD_REASONS

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ChartMetadata:
    name: str
    version: str
    dependencies: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class BuiltChart:
    path: Path  # the packaged .tgz
    name: str
    version: str
    values_files: tuple[str, ...]


def version_with_metadata(version: str, metadata: Sequence[str]) -> str:
    """`version` with its build metadata replaced by `metadata` ("6.0.3+4e5cbb7b97d0.2")."""
    core = version.split("+", 1)[0]
    parts = [m for m in metadata if m]
    return f"{core}+{'.'.join(parts)}" if parts else version


def read_chart_metadata(chart_dir: Path) -> ChartMetadata:
    """Name, version and dependencies from Chart.yaml; InvalidChartReference when unusable."""
    path = chart_dir / CHART_FILE
    if path.is_symlink() or not path.is_file():
        raise ChartBuildError(INVALID_CHART_REFERENCE, f"no {CHART_FILE} found in the chart path")
    try:
        doc = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ChartBuildError(INVALID_CHART_REFERENCE, f"invalid {CHART_FILE}: {detail}") from None
    if not isinstance(doc, Mapping):
        raise ChartBuildError(INVALID_CHART_REFERENCE, f"{CHART_FILE} is not a YAML mapping")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name:
        raise ChartBuildError(INVALID_CHART_REFERENCE, f"{CHART_FILE} has no 'name'")
    if version is None or Version.parse(str(version)) is None:
        raise ChartBuildError(
            INVALID_CHART_REFERENCE, f"{CHART_FILE} version {version!r} is not a semantic version"
        )
    deps = doc.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, Mapping) for d in deps):
        raise ChartBuildError(INVALID_CHART_REFERENCE, f"{CHART_FILE} 'dependencies' is not a list")
    return ChartMetadata(name=name, version=str(version), dependencies=tuple(deps))


def extract(archive: Path, dest: Path, what: str) -> Path:
    """Unpack `archive` safely into `dest` (created); returns `dest`."""
    dest.mkdir(parents=True, exist_ok=False)
    try:
        safe_extract(archive, dest, max_size=MAX_UNPACKED_CHART, max_entries=MAX_CHART_FILES)
    except ArtifactError as exc:
        raise ChartBuildError(CHART_PULL_ERROR, f"{what}: {exc}") from None
    return dest


def locate_chart(root: Path, chart_path: str) -> Path:
    """The chart directory `chart_path` inside the unpacked source `root`."""
    try:
        rel = clean_relative(chart_path, "chart path (spec.chart)")
    except PathError as exc:
        raise ChartBuildError(INVALID_CHART_REFERENCE, str(exc)) from None
    chart_dir = root / rel if rel else root
    current = root
    for part in rel.split("/") if rel else []:
        current = current / part
        if current.is_symlink():
            raise ChartBuildError(INVALID_CHART_REFERENCE, f"chart path '{chart_path}' is a link")
    if not chart_dir.is_dir():
        raise ChartBuildError(
            INVALID_CHART_REFERENCE, f"chart path '{chart_path}' not found in the source artifact"
        )
    return chart_dir


def chart_root_in_archive(unpacked: Path) -> Path:
    """A chart archive holds one top directory with Chart.yaml in it."""
    tops = [p for p in unpacked.iterdir() if p.is_dir() and (p / CHART_FILE).is_file()]
    if len(tops) != 1:
        raise ChartBuildError(
            CHART_PULL_ERROR, "the chart archive does not hold exactly one chart directory"
        )
    return tops[0]


def _missing_dependencies(chart_dir: Path, meta: ChartMetadata) -> list[str]:
    """Dependencies not vendored in charts/ yet (as a directory or a <name>-*.tgz)."""
    charts = chart_dir / "charts"
    missing = []
    for dep in meta.dependencies:
        name = str(dep.get("name") or "")
        vendored = charts.is_dir() and (
            (charts / name).is_dir() or any(charts.glob(f"{name}-*.tgz"))
        )
        if not vendored:
            missing.append(name)
    return missing


def check_local_dependencies(root: Path, chart_dir: Path, meta: ChartMetadata) -> None:
    """file:// dependencies must stay inside the source artifact."""
    for dep in meta.dependencies:
        repo = str(dep.get("repository") or "")
        if not repo.startswith("file://"):
            continue
        target = posixpath.normpath(
            posixpath.join(chart_dir.relative_to(root).as_posix(), repo[len("file://") :])
        )
        if target.startswith("/") or target == ".." or target.startswith("../"):
            raise ChartBuildError(
                DEPENDENCY_BUILD_ERROR,
                f"dependency '{dep.get('name')}' ({repo}) points outside the source artifact",
            )
        if not (root / target / CHART_FILE).is_file():
            raise ChartBuildError(
                DEPENDENCY_BUILD_ERROR,
                f"dependency '{dep.get('name')}' ({repo}): no chart found there",
            )


def write_values(
    chart_dir: Path, root: Path, values_files: Sequence[str], ignore_missing: bool
) -> tuple[str, ...]:
    """Replace the chart's values.yaml with the merge of `values_files` (relative to `root`)."""
    try:
        merged = merge_values_files(root, values_files, ignore_missing=ignore_missing)
    except ValuesFileError as exc:
        raise ChartBuildError(VALUES_FILES_ERROR, str(exc)) from None
    target = chart_dir / VALUES_FILE
    if target.is_symlink():
        target.unlink()
    target.write_text(yaml.safe_dump(merged.values, sort_keys=False))
    return merged.files


def package_chart(chart_dir: Path, out_dir: Path, version: str, timeout: float) -> Path:
    try:
        return helmexec.package(chart_dir, out_dir, version=version, timeout=timeout)
    except helmexec.HelmError as exc:
        raise ChartBuildError(CHART_PACKAGE_ERROR, str(exc)) from None


def build_local(
    root: Path,
    chart_dir: Path,
    meta: ChartMetadata,
    *,
    version: str,
    values_files: Sequence[str],
    ignore_missing: bool,
    workdir: Path,
    timeout: float,
) -> BuiltChart:
    """Package a chart from an unpacked GitRepository artifact."""
    check_local_dependencies(root, chart_dir, meta)
    used: tuple[str, ...] = ()
    if values_files:
        used = write_values(chart_dir, root, values_files, ignore_missing)
    if _missing_dependencies(chart_dir, meta):
        try:
            helmexec.dependency_build(chart_dir, timeout=timeout)
        except helmexec.HelmError as exc:
            raise ChartBuildError(DEPENDENCY_BUILD_ERROR, str(exc)) from None
    path = package_chart(chart_dir, workdir / "out", version, timeout)
    return BuiltChart(path=path, name=meta.name, version=version, values_files=used)


def repackage_with_values(
    archive: Path,
    *,
    version: str,
    values_files: Sequence[str],
    ignore_missing: bool,
    workdir: Path,
    timeout: float,
) -> BuiltChart:
    """A pulled chart with `values_files` (inside the chart) merged into its values.yaml."""
    unpacked = extract(archive, workdir / "unpacked", "chart archive")
    chart_dir = chart_root_in_archive(unpacked)
    meta = read_chart_metadata(chart_dir)
    used = write_values(chart_dir, chart_dir, values_files, ignore_missing)
    path = package_chart(chart_dir, workdir / "out", version, timeout)
    return BuiltChart(path=path, name=meta.name, version=version, values_files=used)


def archive_file_name(name: str, version: str) -> str:
    """Flux's artifact file: ``<chart>-<version>.tgz``."""
    return f"{name}-{version}.tgz"


def chart_archive_metadata(archive: Path, workdir: Path) -> ChartMetadata:
    """Name and version of a downloaded chart archive (unpacked safely to read them)."""
    unpacked = extract(archive, workdir / f"meta-{os.getpid()}", "chart archive")
    return read_chart_metadata(chart_root_in_archive(unpacked))
