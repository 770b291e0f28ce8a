"""State of the real-time detectors, shared by concurrent processes.

integratord runs one integration at a time, but the CLI (`realtime learn`, `status`)
and a second manager process may run beside it: every read-modify-write of the state
happens under one exclusive flock on `state.lock`, and every file is replaced
atomically (write a temporary file, rename), so a reader sees the old or the new
state, never half of one. Files are 0660 and the directory root:wazuh 2770
(install.sh), so root (the CLI) and wazuh (the integration) can both update them.
"""
from __future__ import annotations

import fcntl
import os

from ..core import jsonio as fastjson
from ..core import fileio
from ..core.fileio import atomic_write, lock_exclusive, set_aside_damaged

FILE_MODE = 0o660
DIR_MODE = 0o2770


def ensure_shared_dir(path: str) -> None:
    """Create a directory both root and wazuh can write (the umask would drop group write),
    never through a link the wazuh user could have planted in its parent."""
    fileio.makedirs(path, DIR_MODE)


class StateStore:
    """One JSON document per detector under `<dir>/state/`, read and written under a lock."""


    def __init__(self, directory: str, *, lock_timeout: float | None = None, cache: dict | None = None):
        """lock_timeout: give up (LockTimeout) after this many seconds instead of waiting
        for ever; the integration sets it, the CLI waits (`realtime learn` holds the lock
        for its whole replay). cache: a dict the caller keeps between stores (the
        real-time service): a state whose file has not changed since it was last read or
        written is taken from it instead of being read and parsed again."""
        self.directory = directory
        self.lock_timeout = lock_timeout
        self._cache = cache
        self.state_dir = os.path.join(directory, "state")
        self.lock_path = os.path.join(directory, "state.lock")
        self._fd: int | None = None
        self._loaded: dict[str, dict] = {}
        self._dirty: set[str] = set()

    def __enter__(self) -> "StateStore":
        ensure_shared_dir(self.state_dir)
        try:
            fd = fileio.open_file(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except PermissionError:
            # A lock file only root may write: a shared lock on a read-only descriptor still excludes.
            fd = fileio.open_file(self.lock_path, os.O_RDONLY)
        try:
            if self.lock_timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                lock_exclusive(fd, self.lock_path, self.lock_timeout, "the real-time state lock",
                               "so this alert was not evaluated (a 'wazuh-anomaly realtime learn' may still be running)")
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, FILE_MODE)  # the other user (root or wazuh) must open it too
        except OSError:
            pass
        self._fd = fd
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            if exc_type is None:
                self.flush()
            elif self._cache is not None:
                for name in self._loaded:      # changed in memory, not written: read again next time
                    self._cache.pop(name, None)
        finally:
            if self._fd is not None:
                os.close(self._fd)  # closing releases the lock
                self._fd = None

    def path(self, name: str) -> str:
        return os.path.join(self.state_dir, f"{name}.json")

    def get(self, name: str) -> dict:
        """The state of one detector ({} when new or damaged: it relearns, never stops).
        A damaged file is moved aside and noted (fileio.damaged) for the caller to report."""
        if name not in self._loaded:
            path = self.path(name)
            signature = None
            if self._cache is not None:
                signature = _signature(path)
                hit = self._cache.get(name)
                if hit is not None and signature is not None and hit[0] == signature:
                    self._loaded[name] = hit[1]
                    return hit[1]
            try:
                data = fastjson.loads(fileio.read_bytes(path))
            except FileNotFoundError:
                data = {}
            except ValueError:   # cut short, zeroed, not UTF-8, not JSON
                data = None
            if data is None or not well_formed(data):
                set_aside_damaged(path, f"detector {name} learns again from the next alerts")
                data = {}
            self._loaded[name] = data
            if self._cache is not None and signature is not None:
                self._cache[name] = (signature, data)
        return self._loaded[name]

    def mark(self, name: str) -> None:
        self._dirty.add(name)

    def put(self, name: str, state: dict) -> None:
        """Replace a detector's state (written at the next flush)."""
        self._loaded[name] = state
        self._dirty.add(name)

    def changed(self) -> dict[str, dict]:
        """The states changed since the last flush, by detector name."""
        return {name: self._loaded[name] for name in sorted(self._dirty)}

    def flush(self) -> None:
        for name in sorted(self._dirty):
            state = self._loaded[name]
            # Not fsynced (one alert = one process; an fsync costs as much as all the detectors):
            # after a power cut a state file may lose its last update, which is then
            # learned again, and a finding reported twice is dropped by the writer's id store.
            atomic_write(self.path(name), fastjson.dumps(state).encode(), FILE_MODE, durable=False)
            if self._cache is not None:
                signature = _signature(self.path(name))
                if signature is not None:
                    self._cache[name] = (signature, state)
        self._dirty.clear()


def _signature(path: str):
    """What changes whenever a state file is replaced (a new inode each time) or edited."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


_TIMES = ("started", "learn_end", "last_finding")
_COUNTS = ("findings", "dropped_keys", "dropped_values", "reset_keys", "values_total")


def well_formed(state) -> bool:
    """A detector state as the detectors write it, at the top level (entries are checked
    by the detector that uses them)."""
    if not isinstance(state, dict) or not isinstance(state.get("keys", {}), dict):
        return False
    for name in _TIMES:
        value = state.get(name)
        if value is not None and (type(value) not in (int, float) or value - value != 0):  # NaN, inf
            return False
    return all(type(state.get(name, 0)) is int for name in _COUNTS)


def read_states(directory: str) -> dict[str, dict]:
    """Every detector's saved state (for `realtime status`), read under the lock."""
    out: dict[str, dict] = {}
    with StateStore(directory) as store:
        try:
            names = sorted(f[:-5] for f in os.listdir(store.state_dir) if f.endswith(".json") and not f.startswith("."))
        except FileNotFoundError:
            names = []
        for name in names:
            out[name] = store.get(name)
    return out
