"""Noun extraction from captions, with pluggable backends.

Methods that learn from the nouns of a caption (CoDe) pick a backend through :class:`NounConfig`
and call :func:`noun_extractor`; the extractor is a small picklable callable, so it runs in the
data workers.

* ``nltk`` — the official CoDe recipe: ``nltk.word_tokenize`` then ``nltk.pos_tag``, keeping the
  words tagged ``NN``, ``NNS``, ``NNP`` or ``NNPS``. Needs the optional extra
  (``pip install 'textseg[nlp]'``) and NLTK's tokenizer and tagger data, fetched once with
  :data:`NLTK_DOWNLOAD` (NLTK 3.9 reads ``punkt_tab`` and ``averaged_perceptron_tagger_eng``;
  the older names ``punkt`` / ``averaged_perceptron_tagger`` that CoDe's README downloads are not
  enough for it).
* ``lexicon`` — the words (or phrases) of a given list that occur in the caption, matched as whole
  words, case-insensitively, a plural ``s`` / ``es`` allowed. Works offline with nothing to fetch;
  useful for tests, small worlds and vocabularies taken from benchmark class names.

Both return the nouns as they are written in the caption (so that their tokens can be found in the
caption's tokens), de-duplicated case-sensitively in order of first appearance, without the
single-letter words ``a``-``z`` and ``<``, ``>`` (the official filter).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from textseg.errors import ConfigError, TextsegError

#: The Penn Treebank tags CoDe keeps (``word_type: noun``).
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
#: Words the official parser removes after tagging.
NOT_NOUNS = frozenset("abcdefghijklmnopqrstuvwxyz<>")
#: NLTK data the backend needs (NLTK >= 3.9 names), and the command that fetches it.
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng",
}
NLTK_DOWNLOAD = "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng"

NounBackend = Literal["nltk", "lexicon"]


class NounDataError(TextsegError):
    """A noun backend cannot run: NLTK or its data is missing, or a lexicon cannot be read."""


@dataclass(frozen=True)
class NounConfig:
    """Which backend extracts nouns, and the lexicon for the ``lexicon`` backend.

    ``lexicon`` entries are words or phrases; an entry ``file:<path>`` adds the lines of a text file
    (one word or phrase per line, ``#`` comments), and ``benchmark:<name>`` the class names of a
    registered benchmark (every synonym; ``background`` left out). On the command line:
    ``--set nouns.backend=lexicon --set nouns.lexicon=benchmark:ade20k,file:extra.txt,kite``.
    """

    backend: NounBackend = "nltk"
    lexicon: tuple[str, ...] = ()


class NounExtractor(Protocol):
    def __call__(self, caption: str) -> list[str]: ...


def _dedup(words: Iterable[str]) -> list[str]:
    """First occurrences, case-sensitive, without the official filter's single characters."""
    seen: dict[str, None] = {}
    for word in words:
        if word not in NOT_NOUNS:
            seen.setdefault(word, None)
    return list(seen)


class NltkNouns:
    """The official parser: NLTK tokens whose POS tag is one of ``tags``. Picklable (holds no NLTK state).

    ``distinct`` applies CoDe's filter (first occurrences only, no single letters); without it every
    tagged word is kept in order, repeats included (GroupViT's parser, which also keeps verbs).
    """

    def __init__(self, tags: Iterable[str] = NOUN_TAGS, distinct: bool = True) -> None:
        self.tags = frozenset(tags)
        self.distinct = distinct

    def check(self) -> None:
        """Raise :class:`NounDataError` naming the fix if NLTK or its data is missing."""
        nltk = self._nltk()
        missing = []
        for name, path in NLTK_RESOURCES.items():
            try:
                nltk.data.find(path)
            except LookupError:
                missing.append(name)
        if missing:
            raise NounDataError(
                f"the nltk noun backend needs NLTK data that is not installed ({', '.join(missing)}). "
                f"Fetch it once with: {NLTK_DOWNLOAD}  (or use --set nouns.backend=lexicon)"
            )

    @staticmethod
    def _nltk():
        try:
            import nltk
        except ImportError as exc:
            raise NounDataError(
                "the nltk noun backend needs NLTK: pip install 'textseg[nlp]', then fetch its data "
                f"once with: {NLTK_DOWNLOAD}  (or use --set nouns.backend=lexicon)"
            ) from exc
        return nltk

    def __call__(self, caption: str) -> list[str]:
        nltk = self._nltk()
        try:
            tagged = nltk.pos_tag(nltk.word_tokenize(caption))
        except LookupError as exc:
            raise NounDataError(f"NLTK data is missing ({exc}). Fetch it once with: {NLTK_DOWNLOAD}") from exc
        words = [word for word, tag in tagged if tag in self.tags]
        return _dedup(words) if self.distinct else words


class LexiconNouns:
    """Words or phrases of a fixed list found in the caption (whole words, any case, plural allowed)."""

    def __init__(self, words: Sequence[str]) -> None:
        entries = sorted({w.strip().lower() for w in words if w.strip()}, key=lambda w: (-len(w), w))
        if not entries:
            raise ConfigError(
                "the lexicon noun backend needs words: set nouns.lexicon (words, file:<path> or "
                "benchmark:<name>)"
            )
        self.words = tuple(entries)
        # longest first, so "traffic light" wins over "light" where both match
        alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in entries)
        self._pattern = re.compile(rf"\b(?:{alternatives})(?:e?s)?\b", re.IGNORECASE)

    def __getstate__(self) -> dict:
        return {"words": self.words}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["words"])

    def __call__(self, caption: str) -> list[str]:
        return _dedup(match.group(0) for match in self._pattern.finditer(caption))


def resolve_lexicon(entries: Iterable[str]) -> tuple[str, ...]:
    """Expand ``file:`` and ``benchmark:`` entries (see :class:`NounConfig`) into words."""
    words: list[str] = []
    for entry in entries:
        if entry.startswith("file:"):
            path = Path(entry.removeprefix("file:")).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise NounDataError(f"cannot read the noun lexicon {path}: {exc}") from exc
            words += [line.split("#")[0].strip() for line in lines]
        elif entry.startswith("benchmark:"):
            from textseg.registry import BENCHMARKS

            spec = BENCHMARKS.get(entry.removeprefix("benchmark:"))
            for name in spec.classes[1:] if spec.background else spec.classes:
                words += name.split(", ")
        else:
            words.append(entry)
    return tuple(w.strip() for w in words if w.strip())


def noun_extractor(
    config: NounConfig, tags: Iterable[str] = NOUN_TAGS, distinct: bool = True
) -> NltkNouns | LexiconNouns:
    """The extractor ``config`` names, checked (NLTK data present, lexicon not empty).

    ``tags`` and ``distinct`` configure the NLTK backend (see :class:`NltkNouns`); the lexicon
    backend always returns distinct words.
    """
    if config.backend == "nltk":
        extractor = NltkNouns(tags, distinct)
        extractor.check()
        return extractor
    if config.backend == "lexicon":
        return LexiconNouns(resolve_lexicon(config.lexicon))
    raise ConfigError(f"unknown noun backend {config.backend!r}; use nltk or lexicon")
