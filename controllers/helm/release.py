"""Helm actions on one release, through pyhelm3 driving the pinned helm binary.

pyhelm3 0.5.8 with helm v4 (checked against `.tools/bin/helm`, v4.3):
- `install_or_upgrade` (`helm upgrade --install --output json`), `rollback`,
  `uninstall`, `history` and `status` work as they are;
- it has no `helm test`, so tests run through its generic `Command.run`;
- `history_max_revisions` is fixed per `Command`, so each `maxHistory` gets
  its own Command;
- `install_or_upgrade(create_namespace=...)` defaults to True: always passed;
- `disable_validation=True` is broken (it extends the argument list with
  the characters of `--disable-openapi-validation`): never used; that flag and
  `--skip-schema-validation` are passed as extra arguments instead;
- `wait=True` passes `--wait --wait-for-jobs`; helm v4 reads a bare `--wait`
  as its `watcher` strategy (kstatus), which is what Flux waits with;
- `force=True` passes helm v3's `--force`, which helm v4's upgrade and
  rollback no longer have: upgrades use `force_replace`, forced rollbacks go
  through `Command.run`; and helm v4 refuses `--force-replace` with
  server-side apply (its default), so a forced action also passes
  `--server-side=false`;
- `rollback(recreate_pods=True)` passes `--recreate-pods`, gone in helm v4;
- helm v4's `status --output json` has no `chart` and embeds every live
  object of the release (with its pods), so it is read only for test hooks;
- there is no impersonation option: helm's `--kube-as-user` is appended;
- a release in a remote cluster (`kubeConfig.secretRef`) gets a Command of
  its own with pyhelm3's `kubeconfig` (helm's `--kubeconfig`): a file the
  reconcile wrote (see `remote`), never cached past it.

Every helm process started is counted in `headwater_helm_commands_total`,
so a reconcile that needs no helm call can be seen to make none.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from pyhelm3 import Command
from pyhelm3 import errors as helm_errors

from controllers.helm import postrender

log = logging.getLogger(__name__)

HELM_COMMANDS = Counter(
    "headwater_helm_commands_total",
    "helm processes started by the helm controller, by helm command.",
    ["command"],
)
_MAX_MESSAGE = 900
# Arguments pyhelm3 has no option for (the post-renderer), added to the helm
# command started by the task that set them.
_EXTRA_ARGS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "helm_extra_args", default=()
)


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    namespace: str
    # The user helm impersonates for this release (serviceAccountName), if any.
    as_user: str | None = None
    # A remote cluster (kubeConfig.secretRef): the kubeconfig file helm is given
    # and the API client helm's storage and CRDs are read and written with.
    kubeconfig: Path | None = None
    api: Any = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Revision:
    """One entry of `helm history`."""

    version: int
    status: str
    chart: str  # "<name>-<version>", as helm writes it
    app_version: str
    updated: str
    description: str


class HelmError(Exception):
    """A helm command failed; `message` is helm's own error, trimmed for a condition."""

    def __init__(self, command: str, message: str, *, render: bool = False) -> None:
        super().__init__(message)
        self.command = command
        self.message = message
        self.render = render  # the chart could not be rendered: nothing reached the cluster


def _error_text(exc: helm_errors.Error) -> str:
    lines = [
        line.strip()
        for line in exc.stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("level=")
    ]
    text = " ".join(lines) or f"helm exited with status {exc.returncode}"
    text = text.removeprefix("Error: ")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _seconds(value: float) -> str:
    return f"{max(int(value), 1)}s"


class _CountingCommand(Command):  # type: ignore[misc]  # pyhelm3 ships no type hints
    """pyhelm3's Command, counting processes and impersonating a user when told to.

    pyhelm3 has no impersonation option; helm's own `--kube-as-user` flag is
    appended to every command instead.
    """

    def __init__(self, *, as_user: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._as_user = as_user

    async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
        HELM_COMMANDS.labels(str(command[0]) if command else "").inc()
        if self._as_user:
            command = [*command, "--kube-as-user", self._as_user]
        command = [*command, *_EXTRA_ARGS.get()]
        output: bytes = await super().run(command, input)
        return output


class Helm:
    """The helm binary, for one cluster (the controller's kubeconfig)."""

    def __init__(
        self,
        executable: str = "helm",
        kubeconfig: Path | None = None,
        *,
        kustomize: str | None = None,
    ) -> None:
        self._executable = executable
        self._kubeconfig = kubeconfig
        # The pinned kustomize the post-renderer plugin runs (see `postrender`).
        self._kustomize = kustomize
        self._commands: dict[tuple[int, str | None], Command] = {}

    def _for(self, ref: ReleaseRef, max_history: int = 0) -> Command:
        if ref.kubeconfig is not None:
            # The file lives for one reconcile: its Command is not kept.
            return _CountingCommand(
                executable=self._executable,
                kubeconfig=ref.kubeconfig,
                history_max_revisions=max_history,
                as_user=ref.as_user,
            )
        return self._command(max_history, ref.as_user)

    def _command(self, max_history: int = 0, as_user: str | None = None) -> Command:
        key = (max_history, as_user)
        command = self._commands.get(key)
        if command is None:
            command = _CountingCommand(
                executable=self._executable,
                kubeconfig=self._kubeconfig,
                history_max_revisions=max_history,
                as_user=as_user,
            )
            self._commands[key] = command
        return command

    def _post_render_args(self, renderers: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        if not renderers:
            return ()
        if self._kustomize is None:
            raise HelmError("post-render", "no kustomize binary for spec.postRenderers")
        return (
            *("--post-renderer", postrender.PLUGIN_NAME),
            *("--post-renderer-args", self._kustomize),
            *("--post-renderer-args", postrender.encode(renderers)),
        )

    async def _call(self, what: str, coroutine: Any, extra_args: tuple[str, ...] = ()) -> Any:
        token = _EXTRA_ARGS.set(extra_args)
        try:
            return await coroutine
        except helm_errors.Error as exc:
            render = isinstance(exc, helm_errors.FailedToRenderChartError) or (
                "parse error" in exc.stderr.decode("utf-8", "replace")
            )
            raise HelmError(what, _error_text(exc), render=render) from None
        finally:
            _EXTRA_ARGS.reset(token)

    async def install(
        self,
        ref: ReleaseRef,
        chart: Path,
        values: Mapping[str, Any],
        *,
        timeout: float,
        wait: bool,
        create_namespace: bool,
        skip_crds: bool,
        max_history: int,
        hooks: bool = True,
        take_ownership: bool = True,
        server_side: str = "auto",
        post_renderers: Sequence[Mapping[str, Any]] = (),
        validation_args: Sequence[str] = (),
    ) -> None:
        extra = (*self._post_render_args(post_renderers), *validation_args)
        await self._call(
            "install",
            self._for(ref, max_history).install_or_upgrade(
                ref.name,
                chart,
                dict(values),
                namespace=ref.namespace,
                create_namespace=create_namespace,
                skip_crds=skip_crds,
                timeout=_seconds(timeout),
                wait=wait,
                reset_values=True,
                no_hooks=not hooks,
                take_ownership=take_ownership,
                server_side=server_side,
            ),
            extra,
        )

    async def upgrade(
        self,
        ref: ReleaseRef,
        chart: Path,
        values: Mapping[str, Any],
        *,
        timeout: float,
        wait: bool,
        force: bool,
        max_history: int,
        hooks: bool = True,
        take_ownership: bool = True,
        server_side: str = "auto",
        cleanup_on_fail: bool = False,
        post_renderers: Sequence[Mapping[str, Any]] = (),
        preserve_values: bool = False,
        validation_args: Sequence[str] = (),
    ) -> None:
        extra = (*self._post_render_args(post_renderers), *validation_args)
        await self._call(
            "upgrade",
            self._for(ref, max_history).install_or_upgrade(
                ref.name,
                chart,
                dict(values),
                namespace=ref.namespace,
                create_namespace=False,
                # helm never touches CRDs on upgrade; the engine applies them by policy.
                skip_crds=True,
                force_replace=force,
                # helm v4 refuses to replace objects it server-side applies.
                server_side="false" if force else server_side,
                timeout=_seconds(timeout),
                wait=wait,
                # The spec's values are the whole truth, never merged with the last
                # release's, unless upgrade.preserveValues asks for helm's --reuse-values.
                reset_values=not preserve_values,
                reuse_values=preserve_values,
                no_hooks=not hooks,
                take_ownership=take_ownership,
                cleanup_on_fail=cleanup_on_fail,
            ),
            extra,
        )

    async def test(self, ref: ReleaseRef, *, timeout: float, filters: Sequence[str] = ()) -> None:
        await self._call(
            "test",
            self._for(ref).run(
                [
                    *("test", ref.name, "--namespace", ref.namespace),
                    *("--timeout", _seconds(timeout)),
                    *(part for item in filters for part in ("--filter", item)),
                ]
            ),
        )

    async def rollback(
        self,
        ref: ReleaseRef,
        version: int,
        *,
        timeout: float,
        force: bool,
        max_history: int,
        wait: bool = True,
        hooks: bool = True,
        cleanup_on_fail: bool = False,
    ) -> None:
        # pyhelm3's force is helm v3's --force; helm v4 calls it --force-replace.
        command = self._for(ref, max_history)
        if force:
            await self._call(
                "rollback",
                command.run(
                    [
                        *("rollback", ref.name, version, "--namespace", ref.namespace),
                        *("--history-max", max_history, "--timeout", _seconds(timeout)),
                        *("--force-replace", "--server-side=false"),
                        *(["--wait", "--wait-for-jobs"] if wait else []),
                        *([] if hooks else ["--no-hooks"]),
                        *(["--cleanup-on-fail"] if cleanup_on_fail else []),
                    ]
                ),
            )
            return
        await self._call(
            "rollback",
            command.rollback(
                ref.name,
                version,
                namespace=ref.namespace,
                timeout=_seconds(timeout),
                wait=wait,
                no_hooks=not hooks,
                cleanup_on_fail=cleanup_on_fail,
            ),
        )

    async def uninstall(
        self,
        ref: ReleaseRef,
        *,
        keep_history: bool,
        timeout: float,
        wait: bool = True,
        hooks: bool = True,
    ) -> bool:
        """Uninstall; False when there was no release to uninstall."""
        try:
            await self._call(
                "uninstall",
                self._for(ref).uninstall(
                    ref.name,
                    namespace=ref.namespace,
                    keep_history=keep_history,
                    timeout=_seconds(timeout),
                    wait=wait,
                    no_hooks=not hooks,
                ),
            )
        except HelmError as exc:
            if "not found" in exc.message:
                return False
            raise
        return True

    async def history(self, ref: ReleaseRef) -> list[Revision]:
        """The release's revisions, oldest first; empty when there is no release."""
        try:
            entries = await self._call(
                "history", self._for(ref).history(ref.name, namespace=ref.namespace)
            )
        except HelmError as exc:
            if "not found" in exc.message:
                return []
            raise
        return [
            Revision(
                version=int(entry.get("revision") or 0),
                status=str(entry.get("status") or ""),
                chart=str(entry.get("chart") or ""),
                app_version=str(entry.get("app_version") or ""),
                updated=str(entry.get("updated") or ""),
                description=str(entry.get("description") or ""),
            )
            for entry in entries
        ]

    async def manifest(self, ref: ReleaseRef, version: int) -> str:
        """The rendered (and post-rendered) manifest helm stored for a revision."""
        output = await self._call(
            "get manifest",
            self._for(ref).run(
                ["get", "manifest", ref.name, "--namespace", ref.namespace, "--revision", version]
            ),
        )
        return bytes(output).decode("utf-8", "replace")

    async def test_hooks(self, ref: ReleaseRef) -> dict[str, dict[str, str]]:
        """The last run of each test hook of the current revision, as Flux's `testHooks`."""
        status = await self._call(
            "status", self._for(ref).status(ref.name, namespace=ref.namespace)
        )
        return test_hooks_of(status.get("hooks") or [])


def test_hooks_of(hooks: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for hook in hooks:
        if "test" not in (hook.get("events") or []):
            continue
        run = hook.get("last_run") or {}
        entry = {
            "lastStarted": str(run.get("started_at") or ""),
            "lastCompleted": str(run.get("completed_at") or ""),
            "phase": str(run.get("phase") or ""),
        }
        result[str(hook.get("name"))] = {k: v for k, v in entry.items() if v}
    return result
