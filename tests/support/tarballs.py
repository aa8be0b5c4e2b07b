"""Crafted tarballs for the safe-extraction tests (source include and toolkit artifacts)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def make_tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            if info.isreg():
                payload = data.get(info.name, b"")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info
