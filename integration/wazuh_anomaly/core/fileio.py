"""Opening and replacing files safely: the one place every state, spool, cursor, model,
log and alerts file goes through.

Root (the wodle, the active response) reads and writes in directories the `wazuh` user
can write too (logs/alerts, logs/anomaly, var/anomaly/realtime). There, whatever the
wazuh user could have planted is refused, with one sentence naming the path:

- every directory is opened one component at a time from "/", holding descriptors; in
  a directory that someone other than root (or the user running us) can write, a
  symbolic link is never followed; a file's own name is never followed anywhere;
- the file opened must be a plain file (a FIFO would block, a device would be read);
- in such a directory, a file with several hard links that belongs to root (or to us)
  is refused (a root-only file linked in by the other user), so is a world-writable
  one, and one owned by a user who is neither root, us, nor the directory's owner or
  group.

Light on purpose (only `os`): the per-alert integration saves its state with it.
"""
from __future__ import annotations

import errno
import os
import stat

from .errors import UnsafePath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_ADVICE = "remove it (the wazuh user or another local user may have planted it) and re-run"


def _trusted(st: os.stat_result) -> bool:
    """A directory only root (or the user running us) can change."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _refuse(path: str, why: str) -> UnsafePath:
    return UnsafePath(f"{path}: refused, because it {why}; {_ADVICE}.")


def _open_component(dir_fd: int, name: str, flags: int, path: str, follow: bool, mode: int = 0,
                    dir_trusted: bool = False) -> int:
    try:
        return os.open(name, flags | (0 if follow else os.O_NOFOLLOW), mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                is_link = stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
            except OSError:
                is_link = False
            if is_link:
                raise _refuse(path, "is a symbolic link, which wazuh-anomaly never follows for its own files"
                              if dir_trusted else "is a symbolic link in a directory other users can write") from None
        exc.filename = path
        raise


def open_parent(path: str | os.PathLike) -> tuple[int, str, bool]:
    """(descriptor of the directory holding `path`, the final name, whether that
    directory is trusted); walks from "/" without following what others could plant."""
    full = os.path.abspath(os.fspath(path))
    parts = [p for p in full.split("/") if p]
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "is a directory", full)
    fd = os.open("/", _DIR_FLAGS)
    try:
        trusted = _trusted(os.fstat(fd))
        walked = ""
        for part in parts[:-1]:
            walked += "/" + part
            nxt = _open_component(fd, part, _DIR_FLAGS, walked, trusted)
            os.close(fd)
            fd = nxt
            trusted = _trusted(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1], trusted


def _check_file(path: str, st: os.stat_result, dir_st: os.stat_result, trusted: bool) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "is not a regular file")
    if trusted:
        return
    mine = (0, os.geteuid())
    if st.st_nlink > 1 and st.st_uid in mine:
        raise _refuse(path, f"has {st.st_nlink} hard links and belongs to uid {st.st_uid}, "
                            f"in a directory other users can write")
    if st.st_mode & stat.S_IWOTH:
        raise _refuse(path, f"is writable by everyone (mode {stat.S_IMODE(st.st_mode):04o})")
    if st.st_uid not in mine and st.st_uid != dir_st.st_uid and st.st_gid != dir_st.st_gid:
        raise _refuse(path, f"belongs to uid {st.st_uid}, neither root nor the owner of its directory")


def open_file(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o640) -> int:
    """A descriptor of the plain file `path` (os.open flags: O_RDONLY, O_WRONLY|O_APPEND|O_CREAT ...),
    never through a link the other users of its directories could have planted. Raises
    UnsafePath (one sentence) for those, the usual OSError (FileNotFoundError ...) otherwise."""
    shown = os.fspath(path)
    dir_fd, name, trusted = open_parent(path)
    try:
        # O_NONBLOCK: a FIFO planted in place of the file must not block the open.
        fd = _open_component(dir_fd, name, flags | os.O_CLOEXEC | os.O_NONBLOCK, shown, False, mode, trusted)
        try:
            _check_file(shown, os.fstat(fd), os.fstat(dir_fd), trusted)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(dir_fd)


def open_append(path: str | os.PathLike, mode: int = 0o640) -> int:
    """`open_file` for appending; a file it creates gets exactly `mode` (whatever the
    umask), an existing one keeps its own (install.sh may have made it group-writable)."""
    while True:
        try:
            return open_file(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            pass
        try:
            fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue  # created by another process meanwhile
        os.fchmod(fd, mode)
        return fd


def open_binary(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o640, *, buffering: int = -1):
    """`open_file` as a Python file object ("rb", or "ab" when flags hold O_APPEND)."""
    fd = open_file(path, flags, mode)
    return os.fdopen(fd, "ab" if flags & os.O_APPEND else "rb", buffering=buffering)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of a file, opened with `open_file`."""
    with open_binary(path) as fh:
        return fh.read()


def makedirs(path: str | os.PathLike, mode: int = 0o750) -> None:
    """Creates `path` and missing parents (each with exactly `mode`), never through a planted link."""
    full = os.path.abspath(os.fspath(path))
    try:
        fd = open_dir(full)
    except FileNotFoundError:
        parent = os.path.dirname(full)
        if parent != full:
            makedirs(parent, mode)
        dir_fd, name, trusted = open_parent(full)
        try:
            try:
                os.mkdir(name, mode, dir_fd=dir_fd)
            except FileExistsError:
                pass
            fd = _open_component(dir_fd, name, _DIR_FLAGS, full, trusted, 0, trusted)
            try:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, mode)  # the umask would drop bits (group write, setgid)
            except BaseException:
                os.close(fd)
                raise
        finally:
            os.close(dir_fd)
    os.close(fd)


def open_dir(path: str | os.PathLike) -> int:
    """A descriptor of the directory `path`, never through a planted link."""
    dir_fd, name, trusted = open_parent(path)
    try:
        # like every directory on the way: a link root placed in a root-only directory is followed
        return _open_component(dir_fd, name, _DIR_FLAGS, os.fspath(path), trusted, 0, trusted)
    finally:
        os.close(dir_fd)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o640, *, durable: bool = True,
                 sync_dir: bool = False) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never part
    of one. `durable`: the data is fsynced before the rename, so a power cut leaves one or
    the other; `sync_dir`: the rename is fsynced too. The file gets exactly `mode`,
    whatever the umask; the directory is reached without following planted links and the
    temporary file is always a new one (O_EXCL), never something found in its place."""
    dir_fd, name, _ = open_parent(path)
    try:
        tmp = f".{name}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
        except FileExistsError:  # left by a crash (or planted): never write through it
            os.unlink(tmp, dir_fd=dir_fd)
            fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
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
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if sync_dir:
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
