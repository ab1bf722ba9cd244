"""Parsing uploaded files: every unusable file fails with a reason, and only visible text is kept."""

from __future__ import annotations

import pytest

from shared.parsing import HTML, MARKDOWN, PDF, PLAIN, UnreadableDocument, extract_text, visible_text
from tests.support.files import encrypted, pdf

LIMITS = {"max_chars": 200_000, "max_pages": 50}


def test_a_pdfs_pages_become_text() -> None:
    text = extract_text(pdf("The warranty lasts 24 months.", "Returns within 14 days."), PDF, **LIMITS)
    assert "24 months" in text and "14 days" in text


def test_html_keeps_only_visible_text_and_headings() -> None:
    html = """<html><head><title>t</title><style>p {color: red}</style><script>alert('x')</script></head>
    <body><h1>Refunds</h1><p>Within <b>14</b> days.</p><noscript>enable js</noscript>
    <script>var secret = 1;</script><p>Call &amp; ask.</p></body></html>"""
    text = extract_text(html.encode(), HTML, **LIMITS)
    assert "# Refunds" in text and "Within 14 days." in text and "Call & ask." in text
    assert "alert" not in text and "secret" not in text and "color" not in text and "enable js" not in text


def test_markdown_and_plain_text_are_read_as_utf8() -> None:
    persian = "# Title\n\nسلام دنیا"  # noqa: RUF001 - tenants write Persian; it must come through intact
    assert extract_text(persian.encode(), MARKDOWN, **LIMITS) == persian
    assert extract_text(b"\xef\xbb\xbfhello", PLAIN, **LIMITS) == "hello"  # a byte-order mark is dropped


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"", PLAIN, "empty"),
        (b"   \n ", MARKDOWN, "empty"),
        (b"\xff\xfe\x00garbage", PLAIN, "not valid UTF-8"),
        (b"just some text", PDF, "is not one"),
        (b"%PDF-1.7\n garbage that is not a pdf", PDF, "could not be read"),
        (b"<html><script>only()</script></html>", HTML, "no text"),
        (b"data", "application/zip", "unsupported"),
    ],
)
def test_unusable_files_fail_with_a_reason(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(UnreadableDocument, match=reason):
        extract_text(body, content_type, **LIMITS)


def test_a_pdf_uploaded_as_text_is_refused() -> None:
    with pytest.raises(UnreadableDocument, match="is a PDF"):
        extract_text(pdf("hello"), PLAIN, **LIMITS)


def test_an_encrypted_pdf_fails_with_its_reason() -> None:
    with pytest.raises(UnreadableDocument, match="encrypted"):
        extract_text(encrypted(pdf("secret plans")), PDF, **LIMITS)


def test_a_pdf_without_text_says_it_needs_ocr() -> None:
    with pytest.raises(UnreadableDocument, match="OCR"):
        extract_text(pdf(""), PDF, **LIMITS)  # a page with nothing written on it


def test_too_many_pages_or_too_much_text_is_refused() -> None:
    with pytest.raises(UnreadableDocument, match="pages"):
        extract_text(pdf(*["page"] * 5), PDF, max_chars=10_000, max_pages=3)
    with pytest.raises(UnreadableDocument, match="characters"):
        extract_text(pdf("word " * 400, "word " * 400), PDF, max_chars=1_000, max_pages=10)
    with pytest.raises(UnreadableDocument, match="characters"):
        extract_text(b"x" * 2_000, PLAIN, max_chars=1_000, max_pages=10)


def test_visible_text_collapses_whitespace() -> None:
    assert visible_text("<p>a\n\n   b</p><p>c</p>") == "a b\n\nc"
