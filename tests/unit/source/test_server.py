"""The artifact server: read-only, exact bytes, nothing outside the storage root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from controllers.source.server import ArtifactServer

SECRET = b"outside-the-storage-root"
ARTIFACT = b"\x1f\x8b" + bytes(range(256)) * 40


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ArtifactServer, Path]]:
    root = tmp_path / "storage"
    (root / "gitrepository" / "ns" / "app").mkdir(parents=True)
    (root / "gitrepository" / "ns" / "app" / "abc.tar.gz").write_bytes(ARTIFACT)
    (root / ".locks").mkdir()
    (root / ".locks" / "x.lock").write_bytes(b"lock")
    (root / "gitrepository" / "ns" / "app" / ".tmp-1.part").write_bytes(b"partial")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "gitrepository" / "ns" / "app" / "link.tar.gz").symlink_to(tmp_path / "secret.txt")
    (root / "escape").symlink_to(tmp_path, target_is_directory=True)
    server = ArtifactServer(root, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server, root
    finally:
        await server.stop()


async def raw_get(port: int, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send the request line exactly as given (clients would normalise the path)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


async def test_get_and_head(served: tuple[ArtifactServer, Path]) -> None:
    server, _ = served
    url = f"http://127.0.0.1:{server.port}/gitrepository/ns/app/abc.tar.gz"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(ARTIFACT))
            assert resp.headers["Content-Type"] == "application/gzip"
            assert "Content-Encoding" not in resp.headers
            assert await resp.read() == ARTIFACT
        async with session.head(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(ARTIFACT))
            assert await resp.read() == b""
        async with session.get(url.replace("abc", "missing")) as resp:
            assert resp.status == 404
        async with session.post(url) as resp:
            assert resp.status == 405


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/gitrepository/../../secret.txt",
        "/gitrepository/%2e%2e/%2e%2e/secret.txt",
        "/gitrepository%2f..%2f..%2fsecret.txt",
        "/escape/secret.txt",
        "/gitrepository/ns/app/link.tar.gz",
        "//secret.txt",
        "/.locks/x.lock",
        "/gitrepository/ns/app/.tmp-1.part",
        "/gitrepository/ns/app",
        "/gitrepository/ns/app/",
        "/",
        "/..%5csecret.txt",
    ],
)
async def test_nothing_outside_or_internal_is_served(
    served: tuple[ArtifactServer, Path], target: str
) -> None:
    server, _ = served
    status, data = await raw_get(server.port, target)
    assert status in (400, 403, 404)
    assert SECRET not in data
    assert b"partial" not in data
    assert b"lock" not in data.split(b"\r\n\r\n", 1)[-1]


async def test_forbidden_segments_answer_403(served: tuple[ArtifactServer, Path]) -> None:
    server, _ = served
    status, _ = await raw_get(server.port, "/.locks/x.lock")
    assert status == 403
