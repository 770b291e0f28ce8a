"""Replacing a file atomically: the one writer every state, spool, cursor and model
file goes through.

Light on purpose (only `os`): the per-alert integration saves its state with it.
"""
from __future__ import annotations

import os


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o640, *, durable: bool = True,
                 sync_dir: bool = False) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never part
    of one. `durable`: the data is fsynced before the rename, so a power cut leaves one or
    the other; `sync_dir`: the rename is fsynced too. The file gets exactly `mode`,
    whatever the umask; a symlink in place of the temporary file is refused."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
