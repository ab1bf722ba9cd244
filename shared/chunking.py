"""Split text into overlapping chunks along paragraph and heading boundaries."""

from __future__ import annotations

import re

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


def _blocks(text: str) -> list[str]:
    """Paragraphs, with a Markdown heading always starting a new block."""
    blocks: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        current: list[str] = []
        for line in paragraph.split("\n"):
            if _HEADING.match(line) and current:
                blocks.append("\n".join(current))
                current = []
            current.append(line)
        if any(line.strip() for line in current):
            blocks.append("\n".join(current).strip())
    return blocks


def chunk_text(text: str, max_words: int = 180, overlap_words: int = 30) -> list[str]:
    """Chunks of at most `max_words` words; each repeats the last `overlap_words` of the one before."""
    if overlap_words >= max_words:
        raise ValueError("overlap_words must be smaller than max_words")
    chunks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        nonlocal current
        if current:
            chunks.append(" ".join(current))
            current = current[-overlap_words:] if overlap_words else []

    for block in _blocks(text):
        words = block.split()
        if _HEADING.match(block) and len(current) > overlap_words:
            flush()  # a section starts a fresh chunk (carrying only the overlap)
        for word in words:
            if len(current) >= max_words:
                flush()
            current.append(word)
    if len(current) > overlap_words or not chunks:
        flush()
    return [chunk for chunk in chunks if chunk.strip()]
