"""The one place files are committed: atomic writes, no-replace moves, folder swaps, fsync, sha256,
and where the user cache folder is.

Every writer of the engine (output pairs, saved voices, the voice library, the emotion model)
goes through these functions, so that a crash, a full disk or Ctrl-C never leaves a half-written
file under a final name.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

#: Read size of :func:`sha256_file` (1 MiB: large enough to be fast, small enough for any RAM).
_BLOCK = 1 << 20


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (a hidden temporary file, fsync, rename).

    Readers see either the old file or the whole new one, never a part. The parent folder is
    created if needed and fsynced after the rename. ``mode`` is the new file's permission
    (``mkstemp`` alone would give 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_new_synced(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a new file (``FileExistsError`` if ``path`` exists) and fsync it."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def move_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Give ``src`` the name ``dst`` atomically; ``FileExistsError`` if ``dst`` exists.

    A hard link is atomic and refuses to replace; where links are unsupported (some network or
    FAT file systems) a checked rename is used instead.
    """
    src, dst = Path(src), Path(dst)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        _LOGGER.debug("hard link unsupported (%s); using a checked rename", exc)
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(dst)) from exc
        os.replace(src, dst)
        return
    os.unlink(src)


def replace_dir(build: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Put the finished folder ``build`` in place as ``final``, replacing an older ``final``.

    ``build`` must be a sibling of ``final`` (same file system), its files already fsynced.
    Without an old folder this is one atomic rename. With one, the old folder is first renamed
    aside to a hidden ``.NAME.old-PID``, then ``build`` takes its name, then the old one is
    deleted; if the second rename fails, the old folder is put back. (POSIX has no portable
    atomic exchange of two folders; a crash between the renames leaves the old voice intact
    under the hidden name, never a half-built one under ``final``.) The parent is fsynced.
    """
    build, final = Path(build), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(build, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make renames in ``folder`` durable (not possible, and not needed, on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/personalization_engine/<name>`` (``~/.cache/...`` without XDG_CACHE_HOME),
    resolved at each call; not created."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "personalization_engine" / name
