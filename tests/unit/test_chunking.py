"""Chunking: chunks sized in estimated tokens, cut along the document's structure, overlapping within a section."""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest

from shared.chunking import TextChunk, chunk_text
from shared.terms import estimate_tokens


def words(count: int, prefix: str = "w", start: int = 0) -> list[str]:
    """Distinct words of one estimated token each plus the space: cost 3 each ("w0001" is 5 characters: 2 + 1)."""
    return [f"{prefix}{i:04d}" for i in range(start, start + count)]


def paragraph(count: int, prefix: str = "w", start: int = 0) -> str:
    return " ".join(words(count, prefix, start))


def cost(word: str) -> int:
    """What the chunker charges for a word: its estimated tokens and the space before the next one."""
    return estimate_tokens(word) + 1


def chunk_ending(text: str, max_tokens: int, overlap_tokens: int) -> list[TextChunk]:
    """chunk_text, failing (rather than hanging the run) if it has not returned within 10 seconds."""
    result: list[list[TextChunk]] = []
    worker = threading.Thread(target=lambda: result.append(chunk_text(text, max_tokens, overlap_tokens)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result, "chunk_text did not return: it loops"
    return result[0]


def chunk_words(chunk: TextChunk) -> list[str]:
    return chunk.text.split()


def overlap(previous: TextChunk, following: TextChunk) -> list[str]:
    """The longest run of words that ends `previous` and starts `following`."""
    before, after = chunk_words(previous), chunk_words(following)
    for size in range(min(len(before), len(after)), 0, -1):
        if before[-size:] == after[:size]:
            return after[:size]
    return []


def assert_nothing_is_lost(text: str, chunks: list[TextChunk]) -> None:
    """Each chunk is a run of the input's words; the runs go forward, leave no gap and reach the end."""
    source = text.split()
    covered = 0  # words of the input covered so far
    previous_start = 0
    for chunk in chunks:
        piece = chunk_words(chunk)
        # The latest place it fits (text may repeat itself): at most where the chunks so far end.
        start = next(
            (i for i in range(covered, previous_start - 1, -1) if source[i : i + len(piece)] == piece),
            None,
        )
        assert start is not None, f"chunk {chunk.text[:40]!r}... is not the continuation of the one before"
        previous_start, covered = start, max(covered, start + len(piece))
    assert covered == len(source)


class TestSizes:
    def test_no_chunk_is_over_max_tokens_and_each_reports_what_it_was_charged(self) -> None:
        text = "\n\n".join(paragraph(n, start=100 * i) for i, n in enumerate([7, 90, 3, 41, 160, 12]))
        chunks = chunk_text(text, max_tokens=60, overlap_tokens=12)
        assert len(chunks) > 5
        for chunk in chunks:
            assert chunk.tokens <= 60
            assert chunk.tokens == sum(cost(word) for word in chunk_words(chunk))
            assert estimate_tokens(chunk.text) <= chunk.tokens  # the charge errs high, never low

    def test_a_short_text_is_one_chunk(self) -> None:
        assert chunk_text("Refunds take 14 days.") == [TextChunk("Refunds take 14 days.", "", 10)]

    def test_empty_or_blank_text_gives_no_chunk(self) -> None:
        assert chunk_text("") == []
        assert chunk_text("  \n\n \t \r\n  \n") == []

    @pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(100, 50), (100, 60), (100, -1), (1, 0)])
    def test_an_overlap_of_half_the_chunk_or_more_or_below_zero_is_refused(
        self, max_tokens: int, overlap_tokens: int
    ) -> None:
        with pytest.raises(ValueError):
            chunk_text("some words", max_tokens=max_tokens, overlap_tokens=overlap_tokens)

    def test_no_overlap_at_all_is_allowed(self) -> None:
        text = paragraph(100)
        chunks = chunk_text(text, max_tokens=30, overlap_tokens=0)
        assert [w for chunk in chunks for w in chunk_words(chunk)] == text.split()


class TestOverlap:
    def test_consecutive_chunks_of_a_section_share_about_overlap_tokens_of_words(self) -> None:
        chunks = chunk_text(paragraph(200), max_tokens=60, overlap_tokens=20)
        assert len(chunks) > 3
        for previous, following in pairwise(chunks):
            shared = overlap(previous, following)
            # The most whole words that fit the overlap budget: within one word's cost (3) of it.
            assert 20 - 3 < sum(cost(word) for word in shared) <= 20

    def test_the_overlap_is_carried_across_a_paragraph_boundary_of_the_same_section(self) -> None:
        chunks = chunk_text(paragraph(15) + "\n\n" + paragraph(15, start=15), max_tokens=60, overlap_tokens=12)
        assert [len(chunk_words(c)) for c in chunks] == [15, 4 + 15]
        assert chunk_words(chunks[1])[:4] == words(4, start=11)


class TestStructure:
    def test_a_heading_starts_a_chunk_and_names_the_section_of_the_chunks_under_it(self) -> None:
        text = "\n\n".join(
            [
                paragraph(10, "intro"),
                "# Refunds",
                paragraph(50, "refund"),
                "## Shipping costs",
                paragraph(5, "ship"),
            ]
        )
        chunks = chunk_text(text, max_tokens=60, overlap_tokens=12)
        assert [c.section for c in chunks] == ["", *["Refunds"] * 5, "Shipping costs"]
        assert chunks[0].text == paragraph(10, "intro")
        assert chunks[1].text.startswith("# Refunds refund0000 ")
        assert chunks[-1].text == "## Shipping costs " + paragraph(5, "ship")
        assert_nothing_is_lost(text, chunks)

    def test_no_overlap_is_carried_into_a_new_section(self) -> None:
        text = paragraph(40, "one") + "\n\n# Two\n\n" + paragraph(5, "two")
        chunks = chunk_text(text, max_tokens=60, overlap_tokens=20)
        assert chunks[-1].text == "# Two " + paragraph(5, "two")
        assert not any(word.startswith("one") for word in chunk_words(chunks[-1]))

    def test_a_heading_line_inside_a_paragraph_still_starts_a_section(self) -> None:
        chunks = chunk_text("Intro line.\n### Warranty\nTwo years on parts.", max_tokens=60, overlap_tokens=10)
        assert [(c.text, c.section) for c in chunks] == [
            ("Intro line.", ""),
            ("### Warranty Two years on parts.", "Warranty"),
        ]

    def test_a_hash_without_a_space_is_not_a_heading(self) -> None:
        chunks = chunk_text("#hashtag and #1 are words.", max_tokens=60, overlap_tokens=10)
        assert [c.section for c in chunks] == [""]

    def test_a_chunk_at_least_half_full_ends_at_the_paragraph_that_does_not_fit(self) -> None:
        # 20 words (60 tokens) then 20 more: the second paragraph does not fit in 100, and 60 >= 50.
        text = paragraph(20, "a") + "\n\n" + paragraph(20, "b")
        chunks = chunk_text(text, max_tokens=100, overlap_tokens=10)
        assert chunks[0].text == paragraph(20, "a")
        assert chunk_words(chunks[1])[-20:] == words(20, "b")

    def test_a_chunk_under_half_full_is_filled_from_the_next_paragraph(self) -> None:
        # 10 words (30 tokens) is under half of 100: the chunk takes words of the next paragraph, up to 100.
        text = paragraph(10, "a") + "\n\n" + paragraph(30, "b")
        chunks = chunk_text(text, max_tokens=100, overlap_tokens=10)
        assert chunk_words(chunks[0]) == words(10, "a") + words(23, "b")
        assert chunks[0].tokens == 99
        assert_nothing_is_lost(text, chunks)

    def test_nothing_is_lost_and_the_order_is_kept(self) -> None:
        parts = []
        for section in range(6):
            parts.append(f"# Section {section}")
            parts.extend(paragraph(n, f"s{section}p{i}x") for i, n in enumerate([3, 25, 70, 1, 8]))
        text = "\n\n".join(parts)
        chunks = chunk_text(text, max_tokens=60, overlap_tokens=15)
        assert_nothing_is_lost(text, chunks)
        assert {c.section for c in chunks} == {f"Section {s}" for s in range(6)}

    def test_the_same_text_gives_the_same_chunks(self) -> None:
        text = "\n\n".join(["# A", paragraph(90), "b " * 40, "## B", paragraph(33)]) + "\r\n\r\nlast words"
        assert chunk_text(text, 50, 10) == chunk_text(text, 50, 10)
        assert chunk_text(text) == chunk_text(text)


class TestUnusualText:
    def test_a_single_huge_word_ends_and_none_of_it_is_lost(self) -> None:
        # Whether such a word is kept whole (today: one chunk of 25,001 tokens) or cut is not pinned here.
        huge = "x" * 100_000
        chunks = chunk_ending(f"before it {huge} after it", max_tokens=50, overlap_tokens=10)
        text = " ".join(c.text for c in chunks)
        assert text.startswith("before it") and text.endswith("after it")
        assert text.count("x") >= 100_000
        assert chunk_ending(huge, max_tokens=50, overlap_tokens=10)[0].text.startswith("xxxx")

    def test_non_ascii_scripts_are_estimated_a_token_a_character(self) -> None:
        assert estimate_tokens("refund") == 2  # ASCII: about 4 characters a token
        assert estimate_tokens("بازگشت") == 6  # Persian
        assert estimate_tokens("退货政策") == 4  # Chinese
        assert estimate_tokens("بازگشت، کالا!") == 6 + 1 + 4 + 1  # punctuation is a token of its own

    def test_persian_text_is_chunked_within_max_tokens(self) -> None:
        text = " ".join(["سیاست بازگشت کالا تا چهارده روز"] * 60)
        chunks = chunk_text(text, max_tokens=60, overlap_tokens=10)
        assert len(chunks) > 5
        assert all(estimate_tokens(c.text) <= c.tokens <= 60 for c in chunks)
        assert_nothing_is_lost(text, chunks)

    def test_chinese_text_without_spaces_is_chunked_within_max_tokens(self) -> None:
        # Chinese and Japanese write no spaces: a whole line must not become one "word"
        # (it would be one chunk of ~1,400 tokens, over max_tokens and over a local model's 256).
        text = "退货政策允许在十四天内退款。" * 100
        chunks = chunk_text(text, max_tokens=100, overlap_tokens=20)
        assert all(c.tokens <= 100 for c in chunks), [c.tokens for c in chunks]
        assert "".join(c.text for c in chunks).count("退货政策") >= 100

    def test_a_megabyte_of_text_is_chunked(self) -> None:
        text = "\n\n".join(f"# Part {p}\n\n" + " ".join(["paragraphs of ordinary words"] * 280) for p in range(128))
        assert len(text) > 1_000_000
        chunks = chunk_text(text)
        assert chunks[-1].section == "Part 127"
        assert text.endswith(chunks[-1].text[-40:])


def test_chunks_of_paged_text_carry_the_page_they_start_on() -> None:
    pages = [" ".join(f"p{n}w{i}" for i in range(300)) for n in (1, 2, 3)]
    chunks = chunk_text("\f".join(pages), max_tokens=100, overlap_tokens=10)
    assert chunks[0].page == 1 and chunks[-1].page == 3
    for before, chunk in pairwise(chunks):  # the first word after the overlap names its page
        new_words = [w for w in chunk.text.split() if w not in set(before.text.split())]
        assert new_words[0].startswith(f"p{chunk.page}w")
    assert [c.page for c in chunk_text("no pages here")] == [None]


def test_chinese_japanese_and_korean_runs_become_character_pairs_for_keyword_search() -> None:
    from shared.terms import terms

    assert terms("退货政策") == ["退货", "货政", "政策"]
    assert terms("Order TRK-88 配送") == ["order", "trk", "88", "配送"]
    assert terms("价") == ["价"]
    assert set(terms("退货政策是什么")) & set(terms("# 退货政策\n\n商品可以退货"))  # a question meets its answer
    assert terms("Costs of the مرخصی") == ["cost", "مرخصی"]  # other scripts keep their words
