"""Fuzzed archive extraction: whatever a tarball holds, nothing lands outside the target.

Each example builds a gzip tarball from drawn entries (regular files, directories,
symlinks and hard links aiming anywhere, devices, fifos, duplicate and hostile names)
and extracts it with `safe_extract` into a directory that sits next to a sentinel
directory. A failure is: any exception other than UnsafeArchiveError, anything created or
changed outside the target, or a link, device or fifo inside it. Raw and mutated bytes
are fed in too; bombs (gzip, tar, oversize headers) must be refused within their limits.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tarfile
import tracemalloc
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from controllers.toolkit.artifacts import UnsafeArchiveError, safe_extract

KINDS = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
]
PARTS = ["a", "b", "..", ".", "", "outside", "etc", "passwd", "x" * 300, "d\x00", "a\\b", " "]
LINK_TARGETS = ["/etc/passwd", "../outside", "../../outside/x", "a", "/", "..", "a/../../.."]

names = st.lists(st.sampled_from(PARTS), min_size=1, max_size=5).map("/".join) | st.sampled_from(
    ["/etc/passwd", "/tmp/x", "../outside/x", "./a", "a/../../outside/y", "//a", "a/"]
)
entries = st.lists(
    st.tuples(
        names,
        st.sampled_from(KINDS),
        st.sampled_from(LINK_TARGETS),
        st.binary(max_size=64),
        st.integers(min_value=0, max_value=0o7777),
    ),
    max_size=12,
)


def _tarball(items: list[tuple[str, bytes, str, bytes, int]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for name, kind, link, data, mode in items:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.mode = mode
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    found: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            data = b""
            if stat.S_ISREG(st_.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
            found[os.path.relpath(path, root)] = (st_.st_mode, st_.st_size, data)
    return found


def _extract_checked(tmp: Path, archive: bytes, **limits: int) -> None:
    """Extract `archive` into tmp/work/dest; fail on anything outside it or inside it unsafe."""
    work = tmp / "work"
    dest = work / "dest"
    outside = work / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "x").write_bytes(b"sentinel")
    tarball = tmp / "a.tar.gz"
    tarball.write_bytes(archive)
    before = _snapshot(outside)
    with contextlib.suppress(UnsafeArchiveError):
        safe_extract(tarball, dest, **limits)
    assert _snapshot(outside) == before
    assert sorted(os.listdir(work)) == ["dest", "outside"]
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), os.path.join(dirpath, name)
            assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)


@given(items=entries, fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
@example(
    items=[("a", tarfile.SYMTYPE, "/etc", b"", 0o777), ("a/passwd", tarfile.REGTYPE, "", b"x", 0)],
    fmt=tarfile.PAX_FORMAT,
)
@example(
    items=[("l", tarfile.LNKTYPE, "../outside/x", b"", 0o644), ("l", tarfile.REGTYPE, "", b"y", 0)],
    fmt=tarfile.GNU_FORMAT,
)
@example(
    items=[("d", tarfile.REGTYPE, "", b"f", 0o644), ("d/x", tarfile.REGTYPE, "", b"y", 0o644)],
    fmt=tarfile.GNU_FORMAT,
)
def test_extraction_stays_inside_its_directory(
    tmp_path_factory: object, items: list[tuple[str, bytes, str, bytes, int]], fmt: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _extract_checked(Path(tmp), _tarball(items, fmt), max_size=4096, max_entries=50)


@given(items=entries, cut=st.integers(min_value=0, max_value=4000), flips=st.binary(max_size=8))
def test_truncated_and_corrupted_tarballs_fail_cleanly(
    items: list[tuple[str, bytes, str, bytes, int]], cut: int, flips: bytes
) -> None:
    import tempfile

    raw = bytearray(gzip.decompress(_tarball(items, tarfile.PAX_FORMAT)))
    for i, byte in enumerate(flips):
        if raw:
            raw[(cut + i * 97) % len(raw)] ^= byte
    archive = gzip.compress(bytes(raw[: max(0, len(raw) - cut)]))
    with tempfile.TemporaryDirectory() as tmp:
        _extract_checked(Path(tmp), archive, max_size=4096, max_entries=50)


@given(items=entries, at=st.integers(min_value=0), flips=st.binary(min_size=1, max_size=4))
def test_corrupted_gzip_fails_cleanly(
    items: list[tuple[str, bytes, str, bytes, int]], at: int, flips: bytes
) -> None:
    import tempfile

    archive = bytearray(_tarball(items, tarfile.GNU_FORMAT))
    for i, byte in enumerate(flips):
        archive[(at + i) % len(archive)] ^= byte
    with tempfile.TemporaryDirectory() as tmp:
        _extract_checked(Path(tmp), bytes(archive), max_size=4096, max_entries=50)


@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x1f\x8b")
def test_arbitrary_bytes_fail_cleanly(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _extract_checked(Path(tmp), data, max_size=4096, max_entries=50)


# --- bombs: each must be refused within its limit, without unpacking it into memory --------


def _gzip_stream(chunks: list[bytes], repeat_zero: int = 0) -> bytes:
    """gzip of the chunks followed by `repeat_zero` zero bytes, compressed as they go."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        for chunk in chunks:
            gz.write(chunk)
        block = b"\0" * (1 << 20)
        for _ in range(repeat_zero // len(block)):
            gz.write(block)
    return out.getvalue()


def _header(name: bytes, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name.decode())
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)[:512]


BOMB_SIZE = 64 * 1024 * 1024  # unpacked; about 64 KiB gzipped


def _refused_within_memory(tmp: Path, archive: bytes, limit: int = 1 << 20) -> str:
    tarball = tmp / "bomb.tar.gz"
    tarball.write_bytes(archive)
    dest = tmp / "dest"
    dest.mkdir()
    tracemalloc.start()
    try:
        try:
            safe_extract(tarball, dest, max_size=limit, max_entries=1000)
        except UnsafeArchiveError as exc:
            message = str(exc)
        else:
            message = ""
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"extraction peaked at {peak} bytes of Python memory"
    assert message, "the bomb was extracted without complaint"
    return message


def test_a_gnu_long_name_bomb_is_refused_without_reading_it_into_memory(tmp_path: Path) -> None:
    archive = _gzip_stream(
        [_header(b"././@LongLink", tarfile.GNUTYPE_LONGNAME, BOMB_SIZE)], BOMB_SIZE
    )
    assert "header record larger than" in _refused_within_memory(tmp_path, archive)


def test_a_pax_header_bomb_is_refused_without_reading_it_into_memory(tmp_path: Path) -> None:
    archive = _gzip_stream([_header(b"pax", tarfile.XHDTYPE, BOMB_SIZE)], BOMB_SIZE)
    assert "header record larger than" in _refused_within_memory(tmp_path, archive)


def test_a_skipped_entry_cannot_hide_a_gzip_bomb(tmp_path: Path) -> None:
    # A regular file named "." is not unpacked, but its bytes must still count.
    archive = _gzip_stream([_header(b".", tarfile.REGTYPE, BOMB_SIZE)], BOMB_SIZE)
    assert "more than" in _refused_within_memory(tmp_path, archive)


def test_a_file_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    archive = _gzip_stream([_header(b"big", tarfile.REGTYPE, BOMB_SIZE)], BOMB_SIZE)
    assert "more than" in _refused_within_memory(tmp_path, archive)


def test_an_archive_of_too_many_entries_is_refused(tmp_path: Path) -> None:
    headers = [_header(f"f{i}".encode(), tarfile.REGTYPE, 0) for i in range(2000)]
    assert "more than 1000 entries" in _refused_within_memory(tmp_path, _gzip_stream(headers))
