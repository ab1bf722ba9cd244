"""Split a document's text into chunks sized in tokens, along its structure.

- A heading (Markdown `#`, or a heading line the parsers kept) starts a new chunk, and every chunk knows the
  heading of its section, which is embedded with it.
- A chunk ends at a paragraph boundary when the next paragraph would not fit and the chunk is at least half
  full; otherwise inside a paragraph, between words.
- Consecutive chunks of one section overlap by about `overlap_tokens`, so an answer that straddles a
  boundary is whole in one of them. A new section starts clean.

A PDF's text has a form feed between pages (shared.parsing.PAGE_BREAK): each chunk then carries the page its
first new word is on (after the overlap carried from the chunk before), which citations show.

Tokens are estimated (shared.terms.estimate_tokens), erring high, so chunks stay inside model limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.parsing import PAGE_BREAK
from shared.terms import estimate_tokens

DEFAULT_MAX_TOKENS = 220  # small enough for the local embedder's 256 word pieces, big enough to hold an answer
DEFAULT_OVERLAP_TOKENS = 40

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# After the full-width stops, commas and marks of scripts that put no spaces between words (CJK).
_AFTER_CJK_PUNCTUATION = re.compile(r"(?<=[\u3002\uff01\uff1f\uff1b\uff0c\u3001\uff0e])")
MAX_WORD_TOKENS = 24
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")


@dataclass(frozen=True)
class TextChunk:
    text: str
    section: str  # the heading the chunk falls under ("" before the first heading)
    tokens: int
    page: int | None = None  # the page (from 1) the chunk's new text starts on, for text with page breaks


@dataclass(frozen=True)
class _Block:
    words: tuple[str, ...]
    heading: str | None  # set when the block is a heading line
    page: int | None = None


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, with any "word" too long to place (Chinese or Japanese text, which has no
    spaces; a URL; a run of digits) cut after its sentence punctuation, then into pieces of a few tokens."""
    words: list[str] = []
    for word in text.split():
        if estimate_tokens(word) <= MAX_WORD_TOKENS:
            words.append(word)
            continue
        for part in filter(None, _AFTER_CJK_PUNCTUATION.split(word)):
            step = MAX_WORD_TOKENS * 4 if part.isascii() else MAX_WORD_TOKENS
            words.extend(part[start : start + step] for start in range(0, len(part), step))
    return tuple(words)


def _blocks(text: str) -> list[_Block]:
    """Paragraphs, with each heading line a block of its own; a paragraph never crosses a page break."""
    blocks: list[_Block] = []
    pages = text.replace("\r\n", "\n").split(PAGE_BREAK)
    for number, page_text in enumerate(pages, 1):
        page = number if len(pages) > 1 else None
        for paragraph in _PARAGRAPH_BREAK.split(page_text):
            body: list[str] = []
            for line in paragraph.split("\n"):
                heading = _HEADING.match(line)
                if heading:
                    if body:
                        blocks.append(_Block(_words(" ".join(body)), None, page))
                        body = []
                    blocks.append(_Block(_words(line), heading.group(1).strip(), page))
                elif line.strip():
                    body.append(line)
            if body:
                blocks.append(_Block(_words(" ".join(body)), None, page))
    return blocks


class _Builder:
    def __init__(self, max_tokens: int, overlap_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.chunks: list[TextChunk] = []
        self.words: list[str] = []
        self.costs: list[int] = []
        self.pages: list[int | None] = []  # each word's page
        self.page: int | None = None  # the page of the words being added
        self.tokens = 0
        self.fresh = 0  # words added since the last flush (beyond the carried-over overlap)
        self.section = ""

    def add(self, word: str) -> None:
        cost = estimate_tokens(word) + 1  # +1: the space a tokenizer usually folds into the next word
        if self.fresh and self.tokens + cost > self.max_tokens:
            self.flush(keep_overlap=True)
        self.words.append(word)
        self.costs.append(cost)
        self.pages.append(self.page)
        self.tokens += cost
        self.fresh += 1

    def flush(self, keep_overlap: bool) -> None:
        if self.fresh:
            self.chunks.append(TextChunk(" ".join(self.words), self.section, self.tokens, self.pages[-self.fresh]))
        if keep_overlap and self.fresh:
            kept, budget = 0, self.overlap_tokens
            while kept < len(self.costs) - 1 and budget - self.costs[-1 - kept] >= 0:
                budget -= self.costs[-1 - kept]
                kept += 1
            start = len(self.words) - kept
            self.words, self.costs, self.pages = self.words[start:], self.costs[start:], self.pages[start:]
        else:
            self.words, self.costs, self.pages = [], [], []
        self.tokens = sum(self.costs)
        self.fresh = 0


def chunk_text(
    text: str, max_tokens: int = DEFAULT_MAX_TOKENS, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
) -> list[TextChunk]:
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError("overlap_tokens must be under half of max_tokens")
    builder = _Builder(max_tokens, overlap_tokens)
    for block in _blocks(text):
        builder.page = block.page
        if block.heading is not None:
            builder.flush(keep_overlap=False)  # a section starts a fresh chunk
            builder.section = block.heading
        else:
            block_tokens = sum(estimate_tokens(word) + 1 for word in block.words)
            if builder.fresh and builder.tokens + block_tokens > max_tokens and builder.tokens >= max_tokens // 2:
                builder.flush(keep_overlap=True)  # end at the paragraph boundary rather than mid-paragraph
        for word in block.words:
            builder.add(word)
    builder.flush(keep_overlap=False)
    return builder.chunks
