"""The in-process build: ``kustomize build``'s output, read without kustomize, where promised.

Two shapes of directory build to nothing more than their files' objects, in kustomize's
legacy order, with at most a namespace set on them:

- a plain directory (no kustomization file anywhere below it): Flux's generated
  kustomization lists every manifest (`plain.plain_files` finds them);
- a directory whose only kustomization file is at its root and holds nothing but
  ``apiVersion`` (``kustomize.config.k8s.io/v1beta1``), ``kind`` (``Kustomization``),
  ``resources`` and ``namespace``, the resources being files of that directory
  (``name.yaml`` or ``./name.yaml``, each once, regular ``.yaml``/``.yml`` files as the
  plain path reads them). Only the listed files are read: kustomize reads nothing else.

The spec may add ``targetNamespace`` and nothing else; Flux merges it into the
kustomization as its ``namespace`` (replacing the file's own). kustomize's namespace
transformer then sets ``metadata.namespace`` on every namespaced object, replacing what
the object had; on some kinds it also rewrites other fields (a Namespace's name,
RoleBinding subjects, webhook and APIService service references, CRD conversion
webhooks) or leaves the object alone (cluster-scoped kinds, which it knows from its
OpenAPI data; a custom resource's scope it cannot know). So a namespace is set here only
on the kinds listed in `NAMESPACED`, namespaced kinds it does nothing else to; any other
object, with a namespace to set, leaves the build to kustomize. The legacy order is
taken after the namespace is set, as kustomize sorts its final output.

What the plain path refuses is refused here too, and whatever else is unusual (several
kustomization files, one below the root, another key, a directory or remote resource,
a missing or linked file, an empty or oddly spelled namespace) makes `build_in_process`
return None: the caller then runs kustomize, whose output and errors stay as they were.

An object whose namespace is changed gets, as its text, the JSON (a YAML document) of
what it became, so that the history digest, which reads the texts, follows the change.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from controllers.toolkit.kustomize.build import Manifest
from controllers.toolkit.kustomize.generate import (
    KUSTOMIZATION_FILES,
    KUSTOMIZE_API_VERSION,
    MANIFEST_SUFFIXES,
    BuildOptions,
)
from controllers.toolkit.kustomize.plain import (
    NotPlain,
    check_plain_string,
    group_version,
    kustomize_order,
    plain_documents,
    plain_files,
    read_bounded,
    read_manifests,
)

log = logging.getLogger(__name__)

__all__ = ["NAMESPACED", "build_in_process"]

# (API group, kind): namespaced kinds whose only field kustomize's namespace transformer
# sets is metadata.namespace (api/filters/namespace and its default field specs).
NAMESPACED = frozenset(
    {
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "Service"),
        ("", "ServiceAccount"),
        ("", "PersistentVolumeClaim"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("rbac.authorization.k8s.io", "Role"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
    }
)
_KUSTOMIZATION_KEYS = frozenset(("apiVersion", "kind", "resources", "namespace"))
_MAX_KUSTOMIZATION_BYTES = 64 * 1024
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# A DNS label, as Kubernetes requires of a namespace.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# kustomize reads the kustomization file through sigs.k8s.io/yaml (go-yaml v2, YAML 1.1):
# these plain words are booleans to it, and PyYAML writes "y" and "n" unquoted.
_YAML11_BOOLEANS = frozenset(("y", "n", "yes", "no", "on", "off"))


def build_in_process(
    tree: Path, rel: str, options: BuildOptions, *, max_bytes: int
) -> list[Manifest] | None:
    """The manifests of directory `rel` of `tree` as kustomize builds them, or None.

    None (the caller runs kustomize) unless the directory and `options` are one of the
    shapes in the module's docstring. `tree` is only read; at most `max_bytes` of it.
    """
    directory = tree / rel if rel else tree
    try:
        if dataclasses.replace(options, target_namespace=None).any():
            raise NotPlain("spec fields beyond targetNamespace")
        kustomization = _kustomization_file(directory)
        if kustomization is None:
            paths, namespace = plain_files(directory), None
        else:
            paths, namespace = _listed(directory, kustomization)
            _no_kustomization_below(directory)
        if options.target_namespace is not None:
            namespace = options.target_namespace  # as Flux merges it: replacing the file's
        if namespace is not None:
            _check_namespace(namespace)
        manifests = read_manifests(paths, max_bytes=max_bytes)
        if not manifests:
            raise NotPlain("no objects")
        if namespace is not None:
            manifests = [_with_namespace(manifest, namespace) for manifest in manifests]
        return kustomize_order(manifests)
    except NotPlain as reason:
        log.debug("building %s with kustomize: %s", rel or ".", reason)
        return None
    except (OSError, RecursionError) as exc:
        log.debug("building %s with kustomize: %s", rel or ".", type(exc).__name__)
        return None


def _kustomization_file(directory: Path) -> Path | None:
    """The directory's one kustomization file, None for none, NotPlain for anything else."""
    found = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).exists()]
    if not found:
        # A dangling link is not found by exists(): plain_files refuses its name.
        return None
    if len(found) > 1:
        raise NotPlain("more than one kustomization file")
    if found[0].is_symlink() or not found[0].is_file():
        raise NotPlain("a kustomization file that is not a regular file")
    return found[0]


def _listed(directory: Path, kustomization: Path) -> tuple[list[Path], str | None]:
    """The files the kustomization lists and its namespace, or NotPlain."""
    documents = plain_documents(read_bounded(kustomization, _MAX_KUSTOMIZATION_BYTES))
    if len(documents) != 1 or not isinstance(documents[0][1], dict):
        raise NotPlain("a kustomization file that is not one mapping")
    content: dict[str, Any] = documents[0][1]
    if not content.keys() <= _KUSTOMIZATION_KEYS:
        extra = sorted(content.keys() - _KUSTOMIZATION_KEYS)
        raise NotPlain(f"a kustomization with {', '.join(extra)}")
    if content.get("apiVersion", KUSTOMIZE_API_VERSION) != KUSTOMIZE_API_VERSION:
        raise NotPlain("a kustomization of another apiVersion")
    if content.get("kind", "Kustomization") != "Kustomization":
        raise NotPlain("a kustomization of another kind")
    namespace = content.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise NotPlain("a kustomization namespace that is not a string")
    resources = content.get("resources")
    if not isinstance(resources, list) or not resources:
        raise NotPlain("a kustomization without a list of resources")
    names: list[str] = []
    for entry in resources:
        name = entry.removeprefix("./") if isinstance(entry, str) else ""
        if (
            not _SAFE_FILE_NAME.fullmatch(name)
            or os.path.splitext(name)[1] not in MANIFEST_SUFFIXES
            or name in KUSTOMIZATION_FILES
        ):
            raise NotPlain("a resource that is not a manifest file of the directory")
        if name in names:
            raise NotPlain("a resource listed twice")
        names.append(name)
    paths = [directory / name for name in names]
    for path in paths:
        if path.is_symlink() or not path.is_file():
            raise NotPlain("a resource that is not a regular file")
    return paths, namespace


def _no_kustomization_below(directory: Path) -> None:
    """NotPlain when a subdirectory, at any depth, holds an entry named like a kustomization.

    kustomize reads only the listed files; a nested kustomization is refused anyway, so
    that this path only ever sees the one kustomization it reproduces.
    """
    with os.scandir(directory) as scan:
        stack = [Path(entry.path) for entry in scan if entry.is_dir(follow_symlinks=False)]
    while stack:
        current = stack.pop()
        with os.scandir(current) as scan:
            for entry in scan:
                if entry.name in KUSTOMIZATION_FILES:
                    raise NotPlain(f"an entry named {entry.name} below the kustomization")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))


def _check_namespace(namespace: str) -> None:
    if not _NAMESPACE.fullmatch(namespace):
        raise NotPlain("a namespace that is not a DNS label")
    # Written into the kustomization unquoted unless PyYAML would read it otherwise, and
    # read back by kustomize as YAML 1.1: a word or number to either is left to kustomize.
    if namespace in _YAML11_BOOLEANS:
        raise NotPlain("a namespace YAML 1.1 reads as a boolean")
    check_plain_string(namespace)


def _with_namespace(manifest: Manifest, namespace: str) -> Manifest:
    """`manifest` with kustomize's namespace transformer applied, or NotPlain."""
    group, _ = group_version(str(manifest.object["apiVersion"]))
    if (group, manifest.kind) not in NAMESPACED:
        kind = f"{manifest.kind}.{group}" if group else manifest.kind
        raise NotPlain(f"a {kind}, which kustomize's namespace transformer may treat otherwise")
    if manifest.namespace == namespace:
        return manifest
    document = manifest.object
    document["metadata"]["namespace"] = namespace
    return Manifest(text=json.dumps(document) + "\n", object=document)
