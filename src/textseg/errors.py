"""User-facing errors: the CLI prints their message (which must name the file or value and the fix)
instead of a traceback."""


class TextsegError(Exception):
    """Base class for errors caused by input the user can fix."""


class ConfigError(TextsegError, ValueError):
    """A preset, override or setting that does not fit the method's configuration."""


class WeightsError(TextsegError):
    """A checkpoint that cannot be found, verified or mapped onto the method."""


class DatasetNotFoundError(TextsegError, FileNotFoundError):
    """A benchmark's files are missing; the message says where we looked and how to get them."""
