"""Errors that reach the user as one clear line.

Every error raised for bad input (a file, a value in a config, missing weights) is a
:class:`NeurocorrError`; the entry points print its message alone, without a traceback.
"""


class NeurocorrError(Exception):
    """Base class of the errors whose message alone tells the user what to fix."""


class DataError(NeurocorrError):
    """Unreadable, missing or malformed data; the message names the file, row or task."""


class ConfigError(NeurocorrError):
    """A config value that cannot work; the message names the key and the value."""


class WeightsError(NeurocorrError):
    """Pretrained weights that cannot be downloaded or loaded; the message names the file."""


class TrialPruned(NeurocorrError):
    """A sweep's pruner stopped this trial early (not a failure of the trial's config or data)."""
