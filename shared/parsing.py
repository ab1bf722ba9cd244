"""Turning an uploaded file into text: plain text, Markdown, HTML (visible text only) and PDF.

A PDF's pages are separated by a form feed (PAGE_BREAK), so chunks know the page they start on; other
types never contain one.

Every way a file can be unusable (corrupt, encrypted, empty, mislabelled, too big) raises
UnreadableDocument with a reason a tenant can act on; the document is then marked failed with it.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

from shared.errors import InvalidInput

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
PAGE_BREAK = "\f"
SUPPORTED_TYPES = (PLAIN, MARKDOWN, HTML, PDF)
# Elements whose content is never visible text.
_INVISIBLE = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object"})
# Elements that end a line of visible text.
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "title",
        "main",
        "nav",
        "aside",
        "dd",
        "dt",
        "hr",
    }
)
_HEADINGS = {f"h{n}": "#" * n for n in range(1, 7)}


class UnreadableDocument(InvalidInput):
    """The file cannot be turned into text; the message says why."""


def extract_text(body: bytes, content_type: str, max_chars: int, max_pages: int) -> str:
    """The text of a file of a supported type, or UnreadableDocument."""
    if not body.strip():
        raise UnreadableDocument("the file is empty")
    is_pdf = body.lstrip()[:5] == b"%PDF-"
    if content_type == PDF and not is_pdf:
        raise UnreadableDocument("the file was uploaded as a PDF but is not one")
    if content_type != PDF and is_pdf:
        raise UnreadableDocument(f"the file was uploaded as {content_type} but is a PDF")
    if content_type == PDF:
        text = _pdf_text(body, max_chars, max_pages)
    elif content_type in (PLAIN, MARKDOWN, HTML):
        text = _decode(body).replace(PAGE_BREAK, "\n")  # a stray form feed in a text file is not a page
        if content_type == HTML:
            text = visible_text(text)
    else:
        raise UnreadableDocument(f"unsupported file type {content_type}; supported: {', '.join(SUPPORTED_TYPES)}")
    if len(text) > max_chars:
        raise UnreadableDocument(f"the document has more than {max_chars:,} characters of text")
    if not text.strip():
        raise UnreadableDocument(
            "the document contains no text" + (" (a scanned PDF needs OCR first)" if content_type == PDF else "")
        )
    return text


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableDocument("the file is not valid UTF-8 text") from error


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n" + (_HEADINGS.get(tag, "") + " " if tag in _HEADINGS else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(re.sub(r"\s+", " ", data))  # in HTML a line break in text is just a space


def visible_text(html: str) -> str:
    """What a reader sees: no scripts, styles or markup; headings kept as Markdown headings for chunking."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _pdf_text(body: bytes, max_chars: int, max_pages: int) -> str:
    from pypdf import PdfReader  # imported on first PDF: most functions never need it
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body), strict=False)
        if reader.is_encrypted:
            raise UnreadableDocument("the PDF is encrypted (password protected); upload it without a password")
        if len(reader.pages) > max_pages:
            raise UnreadableDocument(f"the PDF has {len(reader.pages):,} pages; at most {max_pages:,} are accepted")
        pages: list[str] = []
        size = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            size += len(text)
            if size > max_chars:  # stop early: a small file can expand into a huge text (a PDF bomb)
                raise UnreadableDocument(f"the document has more than {max_chars:,} characters of text")
            pages.append(text.strip())
    except UnreadableDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as error:
        raise UnreadableDocument(f"the PDF could not be read ({type(error).__name__}); it may be damaged") from error
    # Every page keeps its place, empty ones too, so that counting breaks gives the page number.
    return PAGE_BREAK.join(pages) if any(pages) else ""
