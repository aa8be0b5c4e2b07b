"""`headwater push artifact`: publish a directory to an OCI registry as ``flux push artifact`` does.

    headwater push artifact oci://registry.example/app/manifests:$(git rev-parse --short HEAD) \\
        --path ./deploy \\
        --source "$(git config --get remote.origin.url)" \\
        --revision "$(git branch --show-current)@sha1:$(git rev-parse HEAD)"

The artifact is Flux's (RFC-0003): an OCI image manifest whose config is ``{}`` of type
``application/vnd.cncf.flux.config.v1+json``, one layer of type
``application/vnd.cncf.flux.content.v1.tar+gzip`` holding the directory as the source
controller archives a tree (deterministic, Flux's default exclusions plus
``--ignore-paths``), and the annotations ``org.opencontainers.image.source``,
``org.opencontainers.image.revision`` and ``org.opencontainers.image.created``. So an
OCIRepository (headwater's or Flux's) pulls it and a Kustomization applies it, and CI
needs no Flux binary. It lives beside the source controller because it writes exactly
the artifacts that controller reads, with the same archive code.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controllers.source.archive import write_archive
from controllers.source.ignore import load_ignore_rules
from controllers.toolkit import oci
from controllers.toolkit.git.errors import SourceError

EXIT_OK = 0
EXIT_FAILED = 1
REPRODUCIBLE_CREATED = "1970-01-01T00:00:00Z"


class PushError(Exception):
    pass


def split_target(target: str) -> tuple[oci.OCIURL, str]:
    """``oci://host/repo:tag`` -> (the repository URL, the tag); the tag is required."""
    rest = target.removeprefix("oci://")
    head, _, last = rest.rpartition("/")
    name, sep, tag = last.partition(":")
    if not target.startswith("oci://") or not head or not sep or not tag:
        raise PushError(f"'{target}': want oci://<host>/<repository>:<tag>")
    try:
        return oci.OCIURL.parse(f"oci://{head}/{name}"), oci.check_tag(tag)
    except oci.OCIError as exc:
        raise PushError(str(exc)) from None


def build_layer(path: Path, ignore: str | None, out: Path) -> None:
    """The tar+gzip layer of `path` (a directory, or one file placed at the root)."""
    if not path.exists():
        raise PushError(f"--path '{path}' does not exist")
    with tempfile.TemporaryDirectory(prefix="headwater-push-") as tmp:
        root = path
        if path.is_file():
            root = Path(tmp) / "tree"
            root.mkdir()
            shutil.copyfile(path, root / path.name)
        rules = load_ignore_rules(root, ignore)
        try:
            with open(out, "wb") as fh:
                write_archive(root, fh, rules)
        except SourceError as exc:
            raise PushError(exc.message) from None


def manifest_annotations_of(
    source: str, revision: str, extra: Sequence[str], *, reproducible: bool
) -> dict[str, str]:
    created = (
        REPRODUCIBLE_CREATED if reproducible else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    result = {
        oci.CREATED_ANNOTATION: created,
        oci.SOURCE_ANNOTATION: source,
        oci.REVISION_ANNOTATION: revision,
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PushError(f"--annotations '{item}': want key=value")
        result[key] = value
    return result


def push_artifact(
    target: str,
    path: Path,
    *,
    source: str,
    revision: str,
    credentials: oci.Credentials | None = None,
    insecure: bool = False,
    ca_pem: bytes | None = None,
    ignore: str | None = None,
    extra_annotations: Sequence[str] = (),
    reproducible: bool = False,
    timeout: float = oci.DEFAULT_TIMEOUT,
) -> str:
    """Push `path` under `target` (``oci://host/repo:tag``); returns the manifest digest."""
    url, tag = split_target(target)
    manifest_annotations = manifest_annotations_of(
        source, revision, extra_annotations, reproducible=reproducible
    )
    with tempfile.TemporaryDirectory(prefix="headwater-push-") as tmp:
        layer_file = Path(tmp) / "layer.tar.gz"
        config_file = Path(tmp) / "config.json"
        build_layer(path, ignore, layer_file)
        config_file.write_bytes(b"{}")
        tls = oci.TLSMaterial(ca_pem=ca_pem) if ca_pem else None
        with oci.RegistryClient(
            url, credentials=credentials, tls=tls, insecure=insecure, timeout=timeout
        ) as client:
            config = client.push_blob(config_file, oci.FLUX_CONFIG_MEDIA_TYPE)
            layer = client.push_blob(layer_file, oci.FLUX_LAYER_MEDIA_TYPE)
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": oci.OCI_MANIFEST_MEDIA_TYPE,
                "config": config.to_json(),
                "layers": [layer.to_json()],
                "annotations": manifest_annotations,
            }
            return client.push_manifest(manifest, tag)


# -- the command --------------------------------------------------------------------------


def _credentials(value: str | None) -> oci.Credentials | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise PushError("--creds: want <username>:<password>")
    return oci.Credentials(user, password)


def _push_command(args: argparse.Namespace) -> int:
    try:
        ca_pem = Path(args.ca_file).read_bytes() if args.ca_file else None
        ignore = "\n".join(p.strip() for p in args.ignore_paths.split(",")) or None
        print(f"pushing artifact to {args.target}", file=sys.stderr)
        digest = push_artifact(
            args.target,
            Path(args.path),
            source=args.source,
            revision=args.revision,
            credentials=_credentials(args.creds),
            insecure=args.insecure_registry,
            ca_pem=ca_pem,
            ignore=ignore,
            extra_annotations=args.annotations,
            reproducible=args.reproducible,
            timeout=args.timeout,
        )
    except (PushError, oci.OCIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    url, _ = split_target(args.target)
    print(f"artifact successfully pushed to {url.host}/{url.repository}@{digest}", file=sys.stderr)
    print(digest)
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `headwater push artifact` on the CLI's subcommands."""
    push = commands.add_parser("push", help="publish to an OCI registry")
    what = push.add_subparsers(dest="push_what", required=True, metavar="WHAT")
    artifact = what.add_parser(
        "artifact",
        help="push a directory as an OCI artifact, as `flux push artifact` does",
        description=(
            "Archive --path and push it to the registry as a Flux OCI artifact, "
            "annotated with --source and --revision. Prints the manifest digest."
        ),
    )
    artifact.add_argument("target", help="oci://<host>/<repository>:<tag>")
    artifact.add_argument("--path", required=True, help="directory (or file) to push")
    artifact.add_argument(
        "--source", required=True, help="where the files come from, e.g. the git remote URL"
    )
    artifact.add_argument(
        "--revision", required=True, help="their revision, e.g. main@sha1:<commit>"
    )
    artifact.add_argument(
        "--annotations",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more manifest annotations (repeatable)",
    )
    artifact.add_argument("--creds", help="registry credentials, <username>:<password>")
    artifact.add_argument(
        "--insecure-registry", action="store_true", help="talk to the registry over plain HTTP"
    )
    artifact.add_argument("--ca-file", help="PEM CA bundle to trust for the registry's TLS")
    artifact.add_argument(
        "--ignore-paths",
        default="",
        help="comma-separated .gitignore patterns to leave out (beside Flux's defaults)",
    )
    artifact.add_argument(
        "--reproducible",
        action="store_true",
        help="a fixed created annotation, so the same tree gives the same digest",
    )
    artifact.add_argument("--timeout", type=float, default=oci.DEFAULT_TIMEOUT, help="seconds")
    artifact.set_defaults(func=_push_command)
