"""Hugging Face Hub access that fails at once when it cannot succeed.

Without network, ``from_pretrained("openai/clip-vit-base-patch16")`` retries for a minute before it
gives up, and offline a tokenizer can even come back empty without an error. Before textseg asks
the hub for anything it checks, once per process, whether the hub can be reached at all
(``HF_HUB_OFFLINE=1`` counts as no; otherwise one ``HEAD`` request to the endpoint with a short
timeout, honouring the usual proxy variables). Offline, a repository is read from the local cache
only (``local_files_only``), and one that is not cached ends in one message that says which setting
takes local files instead.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from pathlib import Path

from textseg.errors import WeightsError

#: Seconds the connectivity check waits for the hub's answer.
CHECK_TIMEOUT = 3.0


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub can be reached (False under ``HF_HUB_OFFLINE=1``); checked once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT):
            return True
    except urllib.error.HTTPError:  # the hub answered, if only with an error status
        return True
    except (OSError, ValueError):  # no route, no name resolution, timeout, bad proxy setting
        return False


def looks_like_hub_id(source: str) -> bool:
    """``org/name`` (or ``name``) that is not an existing path: what ``from_pretrained`` sends to the hub."""
    return not Path(source).expanduser().exists() and source.count("/") <= 1 and not source.startswith(".")


def hub_kwargs(repo_id: str, what: str, fix: str, filename: str = "config.json") -> dict[str, bool]:
    """Extra ``from_pretrained`` arguments for ``repo_id``: ``{}`` online, ``local_files_only`` offline
    when ``filename`` of the repository is in the local cache; offline and not cached, a
    :class:`WeightsError` that names ``what`` and ``fix`` (the settings that take local files)."""
    if hub_reachable():
        return {}
    if is_cached(repo_id, filename):
        return {"local_files_only": True}
    raise offline_error(repo_id, what, fix)


def is_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``filename`` of the hub repository ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def offline_error(repo_id: str, what: str, fix: str) -> WeightsError:
    """The one message for a hub repository that is needed, not cached, and cannot be downloaded."""
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hugging Face Hub cannot be reached"
    return WeightsError(
        f"cannot load {what} {repo_id!r}: {why} and it is not in the local cache "
        f"({os.path.expanduser(constants.HF_HUB_CACHE)}). {fix} For a first try without downloads, "
        "use --preset tiny."
    )


def hub_file(repo_id: str, filename: str, what: str, fix: str) -> Path:
    """One file of a hub repository: from the cache offline (or :func:`offline_error`), else downloaded."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, **hub_kwargs(repo_id, what, fix, filename)))
    except WeightsError:
        raise
    except Exception as exc:  # any hub error: name the repository and the way around it
        raise WeightsError(
            f"cannot download {filename} of {what} {repo_id!r} ({clause(exc)}). {fix}"
        ) from exc


def clause(exc: BaseException) -> str:
    """An exception's message as a clause to embed in a sentence: one line, no final full stop."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(" .")
