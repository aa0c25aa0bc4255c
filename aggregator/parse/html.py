"""HTML fragments and feed text -> one line of clean plain text.

Built on the standard library's `html.parser`: it never raises on broken markup,
decodes every HTML5 entity, and needs no compiled dependency. nh3 (already a
dependency) sanitizes HTML *to HTML* and would still leave entities and block
structure to handle; lxml would be faster on huge pages but is a heavy C
dependency for fragments that are usually a few hundred bytes. Long articles
(content:encoded) are fed in chunks and parsing stops once enough text for a
summary has been collected, so cost is bounded by the summary length, not by the
article's.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

# Elements whose boundaries separate words: "<p>Satz.</p><p>Noch</p>" must not
# become "Satz.Noch".
BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl",
        "dt", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "img", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
# Elements whose content is not text a reader sees.
SKIP_TAGS = frozenset({"script", "style", "template", "head", "svg", "math"})
# Elements whose content HTMLParser reads as text, not markup, in some Python
# release (3.11.13 and 3.12.11 added title and textarea, later ones more): the
# shortcut for simple markup leaves them to the parser, whatever its version.
_RAW_TEXT_TAGS = frozenset(
    {"title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
    | set(HTMLParser.CDATA_CONTENT_ELEMENTS)
    | set(getattr(HTMLParser, "RCDATA_CONTENT_ELEMENTS", ()))
)

CHUNK = 8192

# Windows-1252 text declared as ISO-8859-1 (very common) decodes „ “ € – as the
# C1 control characters U+0080-U+009F, which never occur in real text.
_C1_TO_CP1252 = {
    code: bytes([code]).decode("cp1252", errors="ignore") or None for code in range(0x80, 0xA0)
}
# Invisible characters that split or glue words in copied text: soft hyphen
# (German feeds hyphenate long compounds with &shy;), zero-width space, BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\ufeff"))
# Control characters other than whitespace (NUL, BEL, ESC, DEL), lone surrogates
# and the noncharacters U+FFFE/U+FFFF: hostile or broken feeds carry them, they
# break terminals, XML output and UTF-8 encoding, and no reader ever sees them.
_CONTROLS = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F, *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
)
_TRANSLATE = {**_C1_TO_CP1252, **_INVISIBLE, **_CONTROLS}
# A dict-driven str.translate costs more than the rest of clean_text on ordinary
# text; this finds the (rare) text that needs it.
_TRANSLATED = re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(_TRANSLATE)) + "]")

# Markup that is text and tags only (no comment, CDATA, declaration or stray
# "<"), with tags of the plainest spelling: "<name>", "</name>", and start tags
# with quoted attributes ('<a href="...">', '<img src="..." alt=\'...\' />'):
# the shape of nearly every feed's summary.
_SIMPLE_TAG_PATTERN = (
    r"<(?:/([a-zA-Z][a-zA-Z0-9]*+)[ \t\n\r\f]*+"
    r"|([a-zA-Z][a-zA-Z0-9]*+)"
    r"(?:[ \t\n\r\f]++[a-zA-Z_:][-a-zA-Z0-9_:.]*+=(?:\"[^\"<>]*+\"|'[^'<>]*+'))*+"
    r"[ \t\n\r\f]*+/?)>"
)
_SIMPLE_MARKUP = re.compile(rf"(?:[^<]++|{_SIMPLE_TAG_PATTERN})*+")
_SIMPLE_TAG = re.compile(_SIMPLE_TAG_PATTERN)

_SENTENCE_END = re.compile(r"(?:(?<!\b\d)(?<!\b\d\d)\.|[!?…])(?=\s+\W*[A-ZÄÖÜ0-9]|\s*$)")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.length = 0
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_TAGS:
            self._skipping.append(tag)
        elif tag in BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
        elif tag in BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
            self.length += len(data)


def strip_controls(text: str) -> str:
    """`text` without control characters, lone surrogates and noncharacters."""
    return text.translate(_CONTROLS)


def clean_text(text: str) -> str:
    """Fold whitespace to single spaces, repair cp1252-as-latin-1, NFC-normalize."""
    line = text.strip(" ")
    if "  " in line or not line.isprintable():
        # The translation and the folding change only text with two spaces in a
        # row or an unprintable character (every character _TRANSLATE maps, and
        # every whitespace character but the space, is unprintable); for other
        # text, most titles and summaries, they come down to stripping the spaces
        # at its edges, and isprintable costs half of their two scans.
        if _TRANSLATED.search(text):
            text = text.translate(_TRANSLATE)
        line = " ".join(text.split())
    return unicodedata.normalize("NFC", line)


def html_to_text(markup: str, limit: int | None = None) -> str:
    """Visible text of an HTML fragment as one clean line.

    With `limit`, parsing may stop once well over `limit` characters of text were
    collected; the result is then longer than `limit` and the caller truncates it.
    """
    if "<" not in markup and "&" not in markup:
        return clean_text(markup)
    if limit is None or len(markup) <= 2 * limit:  # then the parser reads it all
        text = _simple_markup_text(markup)
        if text is not None:
            return text
    parser = _TextExtractor()
    try:
        start = 0
        while start < len(markup):
            # HTMLParser scans a construct left open (a tag, a comment) again from
            # its start on every feed: quadratic in a hostile megabyte-long tag.
            # Once more than a chunk of it waits, the rest goes in at once.
            size = CHUNK if len(parser.rawdata) <= CHUNK else len(markup)
            parser.feed(markup[start : start + size])
            start += size
            if limit is not None and parser.length > 2 * limit:
                break
        else:
            parser.close()
    except AssertionError:
        # _markupbase asserts on some invalid "<![...[" sections (MS Word
        # conditionals); keep the text gathered so far rather than lose the field.
        pass
    return clean_text("".join(parser.parts))


def _simple_markup_text(markup: str) -> str | None:
    """What `_TextExtractor` makes of simple markup (see _SIMPLE_MARKUP), else None.

    For such markup, fed to the parser in one piece, its events come down to a
    space for each block tag, nothing for any other tag, and the text between
    tags with its character references decoded (each run of text as a whole);
    HTMLParser took about a tenth of the parse stage to find that out.
    """
    if len(markup) > CHUNK or not _SIMPLE_MARKUP.fullmatch(markup):
        return None
    pieces = _SIMPLE_TAG.split(markup)  # text, then for each tag: end tag, start tag, text
    parts = [html.unescape(pieces[0])]
    for end_tag, start_tag, text in zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=True):
        tag = (end_tag or start_tag).lower()
        if tag in SKIP_TAGS or tag in _RAW_TEXT_TAGS:
            return None
        parts.append(" " if tag in BLOCK_TAGS else "")
        parts.append(html.unescape(text))
    return clean_text("".join(parts))


def plain_to_text(text: str) -> str:
    """A field the feed declares as plain text, cleaned like HTML-derived text.

    Entities are decoded once more because feeds often escape twice
    ("&amp;auml;"), which leaves a literal "&auml;" after XML parsing.
    """
    return clean_text(html.unescape(text) if "&" in text else text)


def truncate(text: str, limit: int) -> str:
    """`text` cut at the last word boundary before `limit`, with "…" if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    if space < limit // 2:  # one giant "word" (a URL, CJK text): cut hard
        space = limit
    return text[:space].rstrip(" ,;:-–—") + "…"


def title_from_text(text: str, limit: int = 100) -> str:
    """A headline for an untitled post: its first sentence if short, else its start.

    A full stop after a one- or two-digit number ("am 3. Oktober") is a German
    ordinal, not the end of a sentence.
    """
    match = _SENTENCE_END.search(text)
    if match is not None and match.end() <= limit:
        return text[: match.end()]
    return truncate(text, limit)
