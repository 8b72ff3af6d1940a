"""Atomic file writes: every file the project writes appears whole or not at all (temp file + rename), with the
permissions any new file gets (0666 less the umask: 0644 under the usual 022)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; when the block succeeds it replaces `path` in one rename.

    A crash, a full disk or Ctrl-C inside the block leaves the old file (or no file) and no partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, NEW_FILE_MODE & ~umask())  # mkstemp makes 0600, private whatever the umask says
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


NEW_FILE_MODE = 0o666


def umask() -> int:
    """The process's umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_normal_modes(folder: str | os.PathLike) -> None:
    """Every file under `folder` gets a new file's mode (writers such as safetensors create 0600 files)."""
    mode = NEW_FILE_MODE & ~umask()
    for item in Path(folder).rglob("*"):
        if item.is_file() and not item.is_symlink():
            os.chmod(item, mode)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_figure(figure, path: str | os.PathLike, **kwargs) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)


@contextlib.contextmanager
def atomic_folder_files(folder: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty staging folder inside `folder`; its files are moved into `folder` one rename each when the
    block succeeds (for writers such as `save_pretrained` that take a folder, not a file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
    try:
        yield staging
        give_normal_modes(staging)
        for item in sorted(staging.rglob("*")):
            if item.is_file():
                target = folder / item.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES}
_NOT_WRITABLE = {errno.EROFS, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def write_error(err: OSError) -> str | None:
    """One line for an OSError a user can fix (no space, no permission, a read-only or misplaced folder)."""
    where = err.filename or "the output folder"
    if err.errno in _NO_SPACE:
        return f"cannot write {where} ({err.strerror}): free disk space, or choose another output folder"
    if err.errno in _NO_ACCESS:
        return f"cannot access {where} ({err.strerror}): fix its permissions, or choose another folder"
    if err.errno in _NOT_WRITABLE:
        return f"cannot write {where} ({err.strerror}): choose another output folder"
    return None
