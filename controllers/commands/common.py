"""What every verb shares: the connection, the common flags, output and errors.

The connection follows kubectl: `--kubeconfig`, then `$KUBECONFIG`, then
`~/.kube/config` (in a pod, its service account), with `--context` choosing
the context. The default namespace is the context's, else headwater-system
(headwater's flux-system).

Output for people goes through one rich Console: colour only on a terminal,
and, when piped, tables without borders and lines never wrapped, so `grep`
and `awk` see one object per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from rich import box
from rich.console import Console
from rich.table import Table

from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.durations import parse_duration

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

DEFAULT_NAMESPACE = "headwater-system"
OUTPUT_FORMATS = ("table", "json", "yaml")
# Wide enough that a piped table never wraps a message onto a second line.
PIPED_WIDTH = 4096

Command = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure reported on stderr as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- flags ------------------------------------------------------------------------------


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", help="the kubeconfig context to use")


def add_namespace_flags(parser: argparse.ArgumentParser, *, all_namespaces: bool = True) -> None:
    parser.add_argument(
        "-n", "--namespace", help="the namespace (default: the context's, else headwater-system)"
    )
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=OUTPUT_FORMATS, default="table", help="output format"
    )


def add_timeout_flag(parser: argparse.ArgumentParser, default: float | None) -> None:
    parser.add_argument(
        "--timeout",
        type=parse_timeout,
        default=default,
        help="how long to wait, e.g. 90s, 5m (default: %(default)ss)"
        if default
        else "stop after this long, e.g. 90s, 5m",
    )


def parse_timeout(text: str) -> float:
    """`90s`, `5m`, `1h30m` or plain seconds."""
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--timeout: {exc}") from None


# --- connection -------------------------------------------------------------------------


def _kubeconfig_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "kubeconfig", None) or os.environ.get("KUBECONFIG") or None


def context_namespace(path: str | None, context: str | None) -> str | None:
    """The namespace the chosen context sets, if any."""
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(
            config_file=path or os.path.expanduser("~/.kube/config")
        )
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError):
        return None
    chosen = active
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def load_configuration(args: argparse.Namespace) -> kubernetes.client.Configuration:
    path = _kubeconfig_path(args)
    context = getattr(args, "context", None)
    if path is None and context is None and kube.in_cluster():
        try:
            return kube.load_configuration()
        except kube.KubeConfigError as exc:
            raise CliError(str(exc)) from None
    configuration = kubernetes.client.Configuration()
    where = path or os.path.expanduser("~/.kube/config")
    try:
        kubernetes.config.load_kube_config(
            config_file=where,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise CliError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
    return configuration


@dataclasses.dataclass
class Session:
    """One connection to the API server and the namespace scope the flags chose."""

    api: kubernetes.client.ApiClient
    namespace: str
    all_namespaces: bool = False
    _dynamic: DynamicClient | None = None

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def dynamic(self) -> DynamicClient:
        """A discovery-backed client for kinds only known at run time (tree, trace)."""
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def close(self) -> None:
        self.api.close()


def connect(args: argparse.Namespace) -> Session:
    configuration = load_configuration(args)
    namespace = getattr(args, "namespace", None) or (
        context_namespace(_kubeconfig_path(args), getattr(args, "context", None))
        or DEFAULT_NAMESPACE
    )
    return Session(
        api=kubernetes.client.ApiClient(configuration),
        namespace=namespace,
        all_namespaces=bool(getattr(args, "all_namespaces", False)),
    )


def api_error(exc: ApiException, what: str) -> CliError:
    """An API failure as one line naming what was attempted and the server's reason."""
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        message = exc.reason
    return CliError(f"{what}: {message} ({exc.status})")


# --- output -----------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=PIPED_WIDTH, highlight=False, no_color=True)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], terminal: bool) -> Table:
    """A kubectl-like table: bold header, no borders when piped."""
    grid = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if terminal else "",
    )
    for column in columns:
        # On a terminal only MESSAGE wraps, so names and revisions stay whole and copyable.
        wraps = terminal and column == "MESSAGE"
        grid.add_column(column, overflow="fold" if wraps else "ignore", no_wrap=not wraps)
    for row in rows:
        grid.add_row(*row)
    return grid


def dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects as kubectl prints them: one v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


# --- time -------------------------------------------------------------------------------


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def age(created: str | None, now: datetime.datetime) -> str:
    """kubectl's age: 45s, 12m, 5h, 3d (two units while they are small)."""
    moment = parse_time(created)
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    return f"{days}d"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- wiring -----------------------------------------------------------------------------


def guarded(name: str, command: Command, *, failure_code: int | None = None) -> Command:
    """Run a verb; failures become one line on stderr and an exit code, never a traceback.

    `failure_code`, when given, is the exit code of every failure (diff keeps 1
    for "there are changes", so its errors exit 2).
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CliError as exc:
            print(f"headwater {name}: {exc}", file=sys.stderr)
            return failure_code if failure_code is not None else exc.code
        except ApiException as exc:
            print(f"headwater {name}: {api_error(exc, 'the API server refused')}", file=sys.stderr)
            return failure_code if failure_code is not None else EXIT_FAILED
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            print(f"headwater {name}: cannot reach the API server: {exc}", file=sys.stderr)
            return failure_code if failure_code is not None else EXIT_FAILED
        except KeyboardInterrupt:
            return 130

    return run
