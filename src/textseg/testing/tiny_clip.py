"""A tiny random CLIP (transformers ``CLIPModel`` + a working BPE tokenizer), built fully offline.

Tests and the ``tiny`` presets load it through the same code path real weights take: it is saved
with ``save_pretrained`` to a folder, and ``clip="tiny"`` resolves to that folder in the cache. The
tokenizer is a real byte-level BPE in CLIP's format (``</w>`` word ends, start/end-of-text tokens
last), with merges learned from a small built-in word list so that common words are single tokens
and rarer ones split into several, as with the real vocabulary.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch

from textseg.paths import cache_dir

#: Bump when the tiny model's shape or tokenizer changes, so cached copies are rebuilt.
TINY_CLIP_VERSION = 1

_CORPUS = """
a an the of in on at with and or photo picture image itap bad origami large small many video game art
red green blue yellow orange purple pink white black brown gray grey cyan magenta
circle square triangle star ring cross stripe dot shape shapes disk box background next to above below
left right near far beside top bottom corner middle center texture noise pattern striped dotted plain
person people man woman child dog cat bird horse sheep cow car bus train truck boat bicycle motorbike
aeroplane airplane bottle chair table diningtable sofa plant pottedplant tvmonitor monitor television
road sidewalk building wall fence pole light sign vegetation terrain sky rider motorcycle grass tree water
floor ceiling window door bed cabinet mountain sea river sand snow rock field house street food
""".split()


def _byte_symbols() -> list[str]:
    """CLIP's reversible byte -> printable-unicode table, as a list indexed by byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE over ``words`` (each ending in ``</w>``); ties broken by the pair's text."""
    corpus: Counter[tuple[str, ...]] = Counter()
    for word in words:
        corpus[(*word[:-1], word[-1] + "</w>")] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, freq in corpus.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += freq
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, freq in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += freq
        corpus = merged
    return merges


def tiny_tokenizer_files(num_merges: int = 300) -> tuple[dict[str, int], list[str]]:
    """Vocabulary and merges of the tiny tokenizer (CLIP layout: bytes, bytes+``</w>``, merges, specials)."""
    base = _byte_symbols()
    merges = _learn_merges(_CORPUS, num_merges)
    tokens = [*base, *(s + "</w>" for s in base), *("".join(m) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, [f"{a} {b}" for a, b in merges]


def build_tiny_clip(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    image_size: int = 224,
    patch_size: int = 16,
    width: int = 64,
    layers: int = 3,
    heads: int = 4,
    text_width: int = 64,
    text_layers: int = 2,
    embed_dim: int = 32,
    context_length: int = 77,
) -> Path:
    """Create a random CLIP and its tokenizer and save both to ``out_dir`` (no network needed).

    ``context_length`` is the text tower's number of positions (CLIP's 77; short captions need
    fewer, which makes the text tower cheaper: the quickstart's CLIP uses 32).
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_tokenizer_files()
    # Written as vocab.json + merges.txt (the format every transformers version reads), then
    # re-saved by the tokenizer itself so the folder also holds its native files.
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(out, model_max_length=context_length)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=text_width,
            intermediate_size=4 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            max_position_embeddings=context_length,
            hidden_act="quick_gelu",
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=image_size,
            patch_size=patch_size,
            hidden_act="quick_gelu",
        ),
        projection_dim=embed_dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "textseg_tiny_clip.json").write_text(json.dumps({"version": TINY_CLIP_VERSION, "seed": seed}))
    return out


def ensure_tiny_clip(seed: int = 0) -> Path:
    """The cached tiny CLIP folder for ``seed``, built on first use (safe when processes race)."""
    target = cache_dir() / "tiny-clip" / f"v{TINY_CLIP_VERSION}-seed{seed}"
    if (target / "textseg_tiny_clip.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-clip-", dir=target.parent))
    try:
        build_tiny_clip(tmp, seed=seed)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; theirs is identical
            if not (target / "textseg_tiny_clip.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
