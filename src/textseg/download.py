"""Resumable, checksummed downloads with a progress bar (datasets and released weights).

A download goes to ``<dest>.part``; an interrupted one resumes from where it stopped (HTTP Range).
The file is renamed to ``dest`` only after its checksum matches, so ``dest`` existing means verified.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from textseg.errors import TextsegError
from textseg.io import file_digest

CHUNK = 1 << 20


class DownloadError(TextsegError):
    """A download failed or its checksum did not match."""


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    desc: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is there; return ``dest``."""
    dest = Path(dest)
    expected = [(algo, value.lower()) for algo, value in (("sha256", sha256), ("md5", md5)) if value]
    if dest.exists():
        if all(file_digest(dest, algo) == value for algo, value in expected):
            return dest
        raise DownloadError(
            f"{dest} exists but does not match its checksum; delete it and run the command again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is already complete
            response = None
        else:
            raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"cannot download {url}: {exc}. Check the network, or fetch it by hand to {dest}"
        ) from exc
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with (
                open(part, "ab" if resumed else "wb") as handle,
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=desc or dest.name) as bar,
            ):
                try:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        handle.write(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:
                    raise _interrupted(url, part, total) from exc
            # http.client returns an empty chunk, not an error, when the server closes early.
            if total is not None and part.stat().st_size < total:
                raise _interrupted(url, part, total)
    for algo, value in expected:
        actual = file_digest(part, algo)
        if actual != value:
            part.unlink()
            raise DownloadError(f"{url}: {algo} is {actual}, expected {value}; the partial file was removed")
    os.replace(part, dest)
    return dest


def _interrupted(url: str, part: Path, total: int | None) -> DownloadError:
    size = part.stat().st_size if part.exists() else 0
    return DownloadError(
        f"download of {url} was interrupted after {size} of {total or '?'} bytes; the partial file "
        f"{part} is kept: run the same command again to resume"
    )
