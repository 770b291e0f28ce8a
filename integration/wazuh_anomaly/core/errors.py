"""Errors a user can cause. Each carries one sentence that names the file, field, host
or path at fault and says what to do; the CLI prints it without a traceback."""


class WazuhAnomalyError(Exception):
    """Base class of every user-facing error."""


class ConfigError(WazuhAnomalyError):
    """A configuration or scenario file is invalid: one sentence per problem, every
    problem of a file at once (one sentence a line), also as the list `problems`."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class ModelError(WazuhAnomalyError):
    """A model file is missing, unsafe or does not fit its scenario."""


class LockBusy(WazuhAnomalyError):
    """Another run holds the lock."""


class UnsafePath(WazuhAnomalyError):
    """A path in a directory other users can write is a symbolic link, a hard link to
    someone else's file, or not a plain file: root does not follow what they could plant."""


class LockTimeout(WazuhAnomalyError):
    """A lock shared with other processes was not free within its time limit."""
