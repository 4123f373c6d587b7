"""The only place the libvirt driver parses XML.

Everything the driver reads as XML (domain definitions from libvirt, capabilities,
definitions another host sends during a live migration) goes through :func:`parse`,
which uses a hardened lxml parser: no entity resolution, no network access, no DTD
loading, no huge trees.  Documents that carry a DOCTYPE or entity declarations are
refused outright with :class:`virtsdk.exceptions.UnsafeXML` instead of being half
trusted.  Called on any host, by any module of the driver (including
``virtsdk_libvirt.live``); it never touches libvirt or the filesystem.
"""

from __future__ import annotations

import re

from lxml import etree

from virtsdk.exceptions import UnsafeXML

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_blank_text=True,
    )


def parse(document: str | bytes) -> etree._Element:
    """Parse ``document`` and return its root element.

    Raises UnsafeXML for a DOCTYPE, any markup declaration (entities: billion
    laughs, external entities) or malformed XML.  The message says why.
    """
    data = document.encode("utf-8") if isinstance(document, str) else bytes(document)
    if _DECLARATION.search(data):
        raise UnsafeXML("XML with a DOCTYPE or entity declarations is refused")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXML(f"malformed XML refused: {exc}") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXML("XML with a DOCTYPE is refused")
    for node in root.iter():
        if isinstance(node, etree._Entity):  # noqa: SLF001 - lxml's entity node type
            raise UnsafeXML(f"XML with an entity reference ({node.text}) is refused")
    return root


def to_string(element: etree._Element) -> str:
    """Serialise ``element`` (pretty-printed, no XML declaration) for libvirt."""
    return etree.tostring(element, pretty_print=True, encoding="unicode")


def find_text(element: etree._Element, path: str, default: str = "") -> str:
    """Text of the first node matching ``path`` (an XPath or ElementPath), or
    ``default``."""
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text
