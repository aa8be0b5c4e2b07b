"""Build: the Kustomization's manifests from an extracted artifact, by ``kustomize build``.

The artifact tree is shared by every Kustomization of the same revision, so each build
works in a private copy of what it can read (its directory and the directories its
kustomizations name, not the whole tree): the kustomization is found or generated there
and the spec's overlays merged into it (`generate`), local references are checked, and the pinned
kustomize binary renders the result. Output is split per object, keeping each object's
YAML text as kustomize printed it, because post-build substitution works on that text
(Flux substitutes on each resource's YAML, not on a re-serialisation of it).
A plain directory, or one whose kustomization only lists its own files, with at most a
namespace to set, may skip all of that (`inprocess`, when the caller allows it).

kustomize runs with ``--load-restrictor LoadRestrictionsRootOnly``, no plugins, no git on
its PATH and an unusable HTTP proxy; remote bases and files (unless ``--no-remote-bases``
is turned off, when kustomize gets git and the network), references that leave the
artifact, and generators, transformers or validators that are not kustomize's builtins
(exec and Go plugins, KRM functions) are refused before it starts, naming the
kustomization file and the entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import posixpath
import re
import shutil
import signal
import stat
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from controllers.toolkit.artifacts import PathError, clean_relative, remove_tree
from controllers.toolkit.kustomize.generate import (
    BuildError,
    BuildOptions,
    YamlLoader,
    find_kustomization,
    is_local_relative,
    write_kustomization,
    yaml_problem,
)
from controllers.toolkit.runtime.conditions import ARTIFACT_FAILED

__all__ = [
    "BuildError",
    "Manifest",
    "PathNotFoundError",
    "apply_common_metadata",
    "build",
    "check_references",
    "copy_build_inputs",
    "copy_tree",
    "find_kustomize",
    "parse_output",
    "resolve_path",
    "run_kustomize",
]

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_OUTPUT = 256 * 1024 * 1024
_MAX_STDERR = 64 * 1024
_REAP_TIMEOUT = 10.0
_REPO_ROOT = Path(__file__).resolve().parents[3]
# A proxy nobody listens on: kustomize's HTTP fetches fail instead of reaching out.
_NO_NETWORK_PROXY = "http://127.0.0.1:9"
_DOC_SEPARATOR = re.compile(r"^---[ \t]*\n", re.MULTILINE)

# Kustomization fields naming other kustomizations (directories) or files.
_DIRECTORY_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators")
_FILE_LIST_FIELDS = ("crds", "configurations", "patchesStrategicMerge")
_PATH_ITEM_FIELDS = ("patches", "patchesJson6902", "replacements")
_GENERATOR_FIELDS = ("configMapGenerator", "secretGenerator")


class PathNotFoundError(BuildError):
    """spec.path is not a directory inside the artifact (Flux reports ArtifactFailed)."""

    REASON: ClassVar[str] = ARTIFACT_FAILED


@dataclass(frozen=True, eq=False)
class Manifest:
    """One built object: its YAML as kustomize printed it, and that YAML parsed."""

    text: str
    object: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.object.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.object.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.object.get("metadata") or {}).get("namespace") or "")

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), for messages."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


# --- inputs -------------------------------------------------------------------------------


def find_kustomize() -> str:
    """The kustomize binary: on PATH, else the pinned one in the repository's .tools/bin."""
    found = shutil.which("kustomize")
    if found:
        return found
    pinned = _REPO_ROOT / ".tools" / "bin" / "kustomize"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    raise BuildError("kustomize binary not found on PATH or in .tools/bin")


def resolve_path(tree: Path, path: str | None) -> str:
    """spec.path as a clean path relative to the artifact root ("" for the root)."""
    raw = path or ""
    try:
        rel = clean_relative(raw, "spec.path")
    except PathError as exc:
        raise PathNotFoundError(f"kustomization path invalid: {exc}") from None
    current = tree
    for part in rel.split("/") if rel else []:
        current = current / part
        try:
            st = current.lstat()
        except OSError:
            raise PathNotFoundError(
                f"kustomization path not found: '{raw}' is not in the artifact"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise PathNotFoundError(
                f"kustomization path not found: '{raw}' is not a directory in the artifact"
            )
    return rel


def copy_tree(source: Path, dest: Path) -> None:
    """Copy the regular files and directories of `source` to the new directory `dest`.

    Modes are set afresh (0755/0644), so a read-only shared tree gives a writable copy;
    links and special files are left out, so the copy can never point outside itself.
    """
    dest.mkdir(mode=0o755)
    _merge_tree(source, dest)


def _merge_tree(source: Path, dest: Path) -> None:
    """Copy what `source` holds and the existing directory `dest` lacks (nothing replaced)."""
    stack = [(source, dest)]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                target = dst_dir / entry.name
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileExistsError):
                        target.mkdir(mode=0o755)
                    stack.append((Path(entry.path), target))
                elif entry.is_file(follow_symlinks=False) and not target.exists():
                    _copy_file(Path(entry.path), target, entry.stat(follow_symlinks=False))


def _copy_file(source: Path, target: Path, st: os.stat_result) -> None:
    shutil.copyfile(source, target, follow_symlinks=False)
    os.chmod(target, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)


def _copy_into(tree: Path, copy_root: Path, rel: str) -> bool:
    """Copy `rel` (a directory or a regular file of `tree`) into the copy, if there.

    Returns whether `rel` is a directory of the tree. Links and special files are
    never copied, as in `copy_tree`.
    """
    source = tree / rel if rel else tree
    target = copy_root / rel if rel else copy_root
    try:
        st = source.lstat()
    except (OSError, ValueError):
        return False
    if stat.S_ISDIR(st.st_mode):
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        _merge_tree(source, target)
        return True
    if stat.S_ISREG(st.st_mode) and not target.exists():
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _copy_file(source, target, st)
    return False


def copy_build_inputs(tree: Path, copy_root: Path, rel: str, options: BuildOptions) -> Path:
    """The directory `rel` of `tree` and everything its build can read, copied to `copy_root`.

    The shared tree is read-only and holds every Kustomization's files; copying all of
    it for each build was most of a reconcile's cost for a repository of many apps.
    kustomize (root-only load restrictor) reads the kustomization directory's own
    files and the directories its kustomizations name, recursively, so those are
    what is copied, at the same relative places: a build sees the same files, and
    kustomize's own errors are the same, as with a copy of the whole tree. The
    spec's overlays are merged into the copy's kustomization first, since they may
    name components outside `rel`. Returns the kustomization directory in the copy.
    """
    copy_root.mkdir(mode=0o755)
    directory = copy_root / rel if rel else copy_root
    _copy_into(tree, copy_root, rel)
    for component in options.components:
        # Before the merge: ignoreMissingComponents judges them by what is in the copy.
        resolved = _resolve_local(rel, component)
        if resolved is not None:
            _copy_into(tree, copy_root, resolved)
    write_kustomization(directory, options, copy_root)
    seen: set[str] = set()
    queue: deque[str] = deque([rel])
    while queue:
        rel_dir = queue.popleft()
        if rel_dir in seen:
            continue
        seen.add(rel_dir)
        kustomization = _load_kustomization(copy_root / rel_dir if rel_dir else copy_root)
        if kustomization is None:
            continue
        for _field, entry, names_directory in _references(kustomization):
            resolved = _resolve_local(rel_dir, entry)
            if resolved is None:
                continue  # check_references refuses it, naming the entry
            is_directory = _copy_into(tree, copy_root, resolved)
            if names_directory and is_directory:
                queue.append(resolved)
    return directory


# --- references ---------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def _file_references(kustomization: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, path) for every entry that names a file."""
    for key in _FILE_LIST_FIELDS:
        for entry in _strings(kustomization.get(key)):
            yield key, entry
    for key in _PATH_ITEM_FIELDS:
        for item in _items(kustomization.get(key)):
            if isinstance(item, Mapping) and isinstance(item.get("path"), str):
                yield f"{key}.path", item["path"]
    openapi = kustomization.get("openapi")
    if isinstance(openapi, Mapping) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"]
    for key in _GENERATOR_FIELDS:
        for generator in _items(kustomization.get(key)):
            if not isinstance(generator, Mapping):
                continue
            for entry in _strings(generator.get("files")):
                # "key=path" names the data key; the file is after the first "=".
                yield f"{key}.files", entry.split("=", 1)[-1]
            for entry in [*_strings(generator.get("envs")), *_strings(generator.get("env"))]:
                yield f"{key}.envs", entry


def _items(value: Any) -> list[Any]:
    """The entries of a list field; nothing for any other value (kustomize names it)."""
    return value if isinstance(value, list) else []


def _inline(entry: str) -> bool:
    # Generators, transformers and patchesStrategicMerge may hold inline YAML, not paths.
    return "\n" in entry


def _references(kustomization: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(field, entry, whether the field names directories) for each local-looking entry."""
    for field in _DIRECTORY_FIELDS:
        for entry in _strings(kustomization.get(field)):
            if not _inline(entry):
                yield field, entry, True
    for field, entry in _file_references(kustomization):
        if not _inline(entry):
            yield field, entry, False


def _load_kustomization(directory: Path) -> Mapping[str, Any] | None:
    """The kustomization in `directory`, or None (kustomize reports what does not parse)."""
    kfile = find_kustomization(directory)
    if kfile is None:
        return None
    try:
        documents = [d for d in yaml.load_all(kfile.read_bytes(), Loader=YamlLoader) if d]
    except (OSError, yaml.YAMLError):
        return None
    if len(documents) != 1 or not isinstance(documents[0], Mapping):
        return None
    return documents[0]


def _resolve_local(base: str, entry: str) -> str | None:
    """`entry` of the kustomization in `base`, relative to the root; None unless local inside."""
    if entry.startswith("/") or not is_local_relative(entry):
        return None
    resolved = posixpath.normpath(posixpath.join(base, entry) if base else entry)
    if resolved == ".." or resolved.startswith("../"):
        return None
    return "" if resolved == "." else resolved


_PLUGIN_FIELDS = ("generators", "transformers", "validators")
# Annotations that make a resource a KRM function kustomize would run (exec or container).
_FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")


def _plugin_problem(document: Any) -> str | None:
    """Why a generators/transformers/validators config would run code, or None."""
    if not isinstance(document, Mapping):
        return None
    metadata = document.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if isinstance(annotations, Mapping):
        for key in _FUNCTION_ANNOTATIONS:
            if key in annotations:
                return f"it is a KRM function ({key}); functions and exec plugins are not allowed"
    api_version = document.get("apiVersion")
    if api_version is not None and api_version != "builtin":
        return (
            f"it names the external plugin {api_version}/{document.get('kind')}; only "
            "kustomize's builtin generators and transformers are allowed"
        )
    return None


def _check_plugin_entry(root: Path, base: str, entry: str, field: str, shown: str) -> None:
    """Refuse a generators/transformers/validators entry (inline or a file) that runs code."""
    if _inline(entry):
        texts = [entry]
    else:
        target = root / posixpath.normpath(posixpath.join(base, entry) if base else entry)
        if not target.is_file() or target.is_symlink():
            return  # a directory (a kustomization, walked itself) or missing (kustomize says)
        try:
            texts = [target.read_text(encoding="utf-8")]
        except (OSError, UnicodeError):
            return
    for text in texts:
        try:
            documents = list(yaml.load_all(text, Loader=YamlLoader))
        except yaml.YAMLError:
            continue
        for document in documents:
            problem = _plugin_problem(document)
            if problem:
                what = "inline entry" if _inline(entry) else f"entry '{entry}'"
                raise BuildError(f"'{shown}': {field} {what} is refused: {problem}")


def check_references(root: Path, start: Path, *, allow_remote: bool = False) -> None:
    """Refuse references leaving `root` and plugins, from `start` onwards.

    Walks the kustomizations reachable from the one in `start` (a directory inside
    `root`). Remote references are refused too unless `allow_remote`. kustomize itself
    reports what does not exist or does not parse.
    """
    seen: set[str] = set()
    queue: deque[str] = deque([start.relative_to(root).as_posix()])
    while queue:
        rel_dir = queue.popleft()
        rel_dir = "" if rel_dir == "." else rel_dir
        if rel_dir in seen:
            continue
        seen.add(rel_dir)
        directory = root / rel_dir if rel_dir else root
        kustomization = _load_kustomization(directory)
        if kustomization is None:
            continue
        kfile = find_kustomization(directory)
        shown = kfile.relative_to(root).as_posix() if kfile else rel_dir
        if kustomization.get("helmCharts") or kustomization.get("helmGlobals"):
            raise BuildError(
                f"'{shown}': helmCharts runs helm inside kustomize and is not allowed; "
                "use a HelmRelease"
            )
        for field in _PLUGIN_FIELDS:
            for entry in _strings(kustomization.get(field)):
                if _inline(entry) or is_local_relative(entry):
                    _check_plugin_entry(root, rel_dir, entry, field, shown)
        for field, entry, names_directory in _references(kustomization):
            if allow_remote and not entry.startswith("/") and not is_local_relative(entry):
                continue  # kustomize fetches it; nothing local to check
            resolved = _resolve_local(rel_dir, entry)
            if resolved is None:
                raise BuildError(f"'{shown}': {field} entry '{entry}' {_refusal(entry)}")
            target = root / resolved if resolved else root
            if names_directory and _is_real_directory(target):
                queue.append(resolved)


def _is_real_directory(path: Path) -> bool:
    """A directory, not a link to one; False for what cannot be looked up (e.g. a name too
    long for the filesystem: kustomize then says what is wrong with it)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except (OSError, ValueError):
        return False


def _refusal(entry: str) -> str:
    """Why `_resolve_local` refused `entry`, as the end of a sentence naming it."""
    if entry.startswith("/"):
        return "is an absolute path; paths must be relative and stay inside the artifact"
    if not is_local_relative(entry):
        return (
            "is remote; remote bases and files are not allowed (--no-remote-bases), "
            "vendor them into the repository"
        )
    return "points outside the artifact"


# --- running kustomize --------------------------------------------------------------------


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of `stream`, then whether it had more (the rest is drained)."""
    chunks: list[bytes] = []
    size = 0
    overflow = False
    while True:
        chunk = await stream.read(1 << 16)
        if not chunk:
            return b"".join(chunks), overflow
        if overflow:
            continue
        size += len(chunk)
        if size > limit:
            overflow = True
            keep = limit - (size - len(chunk))
            chunks.append(chunk[:keep])
            continue
        chunks.append(chunk)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill kustomize's process group and reap it, without waiting on it forever."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    # wait() also waits for the pipes to close, which a stray grandchild could hold open.
    with contextlib.suppress(ProcessLookupError, TimeoutError):
        await asyncio.wait_for(proc.wait(), _REAP_TIMEOUT)


async def run_kustomize(
    binary: str,
    directory: Path,
    work: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
    allow_network: bool = False,
) -> str:
    """``kustomize build`` of `directory`; `work` is a private scratch directory.

    With `allow_network`, kustomize gets git on its PATH and no dead proxy, so it can
    fetch remote bases; otherwise it has neither.

    Raises BuildError with kustomize's own message (paths made relative to the artifact)
    on failure, on timeout, or when the output exceeds `max_output` bytes.
    """
    empty_bin = work / "no-bin"
    empty_bin.mkdir(exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {
        # No git (remote bases), no plugins, no network: only what is in the artifact.
        "PATH": str(empty_bin),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "TMPDIR": str(home),
        "HTTP_PROXY": _NO_NETWORK_PROXY,
        "HTTPS_PROXY": _NO_NETWORK_PROXY,
        "http_proxy": _NO_NETWORK_PROXY,
        "https_proxy": _NO_NETWORK_PROXY,
        "NO_PROXY": "",
        "no_proxy": "",
        "GIT_TERMINAL_PROMPT": "0",
    }
    git = shutil.which("git")
    if allow_network and git:
        link = empty_bin / "git"
        if not link.exists():
            link.symlink_to(git)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            if os.environ.get(name):
                env[name] = os.environ[name]
            else:
                del env[name]
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "build",
            "--load-restrictor",
            "LoadRestrictionsRootOnly",
            str(directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(work),
            env=env,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    except OSError as exc:
        raise BuildError(f"running kustomize failed: {exc.strerror or exc}") from None
    assert proc.stdout is not None and proc.stderr is not None

    async def collect() -> tuple[tuple[bytes, bool], tuple[bytes, bool], int]:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = await asyncio.gather(
            _read_bounded(proc.stdout, max_output), _read_bounded(proc.stderr, _MAX_STDERR)
        )
        return out, err, await proc.wait()

    try:
        (stdout, too_much), (stderr, _), code = await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        await _kill(proc)
        raise BuildError(f"kustomize build timed out after {timeout:g}s") from None
    except BaseException:
        await _kill(proc)
        raise
    if too_much:
        raise BuildError(f"kustomize build output is larger than {max_output} bytes")
    if code != 0:
        message = _relative_paths(stderr.decode("utf-8", "replace"), work)
        message = message.strip().removeprefix("Error: ").strip()
        raise BuildError(f"kustomize build failed: {message or f'exit status {code}'}")
    return stdout.decode("utf-8", "replace")


def _relative_paths(text: str, work: Path) -> str:
    """kustomize's message with the private copy's paths shown as the repository's."""
    tree = work / "tree"
    for prefix in (f"{tree}/", f"{work}/"):
        text = text.replace(prefix, "")
    return text.replace(str(tree), ".").replace(str(work), ".")


def parse_output(text: str) -> list[Manifest]:
    """Split kustomize's output into objects, each with its own YAML text."""
    manifests: list[Manifest] = []
    for index, chunk in enumerate(_DOC_SEPARATOR.split(text), start=1):
        if not chunk.strip():
            continue
        try:
            document = yaml.load(chunk, Loader=YamlLoader)
        except yaml.YAMLError as exc:
            raise BuildError(
                f"kustomize output document {index} is invalid YAML: {yaml_problem(exc)}"
            ) from None
        except UnicodeError:
            raise BuildError(f"kustomize output document {index} is not valid Unicode") from None
        if document is None:
            continue
        manifests.append(_manifest(chunk, document, f"kustomize output document {index}"))
    return manifests


def _manifest(text: str, document: Any, where: str) -> Manifest:
    if not isinstance(document, dict):
        raise BuildError(f"{where} is not a Kubernetes object")
    manifest = Manifest(text=text, object=document)
    metadata = document.get("metadata")
    fields = (
        document.get("apiVersion"),
        document.get("kind"),
        metadata.get("name") if isinstance(metadata, dict) else None,
    )
    if not all(isinstance(value, str) and value for value in fields):
        raise BuildError(
            f"{where} ({manifest.ref}) lacks a Kubernetes apiVersion, kind or metadata.name"
        )
    return manifest


# --- the step -----------------------------------------------------------------------------


def _prepare(
    tree: Path, copy_root: Path, rel: str, options: BuildOptions, allow_remote: bool
) -> Path:
    try:
        directory = copy_build_inputs(tree, copy_root, rel, options)
    except OSError as exc:
        raise BuildError(f"copying the artifact failed: {exc.strerror or exc}") from None
    check_references(copy_root, directory, allow_remote=allow_remote)
    return directory


async def build(
    tree: Path,
    path: str | None,
    options: BuildOptions,
    *,
    kustomize: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
    work_root: Path | None = None,
    allow_remote: bool = False,
    in_process: bool = False,
) -> list[Manifest]:
    """Build the manifests at `path` of the extracted artifact `tree`.

    `options` are the Kustomization spec's build fields (targetNamespace,
    namePrefix, nameSuffix, patches, images, components, ignoreMissingComponents,
    buildMetadata), parsed. `tree` is only read. `allow_remote` (``--no-remote-bases``
    turned off) lets kustomize fetch remote bases with git and the network. With
    `in_process`, the directory is read directly, without kustomize, when
    `inprocess.build_in_process` can promise kustomize's output (a plain directory or
    one listing its own files, a namespace at most; the caller passes it only when
    the manifests' text is not substituted). Raises PathNotFoundError
    (ArtifactFailed) for a bad path and BuildError (BuildFailed) for everything else, naming
    the file and the problem.
    """
    rel = resolve_path(tree, path)
    if in_process:
        # Imported here: the fast path builds Manifests, defined above.
        from controllers.toolkit.kustomize.inprocess import build_in_process

        manifests = await asyncio.to_thread(
            build_in_process, tree, rel, options, max_bytes=max_output // 2
        )
        if manifests is not None:
            return manifests
    binary = kustomize or find_kustomize()
    # Resolved, so kustomize's messages (it resolves symlinks) show the prefix we strip.
    work = Path(tempfile.mkdtemp(prefix="headwater-build-", dir=work_root)).resolve()
    try:
        directory = await asyncio.to_thread(
            _prepare, tree, work / "tree", rel, options, allow_remote
        )
        text = await run_kustomize(
            binary,
            directory,
            work,
            timeout=timeout,
            max_output=max_output,
            allow_network=allow_remote,
        )
        return await asyncio.to_thread(parse_output, text)
    finally:
        await asyncio.to_thread(remove_tree, work)


@dataclass(frozen=True)
class CommonMetadata:
    """``spec.commonMetadata``: labels and annotations for every applied object."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @classmethod
    def parse(cls, common_metadata: Mapping[str, Any] | None) -> CommonMetadata | None:
        if not common_metadata:
            return None
        return cls(
            labels={str(k): str(v) for k, v in (common_metadata.get("labels") or {}).items()},
            annotations={
                str(k): str(v) for k, v in (common_metadata.get("annotations") or {}).items()
            },
        )


def apply_common_metadata(
    objects: Sequence[Mapping[str, Any]], common_metadata: CommonMetadata | None
) -> list[dict[str, Any]]:
    """``spec.commonMetadata`` set on every object's own labels and annotations.

    Flux applies it after the build and substitution, to ``metadata`` only (not to
    selectors or templates, unlike kustomize's commonLabels); its values win.
    """
    labels = dict(common_metadata.labels) if common_metadata else {}
    annotations = dict(common_metadata.annotations) if common_metadata else {}
    result: list[dict[str, Any]] = []
    for obj in objects:
        updated = dict(obj)
        if labels or annotations:
            metadata = copy.copy(dict(obj.get("metadata") or {}))
            if labels:
                metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
            if annotations:
                metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
            updated["metadata"] = metadata
        result.append(updated)
    return result
