"""XMP packets with the standard library: read a sidecar, change some properties, write it
back with every other tool's properties as they were.

Why no XMP library: python-xmp-toolkit needs libexempi and pyexiv2 ships its own exiv2
build, while a sidecar (no image to embed into) needs only the RDF/XML subset below, which
``xml.etree`` parses and this module writes. Tests read the result with ExifTool.

Read: an ``x:xmpmeta`` root (or a bare ``rdf:RDF``), any number of ``rdf:Description``
elements, properties as child elements or as attributes (simple values), arrays
(``rdf:Bag``/``rdf:Seq``/``rdf:Alt`` of ``rdf:li``) and structures (``rdf:parseType=
"Resource"`` or a nested ``rdf:Description``). Written: the same tree, namespace prefixes as
the source had them, wrapped in an ``<?xpacket?>``. A document with a DOCTYPE is refused
(no entity expansion from files found on disk).

A *container* below is anything that holds properties: an ``rdf:Description`` or the
element of one structure; the functions that read and set properties work on both.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from artylyze.errors import ArtyLyzeError

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
LR = "http://ns.adobe.com/lightroom/1.0/"
IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
PREFIXES = {X: "x", RDF: "rdf", DC: "dc", XMP: "xmp", LR: "lr", IPTC_EXT: "Iptc4xmpExt"}
ARRAYS = ("Bag", "Seq", "Alt")
PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"  # the fixed id every XMP packet carries
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmpError(ArtyLyzeError):
    """A file is not an XMP packet this module can merge into."""


def q(ns: str, name: str) -> str:
    """ElementTree's name for ``ns:name``."""
    return f"{{{ns}}}{name}"


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry (most controls) as U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


# ---------------------------------------------------------------- containers

def _array(el: ET.Element | None) -> ET.Element | None:
    """The rdf:Bag, rdf:Seq or rdf:Alt a property element holds, if it is an array."""
    if el is None:
        return None
    return next((a for k in ARRAYS if (a := el.find(q(RDF, k))) is not None), None)


def _struct_of(li: ET.Element) -> ET.Element:
    """The element that holds a structure's fields (parseType Resource, or a Description)."""
    inner = li.find(q(RDF, "Description"))
    return inner if inner is not None else li


def values(container: ET.Element, prop: str) -> list[str]:
    """A property as a list of texts: [] when absent, [text] when simple, items of an array."""
    if prop in container.attrib:
        return [container.attrib[prop]]
    el = container.find(prop)
    if el is None:
        return []
    array = _array(el)
    if array is None:
        return [el.text or ""]
    return [li.text or "" for li in array.findall(q(RDF, "li"))]


def remove(container: ET.Element, prop: str) -> None:
    container.attrib.pop(prop, None)
    for el in container.findall(prop):
        container.remove(el)


def set_text(container: ET.Element, prop: str, value: str) -> None:
    remove(container, prop)
    ET.SubElement(container, prop).text = xml_text(value)


def set_items(container: ET.Element, prop: str, items: list[str], kind: str = "Bag") -> None:
    """An array property (``kind`` Bag or Seq) holding ``items``, replacing any old value."""
    remove(container, prop)
    array = ET.SubElement(ET.SubElement(container, prop), q(RDF, kind))
    for item in items:
        ET.SubElement(array, q(RDF, "li")).text = xml_text(item)


def structs(container: ET.Element, prop: str) -> list[ET.Element]:
    """The structures of an array-of-structures property (each as its field container)."""
    array = _array(container.find(prop))
    return [] if array is None else [_struct_of(li) for li in array.findall(q(RDF, "li"))]


def add_struct(container: ET.Element, prop: str, kind: str = "Bag") -> ET.Element:
    """Append an empty structure to an array property (made if absent); returns it."""
    el = container.find(prop)
    if el is None:
        el = ET.SubElement(container, prop)
    array = _array(el)
    if array is None:
        array = ET.SubElement(el, q(RDF, kind))
    return ET.SubElement(array, q(RDF, "li"), {q(RDF, "parseType"): "Resource"})


def is_empty(struct: ET.Element) -> bool:
    return len(struct) == 0 and not any(k != q(RDF, "parseType") for k in struct.attrib)


# ---------------------------------------------------------------- the packet

class Packet:
    """An XMP packet as an element tree, with the namespace prefixes it was written with."""

    def __init__(self, root: ET.Element, prefixes: dict[str, str] | None = None) -> None:
        self.root = root
        self.prefixes = dict(prefixes or {})
        rdf = root.find(q(RDF, "RDF"))
        if rdf is None:
            rdf = ET.SubElement(root, q(RDF, "RDF"))
        self.rdf = rdf

    @classmethod
    def new(cls) -> Packet:
        return cls(ET.Element(q(X, "xmpmeta")))

    @classmethod
    def parse(cls, data: bytes) -> Packet:
        """Parse a sidecar's bytes; refuses what is not XMP rather than guessing."""
        head = data[:4096].upper()
        if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
            raise XmpError("holds a DOCTYPE; refusing to parse it")
        prefixes: dict[str, str] = {}
        try:
            events = ET.iterparse(io.BytesIO(data), events=("start-ns",))
            for _, (prefix, uri) in events:
                if prefix:
                    prefixes.setdefault(uri, prefix)
            root = events.root  # type: ignore[attr-defined]
        except ET.ParseError as e:
            raise XmpError(f"not well-formed XML ({e})") from e
        if root.tag == q(RDF, "RDF"):
            meta = ET.Element(q(X, "xmpmeta"))
            meta.append(root)
            root = meta
        if root.tag not in (q(X, "xmpmeta"), q(X, "xapmeta")) or root.find(q(RDF, "RDF")) is None:
            raise XmpError(f"not an XMP packet (root element {root.tag})")
        return cls(root, prefixes)

    def descriptions(self) -> list[ET.Element]:
        return self.rdf.findall(q(RDF, "Description"))

    def description(self) -> ET.Element:
        """The first ``rdf:Description`` (made if there is none): where new properties go."""
        found = self.rdf.find(q(RDF, "Description"))
        if found is None:
            found = ET.SubElement(self.rdf, q(RDF, "Description"), {q(RDF, "about"): ""})
        return found

    def holder(self, prop: str) -> ET.Element:
        """The Description that holds ``prop``, else the first one."""
        for d in self.descriptions():
            if prop in d.attrib or d.find(prop) is not None:
                return d
        return self.description()

    def values(self, prop: str) -> list[str]:
        return values(self.holder(prop), prop)

    def remove(self, prop: str) -> None:
        for d in self.descriptions():
            remove(d, prop)

    def remove_namespace(self, ns: str) -> None:
        """Drop every top-level property of one namespace (one tool's own)."""
        start = f"{{{ns}}}"
        for d in self.descriptions():
            for key in [k for k in d.attrib if k.startswith(start)]:
                del d.attrib[key]
            for el in [e for e in d if e.tag.startswith(start)]:
                d.remove(el)

    def to_bytes(self, toolkit: str | None = None) -> bytes:
        """The packet as UTF-8, indented, every namespace declared on the root."""
        if toolkit:
            self.root.set(q(X, "xmptk"), toolkit)
        for d in self.descriptions():
            d.attrib.setdefault(q(RDF, "about"), "")
        ET.indent(self.root, space=" ")
        names = _prefixes(self.root, self.prefixes)
        out: list[str] = []
        _write(self.root, names, out, declare=True)
        body = "".join(out)
        return (f'<?xpacket begin="\ufeff" id="{PACKET_ID}"?>\n{body}\n'
                '<?xpacket end="w"?>\n').encode()


def _prefixes(root: ET.Element, known: dict[str, str]) -> dict[str, str]:
    """uri -> prefix for every namespace in the tree; a prefix is never given to two uris."""
    uris: list[str] = []
    for el in root.iter():
        for name in (el.tag, *el.attrib):
            if name.startswith("{"):
                uri = name[1:].partition("}")[0]
                if uri != XML_NS and uri not in uris:
                    uris.append(uri)
    names: dict[str, str] = {}
    taken: set[str] = {"xml"}
    for uri in uris:
        prefix = known.get(uri) or PREFIXES.get(uri) or "ns"
        base, n = prefix, 1
        while prefix in taken:
            prefix, n = f"{base}{n}", n + 1
        names[uri] = prefix
        taken.add(prefix)
    return names


def _name(name: str, names: dict[str, str]) -> str:
    if not name.startswith("{"):
        return name
    uri, _, local = name[1:].partition("}")
    return f"xml:{local}" if uri == XML_NS else f"{names[uri]}:{local}"


_SPECIAL = re.compile("[&<>\r]")


def _text(value: str | None) -> str:
    if not value or not _SPECIAL.search(value):  # most texts are indentation
        return value or ""
    return escape(value, {"\r": "&#13;"})


def _write(el: ET.Element, names: dict[str, str], out: list[str], declare: bool = False) -> None:
    attrs = [f" {_name(k, names)}={quoteattr(v)}" for k, v in el.attrib.items()]
    if declare:
        attrs = [f" xmlns:{p}={quoteattr(u)}" for u, p in names.items()] + attrs
    tag = _name(el.tag, names)
    if len(el) == 0 and not el.text:
        out.append(f"<{tag}{''.join(attrs)}/>")
    else:
        out.append(f"<{tag}{''.join(attrs)}>{_text(el.text)}")
        for child in el:
            _write(child, names, out)
        out.append(f"</{tag}>")
    out.append(_text(el.tail))
