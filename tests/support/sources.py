"""Readers for what the source controller serves: artifact downloads and their contents."""

from __future__ import annotations

import io
import tarfile
import urllib.request


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def tar_listing(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            member.name: (tar.extractfile(member).read() if member.isfile() else b"")  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }
