"""User-facing errors.

A :class:`LeanseError` is a mistake the user can fix (bad audio, a typo in a recipe, a foreign
checkpoint). Its message says what was wrong and what to do; the ``leanse`` command prints it on
one line and exits with status 2 instead of showing a traceback.
"""


class LeanseError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""


class AudioError(LeanseError):
    """Audio that cannot be used: missing, unreadable, empty, silent, non-finite, wrong rate."""


class ConfigError(LeanseError):
    """A recipe or model config with an unknown key, a wrong type or an invalid value."""


class CheckpointError(LeanseError):
    """A checkpoint that is missing, corrupt, truncated or not written by leanse."""


class CorpusError(LeanseError):
    """A corpus folder whose layout is not the one the reader expects."""
