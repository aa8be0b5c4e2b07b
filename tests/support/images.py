"""Running a built OCI image on this machine, as far as its kernel and cgroups allow.

`buildah run --isolation chroot` is the runtime that works here: podman and
buildah's default OCI isolation go through crun, which refuses this machine's
hybrid cgroup setup ("cgroups in hybrid mode not supported, drop all
controllers from cgroupv2") and its RLIMIT_NOFILE/RLIMIT_NPROC ceilings
(docs/operations.md, "The image"). `run_read_only` runs a container's root
filesystem the way config/'s Pods do: read-only, as the image's user, with
only /tmp writable.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TIMEOUT = 300


def _run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT)
    if check and done.returncode != 0:
        output = done.stderr[-3000:] + done.stdout[-2000:]
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{output}")
    return done


class Buildah:
    """A working container of an image, in buildah storage of its own under `root`."""

    def __init__(self, root: Path, layout: Path, tag: str) -> None:
        # buildah names the image after the layout's path, which must then be a valid
        # image name (no dot-directories such as ~/.cache): reach it by a plain one.
        link = root / "layout"
        link.symlink_to(layout)
        reference = f"oci:{link}:{tag}"
        # overlay shares the image's layers; vfs, where overlay is not available,
        # copies them (minutes for this image on a loaded machine).
        for driver in ("overlay", "vfs"):
            self._global = [
                "buildah",
                "--root",
                str(root / driver / "storage"),
                "--runroot",
                str(root / driver / "run"),
                "--storage-driver",
                driver,
            ]
            made = _run([*self._global, "from", "--pull-never", "--quiet", reference], check=False)
            if made.returncode == 0:
                break
        else:
            raise AssertionError(f"buildah from {reference} failed:\n{made.stderr[-3000:]}")
        self.name = made.stdout.strip().splitlines()[-1]

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """`command` in the container, with the image's user, env and working directory."""
        return _run(
            [*self._global, "run", "--isolation", "chroot", self.name, "--", *command],
            check=False,
        )

    def mount(self) -> Path:
        """The container's root filesystem on the host (buildah mount)."""
        mounted = _run([*self._global, "mount", self.name])
        return Path(mounted.stdout.strip())

    def remove(self) -> None:
        _run([*self._global, "rm", self.name], check=False)


@contextmanager
def buildah_container(root: Path, layout: Path, tag: str) -> Iterator[Buildah]:
    container = Buildah(root, layout, tag)
    try:
        yield container
    finally:
        container.remove()
        # The storage holds a copy of the image's files: do not leave it in pytest's tmp.
        shutil.rmtree(root, ignore_errors=True)


def run_read_only(
    rootfs: Path, config: Mapping[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint with `args`, as a Pod of config/ runs it.

    In a mount namespace of its own: the root filesystem bind-mounted
    read-only, a fresh tmpfs on /tmp (config/'s emptyDir), chroot into it as
    the image config's user, with exactly the image config's environment.
    """
    image = config["config"]
    user = str(image["User"])
    env = [str(entry) for entry in image["Env"]]
    entrypoint = [str(part) for part in image["Entrypoint"]]
    script = (
        'set -e; r="$1"; shift; mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"; '
        'mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"; exec chroot --userspec="$0" "$r" "$@"'
    )
    return _run(
        [
            "unshare",
            "--mount",
            "--fork",
            "sh",
            "-c",
            script,
            user,
            str(rootfs),
            "env",
            "-i",
            *env,
            *entrypoint,
            *args,
        ],
        check=False,
    )
