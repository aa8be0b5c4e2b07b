"""Source pipeline benchmark: git repository -> verified tarball artifact.

For repositories of about 1, 10 and 50 MB of content (many small YAML and Markdown
files plus larger binary and CSV blobs, generated from a seed), served by git's own
``git http-backend`` on loopback, this measures the step the source controller runs for
a GitRepository (`controllers.source.gitrepository.produce_artifact` with a real
`Storage`):

- a new artifact from scratch (clone, archive, store): wall time, CPU seconds of this
  process and its children (git), the artifact's size;
- a no-change poll (the same call with the stored artifact and reuse allowed): wall
  time, CPU seconds, and the git HTTP requests it made, from the server's request log.

The git server runs in its own process, which also generates the repositories, so its
CPU (``git http-backend``/``upload-pack``) is reported separately and the benchmark
process's CPU and peak RSS cover only what the controller runs. Every measurement is
repeated (``--repeat``) and reported as median, min and max. Writes
``source-pipeline.json`` and ``source-pipeline.md`` to ``--out`` (default
``bench/reports``) and prints the table.

    .venv/bin/python -m bench.source_pipeline            # full run, a few minutes
    .venv/bin/python -m bench.source_pipeline --quick    # tiny repository, one repetition
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from bench import common
from bench.common import max_rss_mib, process_cpu, rusage_cpu, stat_range, summarize
from controllers.source.gitrepository import (
    STORAGE_KIND,
    FetchInputs,
    GitRepositorySpec,
    produce_artifact,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from tests.support.gitrepos import Repo, run
from tests.support.gitservers import GitHttpServer, RequestRecord

T = TypeVar("T")

REPORT_NAME = "source-pipeline"
DEFAULT_SIZES_MB = (1.0, 10.0, 50.0)
QUICK_SIZE_MB = 0.1
DEFAULT_REPEAT = 3
MB = 1_000_000
# Generous, so a slow machine measures rather than fails; still bounded.
GIT_TIMEOUT = "5m"
SERVER_START_TIMEOUT = 30.0

# -- deterministic repository content -------------------------------------------------

_VOCABULARY = (
    "apply artifact branch build cache canary chart cluster commit config container controller "
    "cron deploy digest drift event fetch flux gateway health helm image ingress interval job "
    "key kustomize label limit log manifest metric namespace network node operator overlay "
    "patch pod policy probe prune queue quota release replica repository request resource "
    "revision role rollout route secret selector service shard signal source status storage "
    "tenant timeout token upgrade volume watch webhook the a of to and in is for with on that "
    "by this be from as are at or it not when"
)
_WORDS = tuple(_VOCABULARY.split())
_TEAMS = ("payments", "search", "identity", "platform", "data", "edge", "mobile", "billing")
_KINDS = ("deployment", "service", "configmap", "ingress", "hpa", "networkpolicy")


@dataclass(frozen=True)
class RepoShape:
    """What to generate: about `target_bytes` of content, `text_fraction` of it text."""

    label: str
    target_bytes: int
    text_fraction: float = 0.4


@dataclass(frozen=True)
class RepoContent:
    files: int
    text_files: int
    blob_files: int
    content_bytes: int


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + "."


def _manifest(rng: random.Random, team: str, app: str, kind: str, size: int) -> str:
    lines = [
        "apiVersion: apps/v1" if kind == "deployment" else "apiVersion: v1",
        f"kind: {kind.capitalize()}",
        "metadata:",
        f"  name: {app}",
        f"  namespace: {team}",
        "  labels:",
        f"    app.kubernetes.io/name: {app}",
        f"    app.kubernetes.io/part-of: {team}",
        f"    revision: {_token(rng)}",
        "spec:",
        f"  replicas: {rng.randint(1, 12)}",
        "  template:",
        "    spec:",
        "      containers:",
        f"        - name: {app}",
        f"          image: registry.example.com/{team}/{app}:1.{rng.randint(0, 40)}.0",
        "          env:",
    ]
    length = sum(len(line) + 1 for line in lines)
    while length < size:
        name = "_".join(rng.choice(_WORDS) for _ in range(2)).upper()
        entry = [
            f"            - name: {name}",
            f'              value: "{rng.choice(_WORDS)}-{_token(rng)}"',
            f"              # {_sentence(rng, rng.randint(4, 10))}",
        ]
        lines += entry
        length += sum(len(line) + 1 for line in entry)
    return "\n".join(lines) + "\n"


def _document(rng: random.Random, title: str, size: int) -> str:
    parts = [f"# {title}\n"]
    length = len(parts[0])
    while length < size:
        paragraph = " ".join(_sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 6)))
        parts.append(paragraph + "\n")
        length += len(paragraph) + 1
    return "\n".join(parts)


def _csv(rng: random.Random, size: int) -> bytes:
    rows = ["timestamp,service,latency_ms,status,bytes"]
    length = len(rows[0]) + 1
    stamp = 1_700_000_000
    while length < size:
        stamp += rng.randint(1, 30)
        row = (
            f"{stamp},{rng.choice(_TEAMS)}-{rng.choice(_WORDS)},"
            f"{rng.random() * 500:.3f},{rng.choice((200, 200, 200, 201, 404, 500))},"
            f"{rng.randint(0, 1 << 20)}"
        )
        rows.append(row)
        length += len(row) + 1
    return ("\n".join(rows) + "\n").encode()


def generate_content(root: Path, shape: RepoShape, seed: int) -> RepoContent:
    """Write the repository's files under `root`; the same seed gives the same bytes."""
    rng = random.Random(f"{seed}:{shape.label}:{shape.target_bytes}")
    text_budget = int(shape.target_bytes * shape.text_fraction)
    blob_budget = shape.target_bytes - text_budget
    blob_max = max(16 * 1024, min(4 * 1024 * 1024, shape.target_bytes // 10))
    text_bytes = blob_bytes = text_files = blob_files = 0

    def write(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    while text_bytes < text_budget:
        index = text_files
        team = _TEAMS[index % len(_TEAMS)]
        if rng.random() < 0.8:
            app = f"{rng.choice(_WORDS)}-{index // len(_KINDS)}"
            kind = _KINDS[index % len(_KINDS)]
            data = _manifest(rng, team, app, kind, rng.randint(300, 6000)).encode()
            write(f"apps/{team}/{app}/{kind}-{index}.yaml", data)
        else:
            topic = rng.choice(_WORDS)
            data = _document(rng, f"{topic} notes {index}", rng.randint(1000, 12000)).encode()
            write(f"docs/{team}/{topic}-{index}.md", data)
        text_bytes += len(data)
        text_files += 1
    while blob_bytes < blob_budget:
        size = min(rng.randint(blob_max // 8, blob_max), blob_budget - blob_bytes + 1024)
        if blob_files % 3 == 2:
            data = _csv(rng, size)
            write(f"data/metrics-{blob_files}.csv", data)
        else:
            # Already-compressed data: incompressible bytes. Not *.png or *.zip, which
            # the default ignore rules leave out of the artifact.
            data = rng.randbytes(size)
            write(f"assets/bundle-{blob_files}.bin", data)
        blob_bytes += len(data)
        blob_files += 1
    return RepoContent(
        files=text_files + blob_files,
        text_files=text_files,
        blob_files=blob_files,
        content_bytes=text_bytes + blob_bytes,
    )


@dataclass(frozen=True)
class RepoBuild:
    content: RepoContent
    pack_bytes: int
    commit: str


def build_repository(project_root: Path, name: str, shape: RepoShape, seed: int) -> RepoBuild:
    """Create bare repository `name` under `project_root` with one commit of generated content."""
    repo = Repo(project_root, name, default_branch="main")
    try:
        content = generate_content(repo.work, shape, seed)
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", f"{shape.label} of generated content")
        repo.git("push", "-q", "origin", "HEAD:refs/heads/main")
        # Served repositories are packed; do the same so every size is served alike.
        run(["git", "--git-dir", str(repo.bare), "repack", "-a", "-d", "-q"], env=repo.env)
        head = repo.head("main")
    finally:
        repo.close()
    pack_bytes = sum(p.stat().st_size for p in (repo.bare / "objects").rglob("*") if p.is_file())
    return RepoBuild(content=content, pack_bytes=pack_bytes, commit=head)


# -- the git server in its own process ----------------------------------------------------


def _serve(conn: Connection, project_root: str) -> None:
    """Build repositories and serve them, answering the parent until told to stop.

    Commands are tuples: ("build", name, shape, seed), ("clear",), ("requests",),
    ("cpu",), ("stop",). A failure is sent back as the exception.
    """
    with GitHttpServer(Path(project_root)) as server:
        conn.send(server.port)
        while True:
            command, *args = conn.recv()
            if command == "stop":
                break
            try:
                if command == "build":
                    conn.send(build_repository(Path(project_root), *args))
                elif command == "clear":
                    server.clear_requests()
                    conn.send(None)
                elif command == "requests":
                    conn.send(server.requests)
                elif command == "cpu":
                    conn.send(process_cpu())
                else:
                    conn.send(ValueError(f"unknown command {command!r}"))
            except Exception as exc:
                conn.send(RuntimeError(f"{command} failed in the git server process: {exc}"))
    conn.send("stopped")


class ServerProcess:
    """`GitHttpServer` in a child process, which also builds the repositories.

    So the benchmark process itself runs only what the controller runs: its CPU and
    peak RSS (and its children's, i.e. the controller's git) are not mixed with the
    server's packing or with generating the content.
    """

    def __init__(self, project_root: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(project_root)), name="bench-git-http", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(SERVER_START_TIMEOUT):
            self.close()
            raise RuntimeError(f"git server did not start in {SERVER_START_TIMEOUT}s")
        self.port = int(self._conn.recv())

    def _ask(self, *command: Any, timeout: float = 60.0) -> Any:
        self._conn.send(command)
        if not self._conn.poll(timeout):
            raise RuntimeError(f"git server process did not answer {command[0]} in {timeout}s")
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def build(self, name: str, shape: RepoShape, seed: int) -> RepoBuild:
        built: RepoBuild = self._ask("build", name, shape, seed, timeout=600.0)
        return built

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}.git"

    def clear(self) -> None:
        self._ask("clear")

    def requests(self) -> list[RequestRecord]:
        records: list[RequestRecord] = self._ask("requests")
        return records

    def cpu(self) -> float:
        return float(self._ask("cpu"))

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("stop",))
                if self._conn.poll(15):
                    self._conn.recv()
            except (OSError, EOFError):
                pass
            self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._conn.close()


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_self_s: float
    cpu_children_s: float
    server_cpu_s: float
    http_requests: int
    requests_by_command: dict[str, int]

    @property
    def cpu_s(self) -> float:
        return self.cpu_self_s + self.cpu_children_s

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "cpu_self_s": round(self.cpu_self_s, 4),
            "cpu_children_s": round(self.cpu_children_s, 4),
            "server_cpu_s": round(self.server_cpu_s, 4),
            "http_requests": self.http_requests,
            "requests_by_command": self.requests_by_command,
        }


def _request_kind(record: RequestRecord) -> str:
    if record.command:
        return record.command
    return "info/refs" if record.path.endswith("/info/refs") else record.path.rsplit("/", 1)[-1]


def measure(server: ServerProcess, action: Callable[[], T]) -> tuple[T, Sample]:
    """Run `action` once, with the server's request log cleared first."""
    server.clear()
    server_before = server.cpu()
    own_before = rusage_cpu(resource.RUSAGE_SELF)
    children_before = rusage_cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    own_after = rusage_cpu(resource.RUSAGE_SELF)
    children_after = rusage_cpu(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu() - server_before
    records = server.requests()
    sample = Sample(
        wall_s=wall,
        cpu_self_s=own_after - own_before,
        cpu_children_s=children_after - children_before,
        server_cpu_s=server_cpu,
        http_requests=len(records),
        requests_by_command=dict(sorted(Counter(_request_kind(r) for r in records).items())),
    )
    return result, sample


def summarize_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    return {
        "wall_s": summarize([s.wall_s for s in samples]),
        "cpu_s": summarize([s.cpu_s for s in samples]),
        "cpu_self_s": summarize([s.cpu_self_s for s in samples]),
        "cpu_children_s": summarize([s.cpu_children_s for s in samples]),
        "server_cpu_s": summarize([s.server_cpu_s for s in samples]),
        "http_requests": summarize([float(s.http_requests) for s in samples]),
        "samples": [s.to_json() for s in samples],
    }


def _count_files(tarball: Path) -> int:
    with tarfile.open(tarball, mode="r|gz") as tar:
        return sum(1 for member in tar if member.isfile())


def run_shape(
    server: ServerProcess, workdir: Path, shape: RepoShape, *, seed: int, repeat: int
) -> dict[str, Any]:
    name = f"bench-{shape.label.replace(' ', '').lower()}"
    build = server.build(name, shape, seed)
    storage = Storage(workdir / "storage", "bench.invalid:9090")
    key = ObjectKey(STORAGE_KIND, "bench", name)
    spec = GitRepositorySpec.parse(
        {
            "url": server.url(name),
            "interval": "10m",
            "timeout": GIT_TIMEOUT,
            "ref": {"branch": "main"},
        }
    )

    def inputs(current: Mapping[str, Any] | None) -> FetchInputs:
        return FetchInputs(
            key=key,
            spec=spec,
            secret=None,
            verify_keys=None,
            includes=(),
            current=current,
            reuse_allowed=current is not None,
        )

    new_samples: list[Sample] = []
    artifacts: list[StoredArtifact] = []
    for _ in range(repeat):
        storage.delete(key)  # from scratch: nothing stored for this object
        outcome, sample = measure(server, lambda: produce_artifact(storage, inputs(None)))
        if outcome.unchanged or not isinstance(outcome.artifact, StoredArtifact):
            raise RuntimeError(f"{name}: expected a new artifact, got {outcome!r}")
        new_samples.append(sample)
        artifacts.append(outcome.artifact)
    artifact = artifacts[-1]
    if not storage.verify(artifact.path, artifact.digest):
        raise RuntimeError(f"{name}: stored artifact does not match its digest")
    artifact_files = _count_files(storage.local_path(artifact.path))

    poll_samples: list[Sample] = []
    current = artifact.to_status()
    for _ in range(repeat):
        outcome, sample = measure(server, lambda: produce_artifact(storage, inputs(current)))
        if not outcome.unchanged:
            raise RuntimeError(f"{name}: a no-change poll built a new artifact")
        poll_samples.append(sample)
    storage.delete(key)

    content = build.content
    return {
        "label": shape.label,
        "target_bytes": shape.target_bytes,
        "repository": {
            "files": content.files,
            "text_files": content.text_files,
            "blob_files": content.blob_files,
            "content_bytes": content.content_bytes,
            "pack_bytes": build.pack_bytes,
            "commit": build.commit,
        },
        "artifact": {
            "size_bytes": artifact.size,
            "digest": artifact.digest,
            "revision": artifact.revision,
            "files": artifact_files,
            "compression_ratio": round(content.content_bytes / artifact.size, 3),
            # The archive is deterministic: every rebuild must give the same bytes.
            "deterministic": len({a.digest for a in artifacts}) == 1,
        },
        "new_artifact": summarize_samples(new_samples),
        "no_change_poll": summarize_samples(poll_samples),
        # The process's high-water mark so far (children's ru_maxrss is not reported: a
        # forked child inherits its parent's RSS as its own high-water mark).
        "peak_rss_mib_so_far": max_rss_mib(resource.RUSAGE_SELF),
    }


# -- the report ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=30)
    return {
        **common.machine_info(),
        "git": git.stdout.strip(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        # Other work on the machine skews wall times; this says how busy it was.
        "load_average_at_start": common.load_average(),
    }


def _mb(size: float) -> str:
    return f"{size / MB:.1f} MB" if size >= MB / 10 else f"{size / 1000:.0f} kB"


def render_table(report: Mapping[str, Any]) -> str:
    """A Markdown table of the headline figures: medians with (min-max)."""
    lines = [
        f"# Source pipeline benchmark ({report['created']})",
        "",
        f"{report['machine']['cores']} cores, Python {report['machine']['python']}, "
        f"{report['machine']['git']}; {report['repetitions']} repetition(s), "
        "median (min-max). CPU is this process plus its children (git); the git server's "
        "CPU is separate. Load average (1 min) "
        f"{report['machine']['load_average_at_start'][0]:g} at start, "
        f"{report['machine']['load_average_at_end'][0]:g} at end: other work on the "
        "machine stretches wall times more than CPU times.",
        "",
        "| repository | files | content | artifact | new artifact: wall s | CPU s "
        "| server CPU s | no-change poll: wall ms | CPU ms | git HTTP requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in report["scenarios"]:
        repo, artifact = scenario["repository"], scenario["artifact"]
        new, poll = scenario["new_artifact"], scenario["no_change_poll"]
        lines.append(
            f"| {scenario['label']} | {repo['files']} | {_mb(repo['content_bytes'])} "
            f"| {_mb(artifact['size_bytes'])} | {stat_range(new['wall_s'])} "
            f"| {stat_range(new['cpu_s'])} "
            f"| {stat_range(new['server_cpu_s'])} | {stat_range(poll['wall_s'], 1000, 0)} "
            f"| {stat_range(poll['cpu_s'], 1000, 0)} | {poll['http_requests']['median']:.0f} |"
        )
    rss = report["peak_rss_mib"]
    lines += [
        "",
        f"Peak RSS of the benchmark process: {rss['process']:.1f} MiB "
        f"({rss['baseline']:.1f} MiB after imports, before any work).",
        "",
    ]
    return "\n".join(lines)


def run_benchmark(
    sizes_mb: Sequence[float], *, repeat: int, seed: int, quick: bool
) -> dict[str, Any]:
    shapes = [RepoShape(_label(size), int(size * MB)) for size in sizes_mb]
    started = time.perf_counter()
    baseline_rss = max_rss_mib(resource.RUSAGE_SELF)  # after imports, before any work
    machine = machine_info()
    scenarios: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-source-") as tmp:
        project_root = Path(tmp) / "git"
        project_root.mkdir()
        server = ServerProcess(project_root)
        try:
            for shape in shapes:
                workdir = Path(tmp) / shape.label.replace(" ", "")
                workdir.mkdir()
                scenarios.append(run_shape(server, workdir, shape, seed=seed, repeat=repeat))
        finally:
            server.close()
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=seed),
        "repetitions": repeat,
        "machine": {**machine, "load_average_at_end": common.load_average()},
        "scenarios": scenarios,
        "peak_rss_mib": {
            "baseline": baseline_rss,
            "process": max_rss_mib(resource.RUSAGE_SELF),
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _label(size_mb: float) -> str:
    return f"{size_mb:g} MB"


def _sizes(value: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes in MB like 1,10,50, got {value!r}"
        ) from None
    if not sizes or any(not 0 < size <= 500 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be in (0, 500] MB, got {value!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(
        "bench.source_pipeline", __doc__, "one tiny repository, one repetition"
    )
    parser.add_argument("--sizes", type=_sizes, default=None, help="repository sizes in MB")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per measurement")
    args = parser.parse_args(argv)
    sizes = args.sizes or ((QUICK_SIZE_MB,) if args.quick else DEFAULT_SIZES_MB)
    repeat = args.repeat or (1 if args.quick else DEFAULT_REPEAT)
    if not 1 <= repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    report = run_benchmark(sizes, repeat=repeat, seed=args.seed, quick=args.quick)
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
