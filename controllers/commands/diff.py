"""`headwater diff kustomization NAME`: what a change would do to the cluster, before it is merged.

    headwater diff ks web -n apps --path ./checkout        # a local tree as the artifact
    headwater diff ks web -n apps --ref feature/replicas   # a branch of its GitRepository
    headwater diff ks web -n apps --path . -o json

The build is the controller's own (toolkit.kustomize): the same generated
kustomization and spec.build options, spec.path inside the tree, postBuild
substitution with substituteFrom read from the cluster, commonMetadata and
the owner labels. Decryption is off: SealedSecrets are shown as they are
and, when the Kustomization decrypts them, not compared (the cluster holds
their Secret). Then every object gets a server-side dry-run apply
(toolkit.apply.ssa, as the controller's plan) and the result is compared
with the live object. With spec.prune, what the inventory holds and the
build no longer has is listed as to be pruned.

Secret values are never printed: a changed value shows as `(sensitive, changed)`.
The CLI reads and dry-runs with the user's own credentials, not the
Kustomization's serviceAccountName; a remote spec.kubeConfig is refused.

Exit status: 0 nothing would change, 1 something would, 2 the diff could not be made.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import difflib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException
from rich.markup import escape

from controllers.commands import common, kinds, waiting
from controllers.commands.common import CliError, Session
from controllers.sealing import format as sealing
from controllers.toolkit.apply import diff as fields
from controllers.toolkit.apply import ssa
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId, resource_of
from controllers.toolkit.apply.prune import PruneOptions
from controllers.toolkit.apply.resources import ApiError, NoMatchError, ResourceClient
from controllers.toolkit.git.checkout import fetch
from controllers.toolkit.git.credentials import auth_from_secret, proxy_from_secret
from controllers.toolkit.git.gitref import GitRef
from controllers.toolkit.git.giturl import parse_git_url
from controllers.toolkit.kustomize.build import CommonMetadata, apply_common_metadata, build
from controllers.toolkit.kustomize.generate import BuildOptions
from controllers.toolkit.kustomize.substitute import PostBuild, read_as, substitute
from controllers.toolkit.runtime.durations import parse_duration
from controllers.toolkit.runtime.frame import ReconcileError

EXIT_NO_CHANGES = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2

GROUP = "kustomize.toolkit.fluxcd.io"
FIELD_MANAGER = "headwater-kustomize"
SEALED_PROVIDER = "sealedsecrets"
CHANGED_VALUE = "(sensitive, changed)"
DEFAULT_TIMEOUT = 120.0


# --- rendering (pure) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObjectDiff:
    """One object's planned change: its id, the action and the masked before/after views."""

    subject: str
    action: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changes: tuple[fields.FieldChange, ...] = ()
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.action in (ssa.Action.CREATED, ssa.Action.CONFIGURED, ssa.Action.DELETED)

    def unified(self) -> str:
        return unified_diff(self.subject, self.before, self.after)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"object": self.subject, "action": self.action}
        if self.note:
            data["note"] = self.note
        if self.changed:
            data["changes"] = [{"path": c.path, "old": c.old, "new": c.new} for c in self.changes]
            data["diff"] = self.unified()
        return data


def _is_secret_view(view: Mapping[str, Any] | None) -> bool:
    return view is not None and fields.is_secret(view)


def _mask_values(values: Any, other: Any, *, changed_marker: bool) -> Any:
    """A Secret's `data`/`stringData` with every value replaced by a marker."""
    if not isinstance(values, Mapping):
        return fields.SENSITIVE
    other_map = other if isinstance(other, Mapping) else {}
    masked = {}
    for key, value in values.items():
        differs = key in other_map and other_map[key] != value
        masked[key] = CHANGED_VALUE if changed_marker and differs else fields.SENSITIVE
    return masked


def _mask_annotations(meta: Any) -> Any:
    if not isinstance(meta, Mapping) or not isinstance(meta.get("annotations"), Mapping):
        return meta
    annotations = dict(meta["annotations"])
    if fields.LAST_APPLIED in annotations:
        annotations[fields.LAST_APPLIED] = fields.SENSITIVE
    return {**meta, "annotations": annotations}


def mask_secrets(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both views with a Secret's values masked; the `after` side marks the changed ones.

    A value is never shown, hashed or measured: only whether it changed (a
    hash of a short password would give it away).
    """
    if not (_is_secret_view(before) or _is_secret_view(after)):
        return (dict(before) if before is not None else None), (
            dict(after) if after is not None else None
        )

    def masked(view: Mapping[str, Any] | None, other: Mapping[str, Any] | None, mark: bool) -> Any:
        if view is None:
            return None
        out = dict(view)
        for key in ("data", "stringData"):
            if key in out:
                out[key] = _mask_values(out[key], (other or {}).get(key), changed_marker=mark)
        if "metadata" in out:
            out["metadata"] = _mask_annotations(out["metadata"])
        return out

    return masked(before, after, False), masked(after, before, True)


def _yaml_lines(view: Mapping[str, Any] | None) -> list[str]:
    if view is None:
        return []
    return yaml.safe_dump(dict(view), sort_keys=True, default_flow_style=False).splitlines(
        keepends=True
    )


def unified_diff(
    subject: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> str:
    """`diff -u` of the two views as YAML, `live/` against `build/` (values already masked)."""
    lines = difflib.unified_diff(
        _yaml_lines(before),
        _yaml_lines(after),
        fromfile=f"live/{subject}" if before is not None else "/dev/null",
        tofile=f"build/{subject}" if after is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def object_diff(entry: ssa.ChangeSetEntry, desired: Mapping[str, Any] | None) -> ObjectDiff:
    """A planned entry as a diff; a new object without a dry-run result shows as built."""
    after = entry.after
    if after is None and entry.action is ssa.Action.CREATED and desired is not None:
        after = fields.comparable(desired)
    before = entry.before if entry.action is not ssa.Action.CREATED else None
    if entry.action in (ssa.Action.UNCHANGED, ssa.Action.SKIPPED):
        before = after = None
    masked_before, masked_after = mask_secrets(before, after)
    return ObjectDiff(
        entry.subject, str(entry.action), masked_before, masked_after, entry.changes, entry.note
    )


def pruned_diff(object_id: ObjectId, live: Mapping[str, Any]) -> ObjectDiff:
    before, _ = mask_secrets(fields.comparable(live), None)
    return ObjectDiff(object_id.subject, str(ssa.Action.DELETED), before, None)


@dataclasses.dataclass
class DiffResult:
    kustomization: str
    source: str
    objects: list[ObjectDiff]
    pruned: list[ObjectDiff]
    # SealedSecrets the controller would decrypt: shown, never compared.
    sealed: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.pruned) or any(o.changed for o in self.objects)

    def to_json(self) -> dict[str, Any]:
        return {
            "kustomization": self.kustomization,
            "source": self.source,
            "changed": self.changed,
            "objects": [o.to_json() for o in self.objects],
            "pruned": [o.to_json() for o in self.pruned],
            "sealedSecrets": list(self.sealed),
        }

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for obj in [*self.objects, *self.pruned]:
            counts[obj.action] = counts.get(obj.action, 0) + 1
        order = ("created", "configured", "deleted", "unchanged", "skipped")
        parts = [f"{counts[a]} {'to prune' if a == 'deleted' else a}" for a in order if a in counts]
        if self.sealed:
            parts.append(f"{len(self.sealed)} sealed")
        return ", ".join(parts) or "no objects"


# --- the spec ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiffSpec:
    """The fields of a Kustomization's spec the diff needs, parsed as the controller does."""

    path: str
    prune: bool
    timeout: float
    source_kind: str
    source_name: str
    source_namespace: str
    build: BuildOptions
    post_build: PostBuild | None
    common_metadata: CommonMetadata | None
    decrypts: bool

    @classmethod
    def parse(cls, spec: Mapping[str, Any], namespace: str) -> DiffSpec:
        if (spec.get("kubeConfig") or {}).get("secretRef"):
            raise CliError(
                "spec.kubeConfig: the Kustomization applies to a remote cluster; "
                "headwater diff compares with the current context's cluster only",
                EXIT_ERROR,
            )
        source = spec.get("sourceRef") or {}
        try:
            timeout = parse_duration(str(spec["timeout"])) if spec.get("timeout") else None
            return cls(
                path=str(spec.get("path") or ""),
                prune=bool(spec.get("prune")),
                timeout=timeout or DEFAULT_TIMEOUT,
                source_kind=str(source.get("kind") or "GitRepository"),
                source_name=str(source.get("name") or ""),
                source_namespace=str(source.get("namespace") or namespace),
                build=BuildOptions.parse(spec),
                post_build=PostBuild.parse(spec.get("postBuild")),
                common_metadata=CommonMetadata.parse(spec.get("commonMetadata")),
                decrypts=(spec.get("decryption") or {}).get("provider") == SEALED_PROVIDER,
            )
        except ReconcileError as exc:
            raise CliError(exc.message, EXIT_ERROR) from None
        except ValueError as exc:
            raise CliError(f"spec.timeout: {exc}", EXIT_ERROR) from None


# --- the tree ---------------------------------------------------------------------------


def _secret_bytes(session: Session, namespace: str, name: str, what: str) -> dict[str, bytes]:
    try:
        secret = session.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(f"{what}: Secret {namespace}/{name} not found", EXIT_ERROR) from None
        raise common.api_error(exc, f"reading Secret {namespace}/{name} ({what})") from None
    return {str(k): base64.b64decode(v) for k, v in (secret.data or {}).items()}


def checkout_ref(session: Session, spec: DiffSpec, branch: str, dest: Path) -> str:
    """Fetch `branch` of the Kustomization's GitRepository into `dest`; its revision.

    The GitRepository's URL, secretRef and proxySecretRef are used as the
    source controller uses them (toolkit.git).
    """
    if spec.source_kind != "GitRepository":
        raise CliError(
            f"--ref: spec.sourceRef.kind is {spec.source_kind}; only a GitRepository has refs",
            EXIT_ERROR,
        )
    namespace = spec.source_namespace
    repo = waiting.fetch(session, kinds.resolve("gitrepository"), namespace, spec.source_name)
    repo_spec = repo.get("spec") or {}
    try:
        url = parse_git_url(str(repo_spec.get("url") or ""))
        secret_name = (repo_spec.get("secretRef") or {}).get("name")
        data = (
            _secret_bytes(session, namespace, secret_name, "spec.secretRef")
            if secret_name
            else None
        )
        auth = auth_from_secret(data, url)
        proxy_name = (repo_spec.get("proxySecretRef") or {}).get("name")
        proxy = (
            proxy_from_secret(
                _secret_bytes(session, namespace, proxy_name, "spec.proxySecretRef"),
                f"secret '{namespace}/{proxy_name}' (spec.proxySecretRef)",
            )
            if proxy_name
            else None
        )
        timeout = parse_duration(str(repo_spec["timeout"])) if repo_spec.get("timeout") else 60.0
        checkout = fetch(url, GitRef(branch=branch), auth, dest, timeout=timeout, proxy=proxy)
    except ReconcileError as exc:
        raise CliError(f"fetching {branch!r}: {exc.message}", EXIT_ERROR) from None
    # The artifact holds the files, never the repository itself.
    shutil.rmtree(dest / ".git", ignore_errors=True)
    return checkout.revision


# --- the plan ---------------------------------------------------------------------------


async def built_objects(
    client: ResourceClient, spec: DiffSpec, tree: Path, namespace: str
) -> list[dict[str, Any]]:
    """The controller's build of `tree`: kustomize, substitution, commonMetadata."""

    async def read(kind: str, name: str) -> Mapping[str, str] | None:
        return await read_as(client, namespace, kind, name)

    try:
        manifests = await build(tree, spec.path, spec.build, timeout=spec.timeout)
        manifests = await substitute(manifests, spec.post_build, read)
    except ReconcileError as exc:
        raise CliError(exc.message, EXIT_ERROR) from None
    except ApiError as exc:
        raise CliError(f"reading postBuild.substituteFrom: {exc}", EXIT_ERROR) from None
    return apply_common_metadata([m.object for m in manifests], spec.common_metadata)


def _sealed_target(obj: Mapping[str, Any], default_namespace: str) -> ObjectId:
    meta = obj.get("metadata") or {}
    return ObjectId(
        "", "Secret", str(meta.get("namespace") or default_namespace), str(meta["name"])
    )


async def _would_prune(
    client: ResourceClient, stale: Sequence[InventoryEntry], options: PruneOptions
) -> list[ObjectDiff]:
    """The stale objects prune would delete: still there, still ours, not excluded."""
    found = []
    for entry in sorted(stale, key=lambda e: e.id.sort_key()):
        try:
            info = await resource_of(client, entry)
            live = await client.get(info, entry.id.namespace, entry.id.name)
        except NoMatchError:
            continue
        except ApiError as exc:
            raise CliError(f"reading {entry.id.subject}: {exc}", EXIT_ERROR) from None
        if live is not None and options.owned(live) and not options.excluded(live):
            found.append(pruned_diff(entry.id, live))
    return found


async def plan(
    client: ResourceClient,
    kustomization: Mapping[str, Any],
    spec: DiffSpec,
    objects: list[dict[str, Any]],
    source: str,
) -> DiffResult:
    meta = kustomization.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace"))
    owner = ssa.owner_labels(GROUP, name, namespace)
    sealed: list[dict[str, Any]] = []
    if spec.decrypts:
        sealed = [o for o in objects if sealing.is_sealed_secret(o)]
        objects = [o for o in objects if not sealing.is_sealed_secret(o)]
    options = ssa.ApplyOptions(
        field_manager=FIELD_MANAGER, owner_group=GROUP, owner_labels=owner, dry_run=True
    )
    try:
        changeset = await ssa.apply_all(client, objects, options)
    except ssa.ApplyError as exc:
        raise CliError(f"server-side dry-run failed: {exc}", EXIT_ERROR) from None
    desired = {ObjectId.of(ssa.normalize(o, owner)): ssa.normalize(o, owner) for o in objects}
    diffs = [object_diff(entry, desired.get(entry.id)) for entry in changeset]
    pruned: list[ObjectDiff] = []
    if spec.prune:
        default_ns = spec.build.target_namespace or namespace
        kept = changeset.to_inventory().merge(
            InventoryEntry(_sealed_target(o, default_ns), "v1") for o in sealed
        )
        stale = Inventory.from_status((kustomization.get("status") or {}).get("inventory"))
        pruned = await _would_prune(
            client, stale.stale(kept), PruneOptions(owner_labels=owner, owner_group=GROUP)
        )
    return DiffResult(
        kustomization=f"{namespace}/{name}",
        source=source,
        objects=diffs,
        pruned=pruned,
        sealed=[ObjectId.of(o).subject for o in sealed],
    )


# --- the verb ---------------------------------------------------------------------------


async def _diff(session: Session, args: argparse.Namespace, work: Path) -> DiffResult:
    kind = kinds.resolve(args.kind)
    if kind.kind != "Kustomization":
        raise CliError(f"diff supports kustomization only, not {kind.plural}", EXIT_ERROR)
    obj = waiting.fetch(session, kind, session.namespace, args.name)
    spec = DiffSpec.parse(obj.get("spec") or {}, session.namespace)
    if args.path:
        tree = Path(args.path).resolve()
        if not tree.is_dir():
            raise CliError(f"--path: {args.path} is not a directory", EXIT_ERROR)
        source = f"path {args.path}"
    else:
        tree = work / "checkout"
        revision = await asyncio.to_thread(checkout_ref, session, spec, args.ref, tree)
        source = f"{spec.source_kind}/{spec.source_namespace}/{spec.source_name} {revision}"
    async with ResourceClient(session.api) as client:
        objects = await built_objects(client, spec, tree, session.namespace)
        return await plan(client, obj, spec, objects, source)


def print_result(result: DiffResult) -> None:
    out = common.console()
    terminal = out.is_terminal
    for obj in [*result.objects, *result.pruned]:
        if not obj.changed:
            continue
        verb = "to prune" if obj.action == ssa.Action.DELETED else obj.action
        note = f" ({obj.note})" if obj.note else ""
        out.print(f"[bold]► {escape(obj.subject)} {verb}{escape(note)}[/bold]")
        for line in obj.unified().splitlines():
            text = escape(line)
            if terminal and line.startswith("+") and not line.startswith("+++"):
                text = f"[green]{text}[/green]"
            elif terminal and line.startswith("-") and not line.startswith("---"):
                text = f"[red]{text}[/red]"
            out.print(text, soft_wrap=True)
    for subject in result.sealed:
        out.print(f"► {escape(subject)} sealed (decrypted by the controller; not compared)")
    tail = "no changes" if not result.changed else "changes"
    out.print(
        f"{escape(result.kustomization)} from {escape(result.source)}: {tail} ({result.summary()})"
    )


def _run(args: argparse.Namespace) -> int:
    session = common.connect(args)
    work = Path(tempfile.mkdtemp(prefix="headwater-diff-"))
    try:
        result = asyncio.run(_diff(session, args, work))
    finally:
        session.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.output == "table":
        print_result(result)
    else:
        common.console().file.write(common.dump(result.to_json(), args.output))
    return EXIT_CHANGES if result.changed else EXIT_NO_CHANGES


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "diff",
        help="show what a local tree or a branch would change in the cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", help="kustomization (ks)")
    parser.add_argument("name", help="the Kustomization's name")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", help="a local directory standing in for the artifact root")
    where.add_argument("--ref", help="a branch of the GitRepository the Kustomization uses")
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("diff", _run, failure_code=EXIT_ERROR))
