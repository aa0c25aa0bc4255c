"""The fast path for well-formed feeds: lxml builds the tree, feedparser's rules read it.

feedparser spends nearly all of a parse in Python callbacks per element (about
2,000 entries/s on this machine for ordinary news feeds). `read` takes only the
documents it is sure of: well-formed XML with an RSS 0.9x/2.0, RSS 1.0 (RDF) or
Atom 1.0 root, no DOCTYPE, an encoding feedparser would accept without
complaint, and only elements whose feedparser handlers are reproduced here. For
those it returns the same feed and entry fields feedparser would (the keys
feeds.py reads), so both paths share one conversion and `build_entries`; for
anything else it returns None and the caller runs feedparser, whose robustness
on broken input stays the product's.

Fidelity comes from replaying feedparser's own state machine for the supported
elements (document order, depth rules for repeated fields, `title_depth`,
`hasContent`, `guidislink`, the author bookkeeping) and from calling feedparser's
own helpers where they are plain functions (encoding detection, date parsing with
dates.py's handler registered, URL joining, the HTML sniffing of RSS text, the
author-detail rules). An element
for which feedparser has a handler that is not reproduced here declines the
document, so a new feedparser handler can only make this path decline more.
tests/test_parse_fast.py checks field-for-field equality on every fixture.

Safety: lxml never resolves entities, loads a DTD or touches the network, and
refuses huge text nodes and deep trees (`huge_tree=False`); a DOCTYPE declines.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri
from feedparser.util import FeedParserDict
from lxml import etree  # type: ignore[import-untyped]  # no stubs in this environment

from aggregator.parse.dates import parse_date
from aggregator.parse.urls import joins_to_itself

_MIXIN: Any = _FeedParserMixin
# Namespace URI (lower case) -> feedparser's prefix for it ('' for RSS and Atom).
_PREFIXES: dict[str, str] = {uri.lower(): prefix for uri, prefix in _MIXIN.namespaces.items()}
_CANONICAL = frozenset(prefix.lower() for prefix in _PREFIXES.values() if prefix)
# Every element name feedparser treats specially; those not handled below decline.
_FEEDPARSER_HANDLERS = frozenset(
    name.split("_", 2)[2].lower()
    for name in dir(_MIXIN)
    if name.startswith(("_start_", "_end_")) and name.count("_") >= 2
)
_KEYMAP: dict[str, str] = {
    key: value[0] if isinstance(value, list) else value
    for key, value in FeedParserDict.keymap.items()
}
_RELATIVE = frozenset(_MIXIN.can_be_relative_uri)
_HTML_TYPES = frozenset(_MIXIN.html_types)
_map_content_type: Callable[[str], str] = _MIXIN.map_content_type
_looks_like_html: Callable[[str], bool] = _MIXIN.looks_like_html

ATOM = "http://www.w3.org/2005/atom"
RSS10 = "http://purl.org/rss/1.0/"
RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
XLINK = "http://www.w3.org/1999/xlink"
USERLAND = "http://backend.userland.com/rss"
# Keys feeds.py reads from a feed or entry: no unmodelled element may write them.
READ_KEYS = frozenset(
    {
        "id", "link", "title", "title_detail", "summary", "summary_detail", "content",
        "published_parsed", "updated_parsed", "author", "author_detail", "authors",
        "language", "ttl", "sy_updateperiod", "sy_updatefrequency",
    }
)  # fmt: skip
# Unknown to feedparser, stored under their own name, read for the polling hint.
_HINTS = frozenset({"ttl", "sy_updateperiod", "sy_updatefrequency"})
_AMP_REFERENCE = re.compile("&([A-Za-z0-9_]+);")
_PROLOG_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<\w")
_C1_CONTROLS = re.compile("[\x80-\x9f]")
_UTF8_SEQUENCE_START = re.compile("[\xc2-\xf4][\x80-\xbf]")
# A bytes.translate table: bytes 0x80-0xBF to 0x80, every other byte to 0.
_C1_OR_CONTINUATION = bytes(0x80 if 0x80 <= code <= 0xBF else 0 for code in range(256))
_NO_ATTRIBUTES: dict[str, str] = {}


class Declined(Exception):
    """The fast path does not take this document; feedparser reads it."""


@dataclass
class Document:
    """A feed as feedparser's result shapes it: the part feeds.py reads."""

    feed: Mapping[str, Any]
    entries: Sequence[Mapping[str, Any]]
    version: str
    problem: object = None


def read(content: bytes, headers: Mapping[str, str]) -> Document | None:
    """The document's feed and entries, or None when feedparser must read it."""
    try:
        return _read(content, headers)
    except Exception:  # Declined, lxml's syntax errors, anything unforeseen
        return None


def _read(content: bytes, headers: Mapping[str, str]) -> Document | None:
    meta: dict[str, Any] = {}
    # feedparser's own encoding decision: same text, and a warning declines.
    data = convert_to_utf8(dict(headers), content, meta)
    if meta.get("bozo"):
        return None
    first = _FIRST_ELEMENT.search(data)
    if first is None or _PROLOG_DECLARATION.search(data, 0, first.start()):
        return None
    parser = etree.XMLPullParser(
        events=("start-ns",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    parser.feed(data)
    root = parser.close()
    declarations = [event for _, event in parser.read_events()]
    walker = _Walker(_Namespaces(declarations), headers.get("content-location", ""))
    walker.walk(root, declarations[: len(root.nsmap)])
    if not walker.entries:
        return None  # feedparser tells an empty feed from a document that is none
    return Document(walker.feed, walker.entries, walker.version)


class _Namespaces:
    """Element names as feedparser's strict parser spells them ("dc_creator", "title").

    feedparser keeps namespace state in document order; the documents taken here
    are those where order cannot matter: no prefix bound to two URIs, each unknown
    URI under one prefix, no element under one of feedparser's own prefixes that
    the document binds to another namespace.
    """

    def __init__(self, declarations: list[tuple[str, str]]) -> None:
        bound: dict[str, str] = {}
        unknown: dict[str, set[str]] = {}
        # feedparser's own prefixes that the document binds to another namespace:
        # feedparser would then read elements of that prefix as the other one's.
        self._shadowed: set[str] = set()
        for prefix, uri in declarations:
            lower = uri.lower()
            if lower == XLINK or (prefix and bound.setdefault(prefix.lower(), uri) != uri):
                raise Declined("namespace prefix bound twice, or xlink")
            known = _PREFIXES.get(_userland(lower))
            if known is None:
                unknown.setdefault(uri, set()).add(prefix)
            elif prefix in _CANONICAL and prefix != known:
                self._shadowed.add(prefix)
        if "rdf" in self._shadowed:
            raise Declined("prefix 'rdf' names another namespace")
        self._unknown: dict[str, str] = {}
        for uri, prefixes in unknown.items():
            if len(prefixes) > 1:
                raise Declined("namespace declared under several prefixes")
            self._unknown[uri] = prefixes.pop()
        self._names: dict[str, tuple[str, bool]] = {}

    def name(self, tag: str) -> tuple[str, bool]:
        """feedparser's handler name for an element, and whether it has a prefix."""
        name = self._names.get(tag)
        if name is None:
            name = self._names[tag] = self._spell(tag)
        return name

    def _spell(self, tag: str) -> tuple[str, bool]:
        uri, _, local = tag[1:].partition("}") if tag[0] == "{" else ("", "", tag)
        local = local.lower()
        if local in ("math", "svg") and uri:
            raise Declined("MathML or SVG element")
        prefix = _PREFIXES.get(_userland(uri.lower()))
        if prefix is None:
            prefix = self._unknown.get(uri, "")
        if prefix.lower() in self._shadowed:
            raise Declined(f"prefix {prefix!r} names another namespace")
        return (f"{prefix.lower()}_{local}", True) if prefix else (local, False)


def _userland(uri: str) -> str:
    return USERLAND if "backend.userland.com/rss" in uri else uri


def _attributes(element: Any) -> dict[str, str]:
    """Attributes as feedparser's strict parser reports them: lower-case names,
    known namespaces under their prefix and every one also under its local name,
    `rel` and `type` values in lower case."""
    attributes: dict[str, str] = {}
    local_names: set[str] = set()
    for key, value in element.attrib.items():
        local = key.lower()
        if key[0] == "{":
            uri, _, local = key[1:].partition("}")
            local = local.lower()
            prefix = _PREFIXES.get(uri.lower(), "")
            if prefix:
                attributes[f"{prefix}:{local}"] = value
        if local in local_names:
            raise Declined("two attributes with one local name")
        local_names.add(local)
        attributes[local] = value.lower() if local in ("rel", "type") else value
    return attributes


def _join(base: str, uri: str) -> str:
    """feedparser's `_urljoin`, which leaves a plain absolute URL as it is (see
    urls.py), without its regular expression and urllib's parsing for one."""
    return uri if joins_to_itself(uri, base) else _urljoin(base, uri)


@functools.lru_cache(maxsize=256)
def _rebase(base: str, declared: str | None) -> str:
    """feedparser's xml:base rule for one element."""
    return make_safe_absolute_uri(base, declared or base) or base


def _unescape_link(link: str) -> str:
    """feedparser's "&name;" -> "&name" in links (most have no "&": no regex run)."""
    return _AMP_REFERENCE.sub(r"&\g<1>", link) if "&" in link else link


def _fix_text(output: str) -> str:
    """feedparser's last touches on every text value: text that is UTF-8 read as
    Latin-1 is repaired, then Windows-1252 code points are mapped. (Both leave
    text without a character of U+0080-U+00BF alone, most text and all ASCII, and
    a dict-driven translate is slow: it runs only on C1 text. The repair is tried
    only where a UTF-8 lead byte is followed by a continuation byte, without which
    no non-ASCII text is UTF-8: it fails, by an exception, on nearly all text,
    "Göttingen" too.)"""
    if output.isascii() or _no_c1_or_continuation(output):
        return output
    if _UTF8_SEQUENCE_START.search(output):
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_cp1252) if _C1_CONTROLS.search(output) else output


def _no_c1_or_continuation(text: str) -> bool:
    """Whether `text` lacks every character of U+0080-U+00BF, which both of
    _fix_text's touches need (a C1 control; a continuation byte read as Latin-1).

    The same answer as a regular expression's search, in an eighth of its time:
    the Latin-1 characters of `text` (the others cannot be either) as bytes,
    marked by a translation table, and then tested for ASCII.
    """
    return text.encode("iso-8859-1", "ignore").translate(_C1_OR_CONTINUATION).isascii()


@dataclass(slots=True)
class _Node:
    """One element while it is open: what feedparser's stacks hold for it."""

    element: Any
    name: str
    depth: int
    base: str
    lang: str | None
    attributes: dict[str, str]
    pushed: bool = True
    expecting: bool = True

    def text(self) -> str:
        """The element's own text, for elements that may not have children."""
        if len(self.element):
            raise Declined(f"<{self.name}> has child elements")
        return self.element.text or ""

    def frame_text(self, names: _Namespaces, parts: frozenset[str]) -> str:
        """What a container's frame collects: its text around the children `parts`,
        plus that of unknown children with attributes (feedparser pushes no frame
        for those)."""
        pieces = [self.element.text or ""]
        for child in self.element:
            name, _ = names.name(child.tag)
            if name not in parts:
                if name in _FEEDPARSER_HANDLERS or len(child):
                    raise Declined(f"<{name}> inside <{self.name}>")
                if child.attrib:
                    pieces.append(child.text or "")
            pieces.append(child.tail or "")
        return "".join(pieces)


Handler = Callable[["_Walker", _Node], None]


@dataclass
class _Walker:
    """feedparser's parser state for the supported elements, driven over a tree."""

    names: _Namespaces
    base: str
    version: str = ""
    feed: dict[str, Any] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    infeed: bool = False
    inentry: bool = False
    insource: bool = False
    inimage: bool = False
    intextinput: bool = False
    inauthor: bool = False
    incontributor: bool = False
    incontent: int = 0
    title_depth: int = -1
    has_content: bool = False
    summary_key: str | None = None
    guidislink: bool = False
    params: dict[str, Any] | None = None

    # feedparser's author bookkeeping, verbatim: it only uses _get_context().
    _sync_author_detail = _MIXIN._sync_author_detail
    _save_author = _MIXIN._save_author

    def walk(self, root: Any, root_declarations: list[tuple[str, str]]) -> None:
        name, _ = self.names.name(root.tag)
        self.version = _version(name, root_declarations)
        self._element(root, 1, self.base, None)

    # -- the tree, in document order ---------------------------------------------

    def _element(self, element: Any, depth: int, base: str, lang: str | None) -> None:
        name, prefixed = self.names.name(element.tag)
        if element.attrib:
            attributes = _attributes(element)
            base = _rebase(base, attributes.get("xml:base", attributes.get("base")))
            declared = attributes.get("xml:lang", attributes.get("lang"))
            lang = None if declared == "" else declared if declared is not None else lang
        else:  # most elements: nothing declared, the parent's language stands
            attributes = _NO_ATTRIBUTES
            base = _rebase(base, None)
        if lang and name in ("feed", "rss"):
            self.feed["language"] = lang.replace("_", "-")
        if not prefixed and (self.inimage or self.intextinput):
            self._hack_image_flags(name)
        node = _Node(element, name, depth, base, lang, attributes)
        start, end, children = _HANDLERS.get(name) or self._unknown_handlers(name)
        start(self, node)
        if len(element):  # most elements are leaves: no iterator for them
            for child in element:
                if children is not None and self.names.name(child.tag)[0] not in children:
                    raise Declined(f"<{child.tag}> inside <{name}>")
                self._element(child, depth + 1, base, lang)
        end(self, node)

    def _hack_image_flags(self, name: str) -> None:
        """feedparser's "special hack" for ill-formed image/textinput elements."""
        if name not in ("title", "link", "description", "name"):
            self.intextinput = False
        if name not in ("title", "link", "description", "url", "href", "width", "height"):
            self.inimage = False

    def _unknown_handlers(self, name: str) -> tuple[Handler, Handler, None]:
        if name in _FEEDPARSER_HANDLERS:
            raise Declined(f"<{name}> is not reproduced")
        if _KEYMAP.get(name, name) in READ_KEYS - _HINTS:
            raise Declined(f"unknown element <{name}> would write a read key")
        return _Walker._start_unknown, _Walker._end_unknown, None

    def _get_context(self) -> dict[str, Any]:
        if self.insource:
            return self.source
        if self.inimage and "image" in self.feed:
            image: dict[str, Any] = self.feed["image"]
            return image
        if self.intextinput:
            textinput: dict[str, Any] = self.feed["textinput"]
            return textinput
        if self.inentry:
            return self.entries[-1]
        return self.feed

    # -- feedparser's pop(): one value, finished and stored -----------------------

    def _pop(self, element: str, text: str, node: _Node) -> str:
        output = text.strip()
        if not node.expecting:
            return output
        if element in _RELATIVE and output and (element != "id" or self.guidislink):
            output = _join(node.base, output)
        params = self.params
        if (
            params is not None
            and params["type"] == "text/plain"
            and not self.version.startswith("atom")
            and ("<" in output or "&" in output)  # looks_like_html needs a tag or reference
            and _looks_like_html(output)
        ):
            params["type"] = "text/html"
        output = _fix_text(output)
        if element in ("category", "tags", "itunes_keywords"):
            return output
        if element == "title" and -1 < self.title_depth <= node.depth:
            return output
        if self.inentry and not self.insource:
            self._store_in_entry(element, output, node.depth)
        elif self.infeed or self.insource:
            self._store_in_feed(element, output)
        return output

    def _store_in_entry(self, element: str, output: str, depth: int) -> None:
        entry = self.entries[-1]
        if element == "content":
            entry.setdefault("content", []).append({**(self.params or {}), "value": output})
        elif element == "link":
            if not self.inimage:
                entry["link"] = _unescape_link(output.replace("&amp;", "&"))
        else:
            element = "summary" if element == "description" else element
            previous = self.depths.get(element)
            if previous is None or depth <= previous:
                self.depths[element] = depth
                entry[_KEYMAP.get(element, element)] = output
            if self.incontent:
                entry[_KEYMAP.get(element + "_detail", element + "_detail")] = dict(
                    self.params or {}
                )

    def _store_in_feed(self, element: str, output: str) -> None:
        context = self._get_context()
        element = "subtitle" if element == "description" else element
        context[_KEYMAP.get(element, element)] = output
        if element == "link":
            context["link"] = _unescape_link(output)
        elif self.incontent:
            context[element + "_detail"] = dict(self.params or {})

    def _push_content(self, node: _Node, default_type: str, expecting: bool) -> None:
        if "mode" in node.attributes:
            raise Declined("Atom 0.3 content mode")
        content_type = _map_content_type(node.attributes.get("type", default_type))
        if content_type == "application/xhtml+xml":
            raise Declined("XHTML content (feedparser re-serializes it)")
        if not content_type.startswith("text/") and not content_type.endswith(("+xml", "/xml")):
            raise Declined("base64 content")
        self.incontent += 1
        language = node.lang.replace("_", "-") if node.lang else node.lang
        self.params = {"type": content_type, "language": language}
        node.expecting = expecting

    def _pop_content(self, node: _Node, element: str) -> str:
        value = self._pop(element, node.text(), node)
        self.incontent -= 1
        self.params = None
        return value

    @property
    def _expecting(self) -> bool:
        return self.infeed or self.inentry or self.insource

    # -- containers -----------------------------------------------------------------

    def _start_root(self, node: _Node) -> None:
        if node.depth != 1:
            raise Declined(f"<{node.name}> below the root")

    def _start_channel(self, node: _Node) -> None:
        if node.depth != 2 or "lastmod" in node.attributes or "href" in node.attributes:
            raise Declined("unusual <channel>")
        self.infeed = True

    def _start_feed(self, node: _Node) -> None:
        self._start_root(node)
        self.infeed = True

    def _end_feed(self, node: _Node) -> None:
        self.infeed = False

    def _start_item(self, node: _Node) -> None:
        if self.inentry or "lastmod" in node.attributes or "href" in node.attributes:
            raise Declined("nested or CDF item")
        self.entries.append({})
        self.depths = {}
        self.inentry = True
        self.guidislink = False
        self.title_depth = -1
        about = node.attributes.get("rdf:about")
        if about:
            self._get_context()["id"] = about

    def _end_item(self, node: _Node) -> None:
        self.inentry = False
        self.has_content = False

    def _start_image(self, node: _Node) -> None:
        if not self.inentry:
            self._get_context().setdefault("image", {})
        self.inimage = True
        self.title_depth = -1

    def _end_image(self, node: _Node) -> None:
        self.inimage = False

    def _start_textinput(self, node: _Node) -> None:
        if self.inentry:
            raise Declined("textinput inside an item")
        self._get_context().setdefault("textinput", {})
        self.intextinput = True
        self.title_depth = -1

    def _end_textinput(self, node: _Node) -> None:
        self.intextinput = False

    def _start_author(self, node: _Node) -> None:
        self.inauthor = True
        self._get_context().setdefault("authors", []).append({})

    def _end_author(self, node: _Node) -> None:
        self._pop("author", node.frame_text(self.names, _AUTHOR_PARTS), node)
        self.inauthor = False
        self._sync_author_detail()

    def _start_contributor(self, node: _Node) -> None:
        self.incontributor = True

    def _end_contributor(self, node: _Node) -> None:
        self.incontributor = False

    def _start_source(self, node: _Node) -> None:
        self.insource = True
        self.title_depth = -1

    def _end_source(self, node: _Node) -> None:
        self.insource = False
        self._pop("source", node.text(), node)

    def _start_owner(self, node: _Node) -> None:
        if self.inentry:
            raise Declined("itunes:owner inside an item")

    # -- text fields ----------------------------------------------------------------

    def _start_title(self, node: _Node) -> None:
        self._push_content(node, "text/plain", self._expecting)

    def _end_title(self, node: _Node) -> None:
        if self._pop_content(node, "title"):
            self.title_depth = node.depth

    def _end_media_title(self, node: _Node) -> None:
        title_depth = self.title_depth
        self._end_title(node)
        self.title_depth = title_depth

    def _start_description(self, node: _Node) -> None:
        if "summary" in self._get_context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(node)
        else:
            self._push_content(node, "text/html", self._expecting)

    def _start_abstract(self, node: _Node) -> None:
        self._push_content(node, "text/plain", self._expecting)

    def _end_description(self, node: _Node) -> None:
        if self.summary_key == "content":
            self._end_content(node)
        else:
            self._pop_content(node, "description")
        self.summary_key = None

    def _start_summary(self, node: _Node) -> None:
        if "summary" in self._get_context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(node)
        else:
            self.summary_key = "summary"
            self._push_content(node, "text/plain", True)

    def _end_summary(self, node: _Node) -> None:
        if self.summary_key == "content":
            self._end_content(node)
        else:
            self._pop_content(node, self.summary_key or "summary")
        self.summary_key = None

    def _start_content(self, node: _Node) -> None:
        self.has_content = True
        self._push_content(node, "text/plain", True)

    def _start_content_encoded(self, node: _Node) -> None:
        self.has_content = True
        self._push_content(node, "text/html", True)

    def _end_content(self, node: _Node) -> None:
        params = self.params or {}
        copy_to_summary = params.get("type") in _HTML_TYPES | {"text/plain"}
        value = self._pop_content(node, "content")
        if copy_to_summary:
            self._get_context().setdefault("summary", value)

    # -- links, ids, dates, language -------------------------------------------------

    def _start_link(self, node: _Node) -> None:
        attributes = dict(node.attributes)
        rel = attributes.setdefault("rel", "alternate")
        link_type = attributes.setdefault(
            "type", "application/atom+xml" if rel == "self" else "text/html"
        )
        href = attributes.get("url", attributes.get("uri", attributes.get("href")))
        if href:
            attributes["href"] = href
        node.expecting = self._expecting
        node.pushed = "href" not in attributes
        if not node.pushed:
            href = _join(node.base, attributes["href"])
            if rel == "alternate" and _map_content_type(link_type) in _HTML_TYPES:
                self._get_context()["link"] = href

    def _end_link(self, node: _Node) -> None:
        if node.pushed:
            self._pop("link", node.text(), node)

    def _start_guid(self, node: _Node) -> None:
        self.guidislink = node.attributes.get("ispermalink", "true") == "true"

    def _end_guid(self, node: _Node) -> None:
        value = self._pop("id", node.text(), node)
        context = self._get_context()
        if self.guidislink and "link" not in context:
            context["link"] = value

    def _end_published(self, node: _Node) -> None:
        self._end_date(node, "published")

    def _end_updated(self, node: _Node) -> None:
        self._end_date(node, "updated")

    def _end_date(self, node: _Node, element: str) -> None:
        value = self._pop(element, node.text(), node)
        self._get_context()[f"{element}_parsed"] = parse_date(value)

    def _end_language(self, node: _Node) -> None:
        self._pop("language", node.text(), node)

    # -- authors --------------------------------------------------------------------

    def _end_name(self, node: _Node) -> None:
        value = node.text().strip()
        if self.inauthor:
            self._save_author("name", value)
        elif self.intextinput and not self.incontributor:
            self._get_context()["name"] = value

    def _end_email(self, node: _Node) -> None:
        value = node.text().strip()
        if self.inauthor:
            self._save_author("email", value)

    def _end_url(self, node: _Node) -> None:
        value = self._pop("href", node.text(), node)
        if self.inauthor:
            self._save_author("href", value)

    # -- everything else ---------------------------------------------------------------

    def _end_license(self, node: _Node) -> None:
        """creativeCommons:license: feedparser stores the value, then deletes it."""
        if not (self.inentry or self.infeed or self.insource):
            raise Declined("a license feedparser would fail to delete")
        node.text()

    def _nothing(self, node: _Node) -> None:
        """A handler whose effects feeds.py never reads."""

    def _leaf(self, node: _Node) -> None:
        """An element whose effects feeds.py never reads, if it has no children."""
        node.text()

    def _start_unknown(self, node: _Node) -> None:
        node.pushed = not node.attributes
        if not node.pushed and node.name in _HINTS:
            self._get_context()[node.name] = dict(node.attributes)

    def _end_unknown(self, node: _Node) -> None:
        if node.pushed and node.name in _HINTS:
            self._pop(node.name, node.text(), node)


def _version(root: str, declarations: list[tuple[str, str]]) -> str:
    """feedparser's format version, as far as this path needs it: whether it is Atom.

    feedparser takes it from the first feed namespace the root declares; <rss>
    then overrides it with an RSS version.
    """
    if root == "rss":
        return "rss"
    found = [
        "rss090" if (prefix, uri.lower()) == ("", RSS090) else
        "rss10" if uri.lower() == RSS10 else
        "atom10" if uri.lower() == ATOM else ""
        for prefix, uri in declarations  # in document order, as feedparser sees them
    ]  # fmt: skip
    versions = [version for version in found if version]
    if versions and (root, versions[0]) in (
        ("feed", "atom10"),
        ("rdf_rdf", "rss10"),
        ("rdf_rdf", "rss090"),
    ):
        return versions[0]
    raise Declined(f"root <{root}> declares {versions or 'no feed format'}")


_W = _Walker
_NOP = _W._nothing
_LEAF = (_W._leaf, _NOP, None)
_TITLE = (_W._start_title, _W._end_title, frozenset[str]())
_AUTHOR_PARTS = frozenset({"name", "email", "uri", "url", "homepage"})
_AUTHOR = (_W._start_author, _W._end_author, None)
_PUBLISHED = (_W._leaf, _W._end_published, None)
_UPDATED = (_W._leaf, _W._end_updated, None)
_DESCRIPTION = (_W._start_description, _W._end_description, None)
_SUMMARY = (_W._start_summary, _W._end_summary, None)
_CONTENT_ENCODED = (_W._start_content_encoded, _W._end_content, None)
_NAME = (_W._leaf, _W._end_name, None)
_EMAIL = (_W._leaf, _W._end_email, None)
_URL = (_W._leaf, _W._end_url, None)
_IRRELEVANT = [
    "category", "keywords", "dc_subject", "media_category", "media_keywords", "itunes_keywords",
    "tags", "enclosure", "cloud", "generator", "webmaster", "dc_publisher", "rights",
    "copyright", "dc_rights", "subtitle", "tagline", "itunes_subtitle", "info",
    "feedburner_browserfriendly", "created", "dcterms_created", "expirationdate",
    "dcterms_valid", "newlocation", "itunes_image", "itunes_link", "itunes_block",
    "itunes_explicit", "media_thumbnail", "media_rating", "media_credit", "media_restriction",
    "media_license", "media_player", "width", "height", "dc_contributor",
]  # fmt: skip
# name -> (start, end, the child names allowed or None for any)
_HANDLERS: dict[str, tuple[Handler, Handler, frozenset[str] | None]] = {
    **dict.fromkeys(_IRRELEVANT, _LEAF),
    "rss": (_W._start_root, _NOP, None),
    "channel": (_W._start_channel, _W._end_feed, None),
    "feed": (_W._start_feed, _W._end_feed, None),
    "item": (_W._start_item, _W._end_item, None),
    "entry": (_W._start_item, _W._end_item, None),
    "image": (
        _W._start_image,
        _W._end_image,
        frozenset({"title", "link", "url", "width", "height", "description"}),
    ),
    "textinput": (
        _W._start_textinput,
        _W._end_textinput,
        frozenset({"title", "link", "description", "name"}),
    ),
    "title": _TITLE,
    "dc_title": _TITLE,
    "media_title": (_W._start_title, _W._end_media_title, frozenset()),
    "link": (_W._start_link, _W._end_link, frozenset()),
    "guid": (_W._start_guid, _W._end_guid, None),
    "id": (_W._start_guid, _W._end_guid, None),
    "description": _DESCRIPTION,
    "dc_description": _DESCRIPTION,
    "media_description": _DESCRIPTION,
    "abstract": (_W._start_abstract, _W._end_description, None),
    "summary": _SUMMARY,
    "itunes_summary": _SUMMARY,
    "content": (_W._start_content, _W._end_content, None),
    "content_encoded": _CONTENT_ENCODED,
    "fullitem": _CONTENT_ENCODED,
    **dict.fromkeys(["pubdate", "published", "issued", "dcterms_issued"], _PUBLISHED),
    **dict.fromkeys(
        ["updated", "modified", "lastbuilddate", "dc_date", "dcterms_modified"], _UPDATED
    ),
    "language": (_W._leaf, _W._end_language, None),
    "dc_language": (_W._leaf, _W._end_language, None),
    **dict.fromkeys(
        ["author", "managingeditor", "dc_author", "dc_creator", "itunes_author"], _AUTHOR
    ),
    "name": _NAME,
    "itunes_name": _NAME,
    "email": _EMAIL,
    "itunes_email": _EMAIL,
    "url": _URL,
    "uri": _URL,
    "homepage": _URL,
    "contributor": (_W._start_contributor, _W._end_contributor, _AUTHOR_PARTS),
    "cc_license": _LEAF,
    "creativecommons_license": (_W._leaf, _W._end_license, None),
    "source": (_W._start_source, _W._end_source, frozenset()),
    "media_group": (_NOP, _NOP, None),
    "media_content": (_NOP, _NOP, None),
    "itunes_owner": (_W._start_owner, _NOP, frozenset({"itunes_name", "itunes_email"})),
    "itunes_category": (_NOP, _NOP, frozenset({"itunes_category"})),
}
