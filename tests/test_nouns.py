"""Noun extraction: the lexicon backend on real captions, and the NLTK backend's filters and errors
(with a stand-in ``nltk`` module: NLTK is an optional extra and its data is not installed in CI)."""

from __future__ import annotations

import pickle
import sys
import types

import pytest

from textseg.errors import ConfigError
from textseg.text.nouns import (
    NLTK_DOWNLOAD,
    LexiconNouns,
    NltkNouns,
    NounConfig,
    NounDataError,
    noun_extractor,
    resolve_lexicon,
)


def test_lexicon_matches_whole_words_any_case_and_plurals_as_written() -> None:
    nouns = LexiconNouns(["dog", "cat", "glass", "traffic light", "light", "car"])
    assert nouns("Two Dogs chase a cat past the traffic  light") == ["Dogs", "cat", "traffic  light"]
    assert nouns("glasses on a cart, a scatter of cars") == ["glasses", "cars"]  # not "cat" in "scatter"
    # case-sensitive de-duplication in order of first appearance, as the official set() of words
    assert nouns("a dog, a Dog and a dog") == ["dog", "Dog"]
    assert nouns("nothing here") == []


def test_lexicon_drops_single_letters_like_the_official_filter() -> None:
    assert LexiconNouns(["a", "x", "<", "box"])("a box marked x") == ["box"]


def test_lexicon_pickles_and_needs_words() -> None:
    nouns = LexiconNouns(["dog", "cat"])
    again = pickle.loads(pickle.dumps(nouns))
    assert again("a cat and a dog") == ["cat", "dog"]
    with pytest.raises(ConfigError, match=r"nouns\.lexicon"):
        LexiconNouns(["  "])


def test_lexicon_entries_from_files_and_benchmarks(tmp_path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("kite  # a comment\n\nsurfboard\n")
    resolved = resolve_lexicon(["dog", f"file:{words}", "benchmark:voc21"])
    assert resolved[:3] == ("dog", "kite", "surfboard")
    assert "aeroplane" in resolved and "tvmonitor" in resolved and "background" not in resolved
    with pytest.raises(NounDataError, match=r"missing\.txt"):
        resolve_lexicon([f"file:{tmp_path / 'missing.txt'}"])
    extractor = noun_extractor(NounConfig("lexicon", ("benchmark:voc21",)))
    assert extractor("a cat on a sofa near a pottedplant") == ["cat", "sofa", "pottedplant"]


@pytest.fixture
def fake_nltk(monkeypatch: pytest.MonkeyPatch):
    """A stand-in ``nltk`` with whitespace tokens and a tag table; ``missing`` lists absent data."""
    module = types.ModuleType("nltk")
    tags = {"dog": "NN", "dogs": "NNS", "Paris": "NNP", "Alps": "NNPS", "running": "VBG", "a": "DT"}
    module.missing = set()

    def find(path: str) -> str:
        if any(name in path for name in module.missing):
            raise LookupError(path)
        return path

    module.data = types.SimpleNamespace(find=find)
    module.word_tokenize = lambda text: text.split()
    module.pos_tag = lambda words: [(w, tags.get(w, "NN" if len(w) == 1 else "JJ")) for w in words]
    monkeypatch.setitem(sys.modules, "nltk", module)
    return module


def test_nltk_backend_keeps_noun_tags_and_applies_the_official_filter(fake_nltk) -> None:
    nouns = noun_extractor(NounConfig("nltk"))
    # "x" is tagged NN by the stand-in and removed like the official single-letter filter
    assert nouns("a dog running in Paris near the Alps x dogs dog") == ["dog", "Paris", "Alps", "dogs"]
    assert pickle.loads(pickle.dumps(nouns))("dogs") == ["dogs"]


def test_nltk_backend_with_other_tags_and_every_occurrence(fake_nltk) -> None:
    """GroupViT's parser: nouns and verbs, repeats and single letters kept, in caption order."""
    words = noun_extractor(NounConfig("nltk"), tags={"NN", "NNS", "VBG"}, distinct=False)
    assert words("a dog running in Paris x dogs dog") == ["dog", "running", "x", "dogs", "dog"]
    assert pickle.loads(pickle.dumps(words))("running dog") == ["running", "dog"]


def test_nltk_backend_names_the_download_command_when_data_is_missing(fake_nltk) -> None:
    fake_nltk.missing = {"averaged_perceptron_tagger_eng"}
    with pytest.raises(NounDataError) as error:
        noun_extractor(NounConfig("nltk"))
    assert "not installed (averaged_perceptron_tagger_eng)" in str(error.value)
    assert NLTK_DOWNLOAD in str(error.value)
    assert NLTK_DOWNLOAD == "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng"


def test_nltk_backend_without_nltk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk raises ImportError
    with pytest.raises(NounDataError, match=r"pip install 'textseg\[nlp\]'"):
        NltkNouns().check()
