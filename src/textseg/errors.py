"""User-facing errors and notes: the CLI prints an error's message (which must name the file or value
and the fix) instead of a traceback; :func:`note` tells the user something on stderr without
stopping."""

import sys


class TextsegError(Exception):
    """Base class for errors caused by input the user can fix."""


class ConfigError(TextsegError, ValueError):
    """A preset, override or setting that does not fit the method's configuration."""


class WeightsError(TextsegError):
    """A checkpoint that cannot be found, verified or mapped onto the method."""


class DatasetNotFoundError(TextsegError, FileNotFoundError):
    """A benchmark's files are missing; the message says where we looked and how to get them."""


def note(message: str) -> None:
    """A message for the user on stderr (through tqdm, so it does not break a progress bar)."""
    from tqdm.auto import tqdm

    tqdm.write(f"textseg: note: {message}", file=sys.stderr)
