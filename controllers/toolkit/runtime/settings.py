"""Runtime settings shared by every controller.

Values come from `HEADWATER_*` environment variables, with the defaults
docs/architecture.md lists; command-line flags of `headwater run` override the environment.
Parsing is strict: a bad value fails at startup with a message naming the
variable or flag it came from, rather than surfacing later as a bind error.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import socket
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.selectors import LabelSelector, SelectorError, parse_selector

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")

ENV_PREFIX = "HEADWATER_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names its source."""


@dataclasses.dataclass(frozen=True)
class Address:
    """A listen or target address. An empty host means every interface."""

    host: str
    port: int

    @property
    def bind_host(self) -> str | None:
        """The host to pass to a server; None binds every interface."""
        return self.host or None

    @property
    def connect_host(self) -> str:
        """The host a local client should dial when the address has none."""
        return self.host or "127.0.0.1"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(value: str, *, source: str) -> Address:
    """Parse `[host]:port`, `host:port` or `[v6]:port`; `source` names the setting in errors."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text:
        raise SettingsError(f"{source}: invalid address {value!r}: expected [host]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        _check_ipv6(host, value=value, source=source)
    elif ":" in host:
        raise SettingsError(
            f"{source}: invalid address {value!r}: write IPv6 hosts in brackets, e.g. [::1]:8080"
        )
    if any(ch.isspace() for ch in host) or "/" in host:
        raise SettingsError(f"{source}: invalid host {host!r} in address {value!r}")
    return Address(host=host, port=_parse_port(port_text, value=value, source=source))


def _check_ipv6(host: str, *, value: str, source: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError as exc:
        raise SettingsError(f"{source}: invalid IPv6 host in address {value!r}") from exc


def _parse_port(text: str, *, value: str, source: str) -> int:
    if not text.isdigit():
        raise SettingsError(f"{source}: invalid port {text!r} in address {value!r}")
    port = int(text)
    # Port 0 is allowed: the OS picks a free port, which is useful in tests.
    if port > 65535:
        raise SettingsError(f"{source}: port {port} out of range 0-65535 in address {value!r}")
    return port


def parse_endpoint(value: str, *, source: str) -> tuple[Address, str]:
    """Parse an address that may also be written as an http(s) URL.

    Returns the address and the URL a client should POST to. The events
    address is both the notification controller's listen address and the
    emitters' target (docs/architecture.md), so it accepts either form.
    """
    text = value.strip()
    if "://" not in text:
        address = parse_address(text, source=source)
        return address, f"http://{_url_host(address.connect_host)}:{address.port}/"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{source}: invalid URL {value!r}: expected http(s)://host[:port]/")
    try:
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"{source}: invalid port in URL {value!r}") from exc
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    path = parts.path or "/"
    url = f"{parts.scheme}://{_url_host(parts.hostname)}:{port}{path}"
    return Address(host=parts.hostname, port=port), url


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_positive_int(value: str, *, source: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{source}: expected a whole number of at least 1, got {value!r}")
    return int(text)


def parse_namespace(value: str, *, source: str) -> str:
    text = value.strip()
    # A DNS-1123 label: what Kubernetes accepts as a namespace name.
    valid = (
        0 < len(text) <= 63
        and text[0].isalnum()
        and text[-1].isalnum()
        and all(ch.islower() or ch.isdigit() or ch == "-" for ch in text)
    )
    if not valid:
        raise SettingsError(f"{source}: {value!r} is not a valid namespace name")
    return text


def parse_log_format(value: str, *, source: str) -> LogFormat:
    text = value.strip().lower()
    if text not in LOG_FORMATS:
        raise SettingsError(f"{source}: expected one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return text


def parse_log_level(value: str, *, source: str) -> LogLevel:
    text = value.strip().lower()
    if text == "warn":
        text = "warning"
    if text not in LOG_LEVELS:
        raise SettingsError(f"{source}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return text


def parse_window(value: str, *, source: str) -> float:
    """A Go duration (`5m`, `30s`) in seconds; `0` turns the feature off."""
    try:
        return parse_duration(value, field=source)
    except DurationError as exc:
        raise SettingsError(str(exc)) from None


def parse_rate(value: str, *, source: str) -> float:
    """A rate per second: a number >= 0."""
    try:
        rate = float(value.strip())
    except ValueError:
        raise SettingsError(f"{source}: invalid rate {value!r}: expected a number") from None
    if not (rate >= 0 and math.isfinite(rate)):
        raise SettingsError(f"{source}: invalid rate {value!r}: must be 0 or more")
    return rate


def parse_positive_duration(value: str, *, source: str) -> float:
    """A Go duration (`35s`) in seconds that must be more than zero."""
    seconds = parse_window(value, source=source)
    if seconds <= 0:
        raise SettingsError(f"{source}: must be more than zero, got {value!r}")
    return seconds


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_bool(value: str, *, source: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{source}: expected true or false, got {value!r}")


def parse_label_selector(value: str, *, source: str) -> str:
    """Check the selector now, so a typo stops the process instead of matching nothing."""
    try:
        parse_selector(value)
    except SelectorError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    return value.strip()


def parse_service_account(value: str, *, source: str) -> str:
    """A ServiceAccount name: a DNS-1123 subdomain, as Kubernetes requires."""
    text = value.strip()
    labels = text.split(".")
    valid = len(text) <= 253 and all(
        label
        and label[0].isalnum()
        and label[-1].isalnum()
        and all(ch.islower() or ch.isdigit() or ch == "-" for ch in label)
        for label in labels
    )
    if not valid:
        raise SettingsError(f"{source}: {value!r} is not a valid ServiceAccount name")
    return text


def parse_path(value: str, *, source: str) -> str:
    if not value.strip():
        raise SettingsError(f"{source}: must not be empty")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a controller process needs to know about its environment."""

    namespace: str = "headwater-system"
    # Reconcile objects in this namespace only; empty watches every namespace
    # (Flux's --watch-all-namespaces, the default).
    watch_namespace: str = ""
    storage_addr: Address = Address("", 9090)
    # Host:port written into artifact URLs; derived from storage_addr when unset.
    storage_adv_addr: Address = Address("localhost", 9090)
    storage_path: str = os.path.join(tempfile.gettempdir(), "headwater", "artifacts")
    events_addr: Address = Address("", 9091)
    # Where emitters POST events (the event contract, docs/architecture.md).
    events_url: str = "http://127.0.0.1:9091/"
    # How long the notification controller drops repeats of an event (Flux's
    # --rate-limit-interval); 0 forwards every repeat.
    events_dedup_window: float = 300.0
    receiver_addr: Address = Address("", 9292)
    # Webhook requests per second accepted from one client address (bursts of five
    # seconds' worth); more are answered 429. 0 turns the limit off.
    receiver_rate_limit: float = 10.0
    metrics_addr: Address = Address("", 8080)
    health_addr: Address = Address("", 9440)
    concurrent: int = 4
    # Largest artifact the source controller stores (and consumers accept), in bytes.
    artifact_max_size: int = 100 * 1024 * 1024
    # Most tags the image controller keeps for one ImageRepository; more is a failed scan.
    image_max_tags: int = 50_000
    # How old the newest sealing key may get before a new one is added, in
    # seconds; 0 never adds one (Bitnami's --key-renew-period, 30 days).
    sealing_key_renew_period: float = 720 * 3600.0
    # Longest time between two dry-runs of every object a Kustomization applied, in
    # seconds; in between, a no-op reconcile the inventory watch vouches for skips
    # it. 0 dry-runs every reconcile, as Flux does.
    full_verify_interval: float = 3600.0
    log_format: LogFormat = "text"
    log_level: LogLevel = "info"
    # Leader election (Flux's flags and defaults): None means "on in a cluster,
    # off next to one", so the demo and tests run one replica without a Lease.
    enable_leader_election: bool | None = None
    leader_election_release_on_cancel: bool = True
    leader_election_lease_duration: float = 35.0
    leader_election_renew_deadline: float = 30.0
    leader_election_retry_period: float = 5.0
    # Reconcile only objects whose labels match (Flux's --watch-label-selector,
    # used with the sharding.fluxcd.io/key label); empty reconciles every object.
    watch_label_selector: str = ""
    # The multi-tenancy lockdown, Flux's flags (docs/operations.md, "Lockdown"):
    # a Kustomization or HelmRelease without spec.serviceAccountName runs as
    # this account of its own namespace; empty keeps the controller's identity.
    default_service_account: str = ""
    # Refuse a sourceRef, chartRef or dependsOn naming another namespace.
    no_cross_namespace_refs: bool = False
    # Refuse kustomizations that reference remote bases or files (Flux's
    # --no-remote-bases). On by default here, unlike Flux: builds reach no network
    # unless a platform turns this off.
    no_remote_bases: bool = True

    @property
    def watch_selector(self) -> LabelSelector:
        """The parsed `watch_label_selector` (checked when the settings were loaded)."""
        return parse_selector(self.watch_label_selector)

    @property
    def storage_base_url(self) -> str:
        """The base URL consumers use to download artifacts."""
        return f"http://{self.storage_adv_addr}/"

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        flags: Mapping[str, str | None] | None = None,
    ) -> Settings:
        """Read settings: a flag that is set wins over the environment, which wins over defaults.

        `flags` is keyed by field name (e.g. `metrics_addr`), as argparse
        stores them; a value of None means the flag was not given.
        """
        env = os.environ if environ is None else environ
        given = flags or {}
        unknown = set(given) - {spec.field for spec in _SPECS}
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")

        values: dict[str, Any] = {}
        for spec in _SPECS:
            raw, source = spec.lookup(env, given)
            if raw is not None:
                values[spec.field] = spec.parse(raw, source)

        if "events_addr" in values:
            values["events_addr"], values["events_url"] = cast(
                tuple[Address, str], values["events_addr"]
            )
        storage = cast(Address, values.get("storage_addr", cls.storage_addr))
        if "storage_adv_addr" not in values:
            values["storage_adv_addr"] = default_advertised(storage)
        settings = dataclasses.replace(cls(), **values)
        settings.check_leader_election()
        return settings

    def check_leader_election(self) -> None:
        """The order client-go requires: a leader must give up before others may take over."""
        lease = self.leader_election_lease_duration
        renew = self.leader_election_renew_deadline
        retry = self.leader_election_retry_period
        if not lease > renew:
            raise SettingsError(
                f"--leader-election-lease-duration ({lease:g}s) must be longer than "
                f"--leader-election-renew-deadline ({renew:g}s)"
            )
        if not renew > 1.2 * retry:
            raise SettingsError(
                f"--leader-election-renew-deadline ({renew:g}s) must be longer than 1.2 x "
                f"--leader-election-retry-period ({retry:g}s)"
            )


def default_advertised(storage: Address) -> Address:
    """Advertise the storage address as reachable from other pods.

    Like Flux, a wildcard listen host is replaced by this machine's hostname,
    which in a pod is the pod name and resolves through its Service.
    """
    wildcard = storage.host in ("", "0.0.0.0", "::")
    host = socket.gethostname() if wildcard else storage.host
    return Address(host=host or "localhost", port=storage.port)


@dataclasses.dataclass(frozen=True)
class _Spec:
    field: str
    env: str
    flag: str
    parse_fn: Callable[..., object]

    def lookup(
        self, env: Mapping[str, str], flags: Mapping[str, str | None]
    ) -> tuple[str | None, str]:
        flag_value = flags.get(self.field)
        if flag_value is not None:
            return flag_value, self.flag
        env_value = env.get(self.env)
        # An empty variable is treated as unset, as shells and manifests often leave them so.
        if env_value is not None and env_value.strip() != "":
            return env_value, self.env
        return None, self.env

    def parse(self, raw: str, source: str) -> object:
        return self.parse_fn(raw, source=source)


def _spec(field: str, parse_fn: Callable[..., object]) -> _Spec:
    return _Spec(
        field=field,
        env=ENV_PREFIX + field.upper(),
        flag="--" + field.replace("_", "-"),
        parse_fn=parse_fn,
    )


_SPECS: tuple[_Spec, ...] = (
    _spec("namespace", parse_namespace),
    _spec("watch_namespace", parse_namespace),
    _spec("storage_addr", parse_address),
    _spec("storage_adv_addr", parse_address),
    _spec("storage_path", parse_path),
    _spec("events_addr", parse_endpoint),
    _spec("events_dedup_window", parse_window),
    _spec("receiver_addr", parse_address),
    _spec("receiver_rate_limit", parse_rate),
    _spec("metrics_addr", parse_address),
    _spec("health_addr", parse_address),
    _spec("concurrent", parse_positive_int),
    _spec("artifact_max_size", parse_positive_int),
    _spec("image_max_tags", parse_positive_int),
    _spec("sealing_key_renew_period", parse_window),
    _spec("full_verify_interval", parse_window),
    _spec("log_format", parse_log_format),
    _spec("log_level", parse_log_level),
    _spec("enable_leader_election", parse_bool),
    _spec("leader_election_release_on_cancel", parse_bool),
    _spec("leader_election_lease_duration", parse_positive_duration),
    _spec("leader_election_renew_deadline", parse_positive_duration),
    _spec("leader_election_retry_period", parse_positive_duration),
    _spec("watch_label_selector", parse_label_selector),
    _spec("default_service_account", parse_service_account),
    _spec("no_cross_namespace_refs", parse_bool),
    _spec("no_remote_bases", parse_bool),
)

# Settings that are switches: `--enable-leader-election` alone means true.
BOOLEAN_FIELDS = frozenset(
    {
        "enable_leader_election",
        "leader_election_release_on_cancel",
        "no_cross_namespace_refs",
        "no_remote_bases",
    }
)


@dataclasses.dataclass(frozen=True)
class FlagHelp:
    """What `headwater run` shows for one setting's flag."""

    field: str
    flag: str
    env: str
    default: str
    choices: tuple[str, ...] | None
    boolean: bool = False


def flag_help() -> tuple[FlagHelp, ...]:
    """Describe every setting's flag, so the CLI can add them without repeating the table."""
    defaults = Settings()
    choices: dict[str, tuple[str, ...]] = {"log_format": LOG_FORMATS, "log_level": LOG_LEVELS}
    shown_default = {
        "storage_adv_addr": "the storage address, with this host's name for a wildcard host",
        "sealing_key_renew_period": "720h (0 disables renewal)",
        "events_dedup_window": "5m",
        "full_verify_interval": "1h (0 dry-runs every reconcile, as Flux)",
        "receiver_rate_limit": "10 (requests/second per client; 0 disables)",
        "enable_leader_election": "true in a cluster, false out of one",
        "leader_election_release_on_cancel": "true",
        "leader_election_lease_duration": "35s",
        "leader_election_renew_deadline": "30s",
        "leader_election_retry_period": "5s",
        "watch_label_selector": "empty (every object)",
        "default_service_account": "empty (the controller's own identity)",
        "no_cross_namespace_refs": "false",
        "no_remote_bases": "true (Flux: false)",
    }
    result = []
    for spec in _SPECS:
        default = shown_default.get(spec.field, str(getattr(defaults, spec.field)))
        result.append(
            FlagHelp(
                field=spec.field,
                flag=spec.flag,
                env=spec.env,
                default=default,
                choices=choices.get(spec.field),
                boolean=spec.field in BOOLEAN_FIELDS,
            )
        )
    return tuple(result)
