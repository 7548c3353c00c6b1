"""fileio: atomic writes, no-replace moves, folder swaps and hashes, on real files in tmp_path.

Failures are injected around the function under test (``os.replace``/``os.rename``/``os.link``
made to raise, or a write that raises part-way), never inside it: what is checked is that the
real function leaves the old content or nothing, and no temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

from personalization_engine import fileio


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_creates_the_folder_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.json"
    fileio.write_atomic(path, b"{}", mode=0o640)
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _listing(path.parent) == ["x.json"]


def test_write_atomic_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old" * 1000)
    fileio.write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and _listing(tmp_path) == ["x.bin"]


def test_a_failed_rename_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def no_space(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        fileio.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and _listing(tmp_path) == ["x.bin"]


def test_ctrl_c_during_the_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted)  # after the data is written, before the rename
    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and _listing(tmp_path) == ["x.bin"]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_raises_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            fileio.write_atomic(folder / "x", b"data")
        assert _listing(folder) == []
    finally:
        folder.chmod(0o755)


def test_write_new_synced_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "x"
    fileio.write_new_synced(path, b"first")
    with pytest.raises(FileExistsError):
        fileio.write_new_synced(path, b"second")
    assert path.read_bytes() == b"first"


@pytest.mark.parametrize(
    "hard_links",
    [
        True,  # the usual path: a hard link, atomic and refusing to replace
        False,  # file systems without hard links (FAT, some network shares): the checked rename
    ],
)
def test_move_noreplace_moves_and_refuses_an_existing_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:

        def no_links(src: object, dst: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(fileio.os, "link", no_links)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"new")
    fileio.move_noreplace(src, dst)
    assert dst.read_bytes() == b"new" and not src.exists()
    src.write_bytes(b"newer")
    with pytest.raises(FileExistsError):
        fileio.move_noreplace(src, dst)
    assert dst.read_bytes() == b"new" and src.read_bytes() == b"newer"


def _folder(path: Path, content: bytes) -> Path:
    path.mkdir()
    (path / "file").write_bytes(content)
    return path


def test_replace_dir_puts_a_new_folder_in_place(tmp_path: Path) -> None:
    fileio.replace_dir(_folder(tmp_path / ".build", b"v1"), tmp_path / "voice")
    assert (tmp_path / "voice" / "file").read_bytes() == b"v1" and _listing(tmp_path) == ["voice"]


def test_replace_dir_replaces_an_old_folder_whole(tmp_path: Path) -> None:
    _folder(tmp_path / "voice", b"old")
    (tmp_path / "voice" / "only-in-old").write_bytes(b"x")
    fileio.replace_dir(_folder(tmp_path / ".build", b"new"), tmp_path / "voice")
    assert _listing(tmp_path / "voice") == ["file"] and (tmp_path / "voice" / "file").read_bytes() == b"new"
    assert _listing(tmp_path) == ["voice"]  # the old folder moved aside is deleted


def test_replace_dir_failing_at_the_swap_puts_the_old_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path / "voice", b"old")
    build = _folder(tmp_path / ".build", b"new")
    real_rename = os.rename

    def fail_second(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src) == build:  # the old folder was moved aside; now the new one fails to move in
            raise OSError(errno.EIO, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(fileio.os, "rename", fail_second)
    with pytest.raises(OSError, match="Input/output"):
        fileio.replace_dir(build, tmp_path / "voice")
    assert (tmp_path / "voice" / "file").read_bytes() == b"old"
    assert _listing(tmp_path) == [".build", "voice"]  # the caller removes its build folder


def test_sha256_file_matches_hashlib_across_block_boundaries(tmp_path: Path) -> None:
    data = os.urandom(fileio._BLOCK + 123)  # more than one read block
    path = tmp_path / "x"
    path.write_bytes(data)
    assert fileio.sha256_file(path) == hashlib.sha256(data).hexdigest() == fileio.sha256_bytes(data)


def test_write_atomic_under_a_file_raises_and_leaves_the_file(tmp_path: Path) -> None:
    """A real failure that also happens as root: the parent 'folder' is a file."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep")
    with pytest.raises((NotADirectoryError, FileExistsError)):
        fileio.write_atomic(blocker / "x.json", b"{}")
    assert blocker.read_bytes() == b"keep" and _listing(tmp_path) == ["blocker"]
