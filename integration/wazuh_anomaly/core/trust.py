"""Model files are trusted input: refuse what someone else could have written.

`check_trusted` looks at a path (no symlinks, not writable by group or others, owned by
root or the user running wazuh-anomaly); `read_trusted` opens without following links
and checks the very file it read, so nothing can be swapped in between the check and
the read.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ModelError


def _refuse_unless_trusted(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise ModelError(f"{path}: is a symbolic link; model files must be plain files. Retrain with 'wazuh-anomaly train'.")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ModelError(f"{path}: is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                         f"models are trusted code: 'chmod go-w {path}' if you trust it, or retrain.")
    if st.st_uid not in (0, os.getuid()):
        raise ModelError(f"{path}: is owned by uid {st.st_uid}, not root or the user running wazuh-anomaly; "
                         f"refusing to load it. Retrain with 'wazuh-anomaly train'.")


def check_trusted(path: Path) -> None:
    """Refuse a model file or directory that someone else could have written."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file missing; retrain with 'wazuh-anomaly train'.") from None
    _refuse_unless_trusted(path, st)


def read_trusted(path: Path) -> bytes:
    """The bytes of a model file, checked on the open descriptor itself."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file missing; retrain with 'wazuh-anomaly train'.") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symbolic link
            raise ModelError(f"{path}: is a symbolic link; model files must be plain files. "
                             f"Retrain with 'wazuh-anomaly train'.") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: is not a plain file; retrain with 'wazuh-anomaly train'.")
        _refuse_unless_trusted(path, st)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)
