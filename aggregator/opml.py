"""OPML 2.0 subscription lists: the format every feed reader imports and exports.

Parsing goes through defusedxml because an OPML file is user-supplied XML:
entity expansion and external entities must not reach the process.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class OPMLError(ValueError):
    """An OPML document that cannot be read; the message names the problem."""


@dataclass(frozen=True)
class Subscription:
    url: str
    outlet: str | None
    title: str | None = None
    home_url: str | None = None


def read(data: bytes) -> list[Subscription]:
    """Every outline with an xmlUrl; the enclosing folder's name is taken as the outlet.

    Readers nest feeds in folders in many ways; an outline's own text is the
    feed's title, and a parent outline without xmlUrl is a folder.
    """
    try:
        root = fromstring(data)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise OPMLError(f"not well-formed OPML: {exc}") from None
    if root.tag != "opml":
        raise OPMLError(f"not an OPML document (root element <{root.tag}>)")
    body = root.find("body")
    if body is None:
        raise OPMLError("OPML document has no <body>")
    found: list[Subscription] = []

    def walk(node: ET.Element, folder: str | None) -> None:
        for outline in node.findall("outline"):
            url = outline.get("xmlUrl")
            text = outline.get("title") or outline.get("text")
            if url:
                found.append(
                    Subscription(
                        url=url.strip(),
                        outlet=outline.get("category") or folder,
                        title=text,
                        home_url=outline.get("htmlUrl"),
                    )
                )
            else:
                walk(outline, text or folder)

    walk(body, None)
    return found


def write(subscriptions: list[Subscription], *, title: str = "aggregator feeds") -> str:
    """An OPML 2.0 document with one folder per outlet, so `read` gives the same outlets back."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for sub in subscriptions:
        outlet = sub.outlet or ""
        if outlet not in folders:
            folders[outlet] = ET.SubElement(body, "outline", text=outlet, title=outlet)
        attributes = {"type": "rss", "text": sub.title or sub.url, "xmlUrl": sub.url}
        if sub.home_url:
            attributes["htmlUrl"] = sub.home_url
        ET.SubElement(folders[outlet], "outline", attributes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
