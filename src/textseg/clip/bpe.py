"""CLIP's tokenizer built offline from OpenAI's BPE merges, and the check that a tokenizer fits.

OpenAI-format CLIP files (and OpenCLIP checkpoints) hold no tokenizer. Every OpenAI and OpenCLIP ViT
uses the same one: the 48,894 byte-level BPE merges of ``bpe_simple_vocab_16e6.txt.gz``, which
OpenAI's ``clip`` package and ``open_clip_torch`` ship inside the installed package. textseg builds
a transformers ``CLIPTokenizer`` from that file, laid out as OpenAI's ``SimpleTokenizer`` lays out
its vocabulary (the 256 byte symbols, the same with ``</w>``, one token per merge, then
``<|startoftext|>`` and ``<|endoftext|>``: 49,408 ids), written once to
``$TEXTSEG_CACHE/clip-bpe/<sha256 of the file>/``. :func:`find_bpe_file` says where the file is taken
from: a path given by the user (the ``tokenizer`` setting), else ``open_clip`` or ``clip`` if installed.

:func:`check_tokenizer` refuses a tokenizer that does not fit the text tower: one whose vocabulary
size differs from the tower's token-embedding rows, or that maps ordinary words to its unknown or
end-of-text id (offline, transformers can return a 2-token tokenizer without an error, and every
prompt then encodes to the same ids).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from textseg.errors import WeightsError
from textseg.paths import cache_dir

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
#: Installed packages that ship OpenAI's merges file, searched in this order.
BPE_PACKAGES = ("open_clip", "clip")
#: OpenAI's ``SimpleTokenizer`` keeps the merges on lines ``1 .. 49152 - 256 - 2`` of the file.
NUM_MERGES = 49152 - 256 - 2
#: Prompts every CLIP vocabulary tokenises without unknown ids (what :func:`check_tokenizer` encodes).
PROBE_PROMPTS = ("a photo of a cat.", "a bad photo of the dog and a person on grass.")

HOW_TO_GIVE = (
    "Give a tokenizer with --set tokenizer=FOLDER_ID_OR_FILE: a folder or hub id holding a CLIP tokenizer, or the path "
    f"of OpenAI's {BPE_FILENAME} (pip install open_clip_torch ships it and textseg then finds it)."
)


def byte_symbols() -> list[str]:
    """OpenAI's byte -> unicode table (``bytes_to_unicode``) as its symbols in OpenAI's order:
    the printable bytes first, then the others mapped to ``chr(256 + n)``."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    rest = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def find_bpe_file(given: str | os.PathLike[str] | None = None) -> Path:
    """``given`` if it is a file, else the merges file of the first installed package in :data:`BPE_PACKAGES`."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise WeightsError(f"no BPE merges file at {path}. {HOW_TO_GIVE}")
        return path
    for package in BPE_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / BPE_FILENAME
            if candidate.is_file():
                return candidate
    raise WeightsError(
        f"an OpenAI-format CLIP holds no tokenizer, and no installed package ships {BPE_FILENAME}. "
        + HOW_TO_GIVE
    )


def read_merges(path: Path) -> list[str]:
    """The merges (``"a b"`` lines) of an OpenAI BPE file, gzipped or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise WeightsError(f"{path} is not a readable BPE merges file ({exc}). {HOW_TO_GIVE}") from exc
    merges = lines[1 : NUM_MERGES + 1]
    if len(merges) != NUM_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise WeightsError(f"{path} does not hold OpenAI's {NUM_MERGES} BPE merges. {HOW_TO_GIVE}")
    return merges


def bpe_tokenizer_folder(path: Path) -> Path:
    """A folder with ``vocab.json`` and ``merges.txt`` in transformers' CLIP layout, built from the
    merges file ``path`` into the cache (once per file content)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = cache_dir() / "clip-bpe" / digest[:16]
    if (target / "vocab.json").is_file():
        return target
    merges = read_merges(path)
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bpe-", dir=target.parent))
    try:
        (tmp / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; its folder is identical
            if not (target / "vocab.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def openai_tokenizer(given: str | os.PathLike[str] | None = None, context_length: int = 77):
    """OpenAI's CLIP tokenizer as a transformers ``CLIPTokenizer``, from the merges file (see the module)."""
    from transformers import CLIPTokenizer

    folder = bpe_tokenizer_folder(find_bpe_file(given))
    return CLIPTokenizer.from_pretrained(folder, model_max_length=context_length)


def check_tokenizer(tokenizer, vocab_rows: int, source: str) -> None:
    """Refuse a ``tokenizer`` that does not fit a text tower with ``vocab_rows`` token embeddings."""
    size = len(tokenizer)
    if size != vocab_rows:
        raise WeightsError(
            f"the tokenizer from {source!r} has {size} tokens but the CLIP text tower has {vocab_rows} "
            f"token embeddings: they do not belong together. {HOW_TO_GIVE}"
        )
    bad = {tokenizer.unk_token_id, tokenizer.eos_token_id} - {None}
    for prompt in PROBE_PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        inner = ids[1:-1]
        if len(inner) < 3 or bad.intersection(inner) or max(ids) >= vocab_rows:
            raise WeightsError(
                f"the tokenizer from {source!r} cannot tokenise {prompt!r} (ids {ids}): it is not a working "
                f"CLIP tokenizer. {HOW_TO_GIVE}"
            )
