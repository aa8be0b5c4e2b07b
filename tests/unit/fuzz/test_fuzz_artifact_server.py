"""Fuzzed artifact server requests: nothing outside storage, no listing, bound as configured.

The real ArtifactServer serves a storage root next to a secret file, a symlink out and a
hidden directory. Any request target (sent raw: clients would normalise it) is answered
200 only with the bytes of a regular file inside the root, else 4xx; never the secret,
never a directory listing. The server binds exactly the host it is given.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.source.server import ArtifactServer

SECRET = b"canary-outside-the-storage-root-91ac"
ARTIFACT = b"artifact-bytes-" * 10
SEGMENTS = [
    "..",
    ".",
    "",
    "%2e%2e",
    "%2E%2e",
    "%2f",
    "%5c",
    "\\",
    "%00",
    "gitrepository",
    "ns",
    "app",
    "abc.tar.gz",
    "escape",
    "link.tar.gz",
    ".locks",
    "secret.txt",
    "..%2f",
    "~",
    "%252e%252e",
    "a?b",
    "#",
    ";",
    "//",
]
targets = st.lists(
    st.sampled_from(SEGMENTS) | st.text(alphabet="abc.%/2e", max_size=4), max_size=8
).map(lambda parts: "/" + "/".join(parts))


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[asyncio.AbstractEventLoop, int]]:
    tmp = tmp_path_factory.mktemp("server")
    root = tmp / "storage"
    (root / "gitrepository" / "ns" / "app").mkdir(parents=True)
    (root / "gitrepository" / "ns" / "app" / "abc.tar.gz").write_bytes(ARTIFACT)
    (root / ".locks").mkdir()
    (root / ".locks" / "x.lock").write_bytes(SECRET)
    (tmp / "secret.txt").write_bytes(SECRET)
    (root / "gitrepository" / "ns" / "app" / "link.tar.gz").symlink_to(tmp / "secret.txt")
    (root / "escape").symlink_to(tmp, target_is_directory=True)
    loop = asyncio.new_event_loop()
    server = ArtifactServer(root, host="127.0.0.1", port=0)
    loop.run_until_complete(server.start())
    yield loop, server.port
    loop.run_until_complete(server.stop())
    loop.close()


async def _raw(port: int, method: str, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@given(target=targets, method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]))
@example(target="/gitrepository/ns/app/", method="GET")
@example(target="/gitrepository/ns/app/abc.tar.gz", method="GET")
@example(target="/escape/secret.txt", method="GET")
@example(target="/", method="GET")
def test_only_files_inside_storage_are_served(
    served: tuple[asyncio.AbstractEventLoop, int], target: str, method: str
) -> None:
    loop, port = served
    answer = loop.run_until_complete(_raw(port, method, target))
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    assert SECRET not in answer
    assert b"Index of" not in answer and b"<a href" not in body
    if status == 200:
        assert method in ("GET", "HEAD") and body in (ARTIFACT, b"")
    else:
        assert 400 <= status < 500, answer[:200]


def test_the_server_binds_only_the_host_it_is_given(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    server = ArtifactServer(tmp_path, host="127.0.0.1", port=0)
    loop.run_until_complete(server.start())
    try:
        assert server._runner is not None
        assert [a[0] for a in server._runner.addresses] == ["127.0.0.1"]
        # Another address of this machine, where one exists, is refused.
        others = {
            info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        } - {"127.0.0.1"}
        for host in others:
            with pytest.raises(OSError):
                socket.create_connection((host, server.port), timeout=5).close()
    finally:
        loop.run_until_complete(server.stop())
        loop.close()
