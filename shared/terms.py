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


def terms(text: str) -> list[str]:
    """Lowercase words without stopwords, plurals folded ("costs" -> "cost"): what keyword search matches on."""
    return [_singular(word) for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


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
