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


def lock_exclusive(fd: int, path: str, timeout: float, what: str,
                   consequence: str = "so nothing was written; it is tried again next time") -> None:
    """flock(LOCK_EX) on `fd`, waiting at most `timeout` seconds (LockTimeout after that,
    naming the lock file): a process stuck while holding it must not stall every writer."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    import time

    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        time.sleep(pause)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
        pause = min(pause * 2, 0.1)
    from .errors import LockTimeout

    raise LockTimeout(f"{path}: {what} was held by another process for more than {timeout:g} s, {consequence}. "
                      f"If it stays held, find the holder with 'fuser {path}' (a stuck wazuh-anomaly process) "
                      f"and stop it.")


def move_aside(path: str | os.PathLike, now: float) -> str:
    """Rename a damaged file to `<name>.corrupt-<UTC time>` (kept for a look, never read
    again) and return the new path."""
    import time

    path = os.fspath(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    os.replace(path, target)
    return target


# Damaged state files this process moved aside, one sentence each, until the caller that
# can emit health events (the wodle's runner, the integration) reports them.
damaged: list[str] = []


def set_aside_damaged(path: str | os.PathLike, consequence: str) -> None:
    """Move a state file that cannot be read aside (`move_aside`) and note it in `damaged`;
    the caller goes on as if the file were missing."""
    import time

    try:
        target = move_aside(path, time.time())
    except FileNotFoundError:
        return
    except OSError as exc:
        damaged.append(f"{os.fspath(path)}: the state file is damaged and could not be moved aside "
                       f"({exc.strerror}); {consequence}; check the disk and the directory's permissions.")
        return
    damaged.append(f"{os.fspath(path)}: the state file was damaged (cut short or not JSON) and was moved to "
                   f"{target}; {consequence}. Nothing to do unless it happens again (check the disk).")


def take_damaged() -> list[str]:
    """The sentences noted so far (and forget them)."""
    out = damaged[:]
    del damaged[:]
    return out
