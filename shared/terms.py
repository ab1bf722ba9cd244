"""Words for keyword search and token estimates for sizing chunks.

OpenAI's tokenizer files are downloaded at first use, so offline code estimates tokens instead; the
estimate errs high, so chunks sized by it stay inside an embedding model's input limit.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


# Scripts written without spaces between words: Chinese, Japanese kana, Korean syllables.
_UNSPACED = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+)")


def terms(text: str) -> list[str]:
    """Lowercase words without stopwords, plurals folded ("costs" -> "cost"): what keyword search matches on.

    Chinese, Japanese and Korean runs have no spaces, so a whole sentence would be one "word" that no question
    repeats: they become overlapping character pairs instead ("退货政策" -> 退货, 货政, 政策), as search
    engines' CJK analysers do.
    """
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        if not _UNSPACED.search(word):
            found.append(_singular(word))
            continue
        for piece in filter(None, _UNSPACED.split(word)):
            if not _UNSPACED.fullmatch(piece):
                found.append(_singular(piece))
            elif len(piece) == 1:
                found.append(piece)
            else:
                found.extend(piece[i : i + 2] for i in range(len(piece) - 1))
    return found


def _singular(word: str) -> str:
    # The one inflection that most often keeps a question's words from its answer's; no full stemmer.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """Tokens of `text` for a BPE tokenizer like OpenAI's: about 4 characters a token in ASCII words, one a
    character in other scripts (where BPE tokens are short), one a symbol."""
    return sum((len(piece) + 3) // 4 if piece.isascii() else len(piece) for piece in _PIECE.findall(text))
