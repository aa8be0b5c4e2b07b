"""`headwater seal` and `headwater keys`: seal secrets for git, manage and recover keys.

    headwater seal -f secret.yaml -w sealed.yaml          # with the cluster's newest key
    headwater seal --cert cert.pem < secret.yaml          # offline, with a saved cert
    headwater seal --raw --name db --namespace app --from-file password.txt
    headwater seal --fetch-cert > cert.pem
    headwater keys rotate                                 # a new key seals from now on
    headwater keys recover --key backup.yaml -f sealed.yaml

Flags follow kubeseal's where they overlap. Differences: the output is YAML
unless `-o json` (kubeseal defaults to JSON), an explicit `--scope strict`
overrides scope annotations (kubeseal ignores it), and the certificate comes
from the newest key Secret in the controllers' namespace rather than from a
controller's HTTP endpoint.

Error messages name files, objects and data keys, never a value: input that
fails to parse is reported by line and column only, because parsers quote
the offending text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
import yaml
from kubernetes.client.exceptions import ApiException

from controllers.sealing import format as sealing
from controllers.sealing import keys as sealing_keys
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.settings import Settings, SettingsError, parse_namespace

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Input manifests and value files are small; a runaway pipe must not eat memory.
MAX_INPUT_BYTES = 16 * 1024 * 1024
OUTPUT_FORMATS = ("yaml", "json")


class CliError(Exception):
    """A failure to report on stderr as one line."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- input and output ---------------------------------------------------------------


def _read_bounded(stream: IO[bytes], where: str) -> bytes:
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise CliError(f"{where}: larger than {MAX_INPUT_BYTES} bytes")
    return data


def read_input(path: str | None) -> tuple[bytes, str]:
    """The bytes of `path` (`-` or None: stdin) and a name for messages."""
    if path in (None, "-"):
        return _read_bounded(sys.stdin.buffer, "stdin"), "stdin"
    assert path is not None
    try:
        with open(path, "rb") as handle:
            return _read_bounded(handle, path), path
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def parse_documents(data: bytes, where: str) -> list[dict[str, Any]]:
    """Objects in YAML (several documents) or JSON (one or more objects); Lists are flattened."""
    text = data.decode("utf-8", errors="strict") if data else ""
    documents: list[Any] = []
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        decoder = json.JSONDecoder()
        position = len(text) - len(stripped)
        while position < len(text):
            try:
                document, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError as exc:
                raise CliError(
                    f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}"
                ) from None
            documents.append(document)
            while position < len(text) and text[position].isspace():
                position += 1
    else:
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where_in = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            # The parser's own text quotes the input, which may be a secret.
            raise CliError(f"{where}: invalid YAML{where_in}") from None
        except yaml.YAMLError:
            raise CliError(f"{where}: invalid YAML") from None
    objects: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise CliError(
                f"{where}: expected Kubernetes objects, found a {type(document).__name__}"
            )
        if str(document.get("kind", "")).endswith("List") and isinstance(
            document.get("items"), list
        ):
            objects.extend(item for item in document["items"] if isinstance(item, dict))
        else:
            objects.append(document)
    return objects


class _GoSafeDumper(yaml.SafeDumper):
    """Quotes the strings Go's YAML (kubectl, kubeseal) would read as booleans.

    PyYAML writes `y` and `n` bare, but Go's YAML 1.1 parser turns them
    into booleans, and a boolean annotation or label breaks the object.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value in _GO_BOOLEANS:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_GO_BOOLEANS = frozenset({"y", "Y", "n", "N"})
_GoSafeDumper.add_representer(str, _represent_str)


def format_objects(objects: Sequence[dict[str, Any]], output: str) -> str:
    if output == "json":
        return "".join(json.dumps(obj, indent=2) + "\n" for obj in objects)
    return "---\n".join(
        yaml.dump(obj, Dumper=_GoSafeDumper, sort_keys=False, default_flow_style=False)
        for obj in objects
    )


def write_output(text: str, path: str | None) -> None:
    """To stdout, or atomically to `path` (written only when everything succeeded)."""
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(staging, target)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def output_format(args: argparse.Namespace) -> str:
    """`-o`, else the output file's extension, else YAML."""
    if args.output:
        return str(args.output)
    target = getattr(args, "write", None)
    if target and target.endswith(".json"):
        return "json"
    return "yaml"


# --- cluster access ----------------------------------------------------------------


def controller_namespace(args: argparse.Namespace) -> str:
    if args.controller_namespace:
        try:
            return parse_namespace(args.controller_namespace, source="--controller-namespace")
        except SettingsError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    try:
        return Settings.load().namespace
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _api(args: argparse.Namespace) -> kubernetes.client.ApiClient:
    try:
        return kube.api_client(kube.load_configuration(args.kubeconfig))
    except kube.KubeConfigError as exc:
        raise CliError(str(exc)) from None


def _cluster_error(exc: ApiException, what: str) -> CliError:
    # Status and reason only: the response body is not ours to print.
    return CliError(f"{what}: the API server answered {exc.status} {exc.reason}")


def default_namespace(kubeconfig: str | None) -> str:
    """The current context's namespace, else `default`, as kubeseal and kubectl choose."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        _, active = kubernetes.config.list_kube_config_contexts(
            config_file=path.split(os.pathsep)[0]
        )
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError):
        return "default"
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


def load_certificate(args: argparse.Namespace) -> bytes:
    if args.cert:
        try:
            return Path(args.cert).read_bytes()[:MAX_INPUT_BYTES]
        except OSError as exc:
            raise CliError(f"cannot read certificate {args.cert}: {exc.strerror}") from None
    namespace = controller_namespace(args)
    with _api(args) as api:
        try:
            return sealing_keys.current_certificate(api, namespace)
        except ApiException as exc:
            raise _cluster_error(exc, f"reading sealing keys in namespace {namespace}") from None
        except sealing_keys.SealingKeyError as exc:
            raise CliError(str(exc)) from None


# --- headwater seal -----------------------------------------------------------------


def _seal_command(args: argparse.Namespace) -> int:
    if args.from_file and not args.raw:
        raise CliError("--from-file requires --raw", EXIT_USAGE)
    scope = sealing.Scope.parse(args.scope) if args.scope else None
    cert_pem = load_certificate(args)
    if args.fetch_cert:
        write_output(cert_pem.decode("ascii", errors="replace"), args.write)
        return EXIT_OK
    try:
        public_key = sealing.public_key_from_cert(cert_pem)
    except sealing.SealingError as exc:
        raise CliError(f"certificate {args.cert or '(from the cluster)'}: {exc}") from None
    if args.raw:
        return _seal_raw(args, public_key, scope or sealing.Scope.STRICT)

    data, where = read_input(args.file)
    objects = parse_documents(data, where)
    if not objects:
        raise CliError(f"{where}: no Secret found")
    fallback = args.namespace or default_namespace(args.kubeconfig)
    sealed = []
    for number, obj in enumerate(objects, start=1):
        declared = (obj.get("metadata") or {}).get("namespace")
        if args.namespace and declared and declared != args.namespace:
            raise CliError(
                f"{where}: namespace mismatch: Secret {number} is in namespace {declared!r} "
                f"but --namespace {args.namespace!r} was given"
            )
        try:
            sealed.append(
                sealing.seal_secret(
                    obj,
                    public_key,
                    scope=scope,
                    name=args.name,
                    namespace=fallback,
                    allow_empty=args.allow_empty_data,
                )
            )
        except sealing.SealingError as exc:
            raise CliError(f"{where}: {exc}") from None
    write_output(format_objects(sealed, output_format(args)), args.write)
    return EXIT_OK


def _seal_raw(args: argparse.Namespace, public_key: Any, scope: sealing.Scope) -> int:
    namespace = ""
    if scope is not sealing.Scope.CLUSTER_WIDE:
        namespace = args.namespace or default_namespace(args.kubeconfig)
        if scope is sealing.Scope.STRICT and not args.name:
            raise CliError("must provide the --name flag with --raw and --scope strict", EXIT_USAGE)
    if len(args.from_file) > 1:
        raise CliError(
            "must provide only one --from-file when sealing a single value with --raw", EXIT_USAGE
        )
    if args.from_file:
        # kubectl's `[key=]path` form; the key is irrelevant for one value.
        path = args.from_file[0].split("=", 1)[-1]
        value, _ = read_input(path)
    else:
        value, _ = read_input(None)
    try:
        text = sealing.seal_value(
            public_key, value, namespace=namespace, name=args.name or "", scope=scope
        )
    except sealing.SealingError as exc:
        raise CliError(str(exc)) from None
    # No trailing newline, like kubeseal: the output is pasted or piped into YAML.
    write_output(text, args.write)
    return EXIT_OK


# --- headwater keys -------------------------------------------------------------------


def _rotate_command(args: argparse.Namespace) -> int:
    namespace = controller_namespace(args)
    with _api(args) as api:
        try:
            key = sealing_keys.create_key(api, namespace, key_size=args.key_size)
        except ApiException as exc:
            raise _cluster_error(exc, f"creating a key Secret in namespace {namespace}") from None
    print(f"created sealing key {key.source} ({key.fingerprint}); new values are sealed with it")
    return EXIT_OK


def _list_command(args: argparse.Namespace) -> int:
    namespace = controller_namespace(args)
    with _api(args) as api:
        try:
            keys = sealing_keys.read_keys(api, namespace)
        except ApiException as exc:
            raise _cluster_error(exc, f"reading sealing keys in namespace {namespace}") from None
    if not keys:
        print(f"no sealing keys in namespace {namespace}")
        return EXIT_OK
    for index, key in enumerate(keys):
        issued = key.issued.isoformat() if key.issued else "unknown"
        role = "seals and opens" if index == 0 else "opens"
        print(f"{key.source}\t{key.fingerprint}\tissued {issued}\t{role}")
    return EXIT_OK


def _key_files(values: Sequence[str]) -> Iterator[str]:
    for value in values:
        yield from (part for part in value.split(",") if part)


def _recover_command(args: argparse.Namespace) -> int:
    keys: list[sealing_keys.SealingKey] = []
    for path in _key_files(args.key):
        data, where = read_input(path)
        try:
            keys.extend(sealing_keys.parse_key_file(data, source=where))
        except sealing_keys.SealingKeyError as exc:
            raise CliError(str(exc)) from None
    if not keys:
        raise CliError("give at least one private key file with --key", EXIT_USAGE)
    data, where = read_input(args.file)
    objects = parse_documents(data, where)
    secrets = []
    for number, obj in enumerate(objects, start=1):
        if not sealing.is_sealed_secret(obj):
            raise CliError(
                f"{where}: object {number} is {obj.get('apiVersion')}/{obj.get('kind')}, "
                f"not a {sealing.API_VERSION} {sealing.KIND}"
            )
        try:
            secrets.append(
                sealing.unseal_sealed_secret(
                    obj,
                    sealing_keys.private_keys(keys),
                    default_namespace=args.namespace or default_namespace(args.kubeconfig),
                )
            )
        except sealing.SealingError as exc:
            raise CliError(f"{where}: {exc}") from None
    if not secrets:
        raise CliError(f"{where}: no SealedSecret found")
    write_output(format_objects(secrets, output_format(args)), args.write)
    return EXIT_OK


# --- wiring ---------------------------------------------------------------------------


def _guarded(name: str, command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
            return code
        except CliError as exc:
            print(f"headwater {name}: {exc}", file=sys.stderr)
            return exc.code
        except sealing.SealingError as exc:
            print(f"headwater {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except UnicodeDecodeError:
            print(f"headwater {name}: input is not UTF-8 text", file=sys.stderr)
            return EXIT_FAILED
        except urllib3.exceptions.HTTPError as exc:
            print(f"headwater {name}: cannot reach the API server: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file; default $KUBECONFIG, then ~/.kube/config"
    )
    parser.add_argument(
        "--controller-namespace",
        help="namespace of the key Secrets; default $HEADWATER_NAMESPACE or headwater-system",
    )


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=OUTPUT_FORMATS, help="output format; default yaml"
    )
    parser.add_argument(
        "-w", "--write", metavar="FILE", help="write to FILE (atomically) instead of stdout"
    )
    parser.add_argument("-f", "--file", metavar="FILE", help="input file; default stdin")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `headwater seal` and `headwater keys` on the CLI's subcommands."""
    seal = commands.add_parser(
        "seal",
        help="seal a Secret (or one value) so only the cluster can open it",
        description=(
            "Read a Secret (YAML or JSON, from -f or stdin) and write the SealedSecret "
            "(bitnami.com/v1alpha1) that a Kustomization with decryption provider "
            "'sealedsecrets' turns back into it. Compatible with kubeseal."
        ),
    )
    _add_output_flags(seal)
    _add_cluster_flags(seal)
    seal.add_argument("--cert", metavar="FILE", help="seal with this PEM certificate (offline)")
    seal.add_argument("--fetch-cert", action="store_true", help="print the certificate and exit")
    seal.add_argument(
        "--scope",
        choices=[scope.value for scope in sealing.Scope],
        help="strict (default), namespace-wide or cluster-wide; overrides the Secret's annotations",
    )
    seal.add_argument(
        "--raw", action="store_true", help="seal one value (from --from-file or stdin)"
    )
    seal.add_argument(
        "--name", help="the Secret's name (overrides metadata.name; needed with --raw)"
    )
    seal.add_argument(
        "--namespace", help="the Secret's namespace; default the kubeconfig context's namespace"
    )
    seal.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="[KEY=]PATH",
        help="with --raw: the value",
    )
    seal.add_argument(
        "--allow-empty-data", action="store_true", help="seal a Secret that has no data"
    )
    seal.set_defaults(func=_guarded("seal", _seal_command))

    keys = commands.add_parser(
        "keys",
        help="manage the sealing keys, or unseal offline with private key files",
        description="Sealing keys live in Secrets in the controllers' namespace.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    rotate = actions.add_parser("rotate", help="add a new key now; old keys keep opening")
    _add_cluster_flags(rotate)
    rotate.add_argument(
        "--key-size", type=int, default=sealing_keys.DEFAULT_KEY_SIZE, help="RSA key size in bits"
    )
    rotate.set_defaults(func=_guarded("keys rotate", _rotate_command))

    listing = actions.add_parser("list", help="list the keys, newest (the sealing one) first")
    _add_cluster_flags(listing)
    listing.set_defaults(func=_guarded("keys list", _list_command))

    recover = actions.add_parser(
        "recover",
        aliases=["unseal"],
        help="decrypt SealedSecrets offline with private key files",
        description=(
            "Print the Secrets that SealedSecrets (from -f or stdin) seal, using private "
            "keys from files: PEM keys or a YAML/JSON dump of key Secrets "
            "(kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml)."
        ),
    )
    _add_output_flags(recover)
    recover.add_argument(
        "--key",
        "--recovery-private-key",
        action="append",
        default=[],
        required=True,
        metavar="FILE[,FILE]",
        help="private key file(s); repeat or separate with commas",
    )
    recover.add_argument(
        "--namespace", help="namespace for SealedSecrets that have none; default the context's"
    )
    recover.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    recover.set_defaults(func=_guarded("keys recover", _recover_command))
