"""The only place the libvirt driver parses XML.

Everything the driver reads as XML (domain definitions from libvirt, capabilities,
definitions another host sends during a live migration) goes through :func:`parse`,
which uses a hardened lxml parser: no entity resolution, no network access, no DTD
loading, no huge trees.  Documents that carry a DOCTYPE or entity declarations are
refused outright with :class:`virtsdk.exceptions.UnsafeXML` instead of being half
trusted.  Called on any host, by any module of the driver (including
``virtsdk_libvirt.live_migration``); it never touches libvirt or the filesystem.
"""

from __future__ import annotations

import codecs
import re

from lxml import etree

from virtsdk.exceptions import UnsafeXML

# The prolog: what may come before the root element.  Whitespace, the XML
# declaration, processing instructions and comments are skipped (their text is not
# markup, whatever it contains); any other ``<!`` there is a DOCTYPE or a markup
# declaration and is refused.  Scanning stops at the root element's ``<``, so a
# CDATA section, comment or PI inside the document may contain any text.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)


# Byte patterns of the encodings whose '<' is not the ASCII byte (XML 1.0 appendix
# F): such bytes are decoded here, so the prolog scan sees their markup too.  UTF-32
# comes first (its little-endian BOM begins with UTF-16's).
_WIDE_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
    (b"<\x00\x00\x00", "utf-32-le"), (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00?\x00", "utf-16-le"), (b"\x00<\x00?", "utf-16-be"),
)


def _parser(encoding: str | None = None) -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_blank_text=True,
        encoding=encoding,
    )


def _check_prolog(data: bytes) -> None:
    """Refuse a DOCTYPE or markup declaration before the root element."""
    pos = 0
    if data.startswith(b"\xef\xbb\xbf"):
        pos = 3  # UTF-8 byte order mark
    while pos < len(data):
        item = _PROLOG_ITEM.match(data, pos)
        if item is None:
            break
        pos = item.end()
    if data.startswith(b"<!", pos):
        raise UnsafeXML("XML with a DOCTYPE or entity declarations is refused")


def parse(document: str | bytes) -> etree._Element:
    """Parse ``document`` and return its root element.

    Raises UnsafeXML for a DOCTYPE, any markup declaration (entities: billion
    laughs, external entities), malformed XML or text that is not encodable (a lone
    surrogate).  The message says why.  A ``str`` is already decoded text: an
    encoding declaration in it is ignored (it names the encoding of bytes this text
    once was); ``bytes`` are decoded as their declaration or byte order mark says.
    """
    if isinstance(document, (bytes, bytearray, memoryview)):
        raw = bytes(document)
        for mark, codec in _WIDE_ENCODINGS:
            if raw.startswith(mark):
                try:
                    document = raw.decode(codec)
                except UnicodeDecodeError as exc:
                    raise UnsafeXML(f"XML that is not valid {codec} refused: "
                                    f"{exc.reason}") from None
                break
    if isinstance(document, str):
        document = document.removeprefix("\ufeff")
        try:
            data = document.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnsafeXML(f"XML text that cannot be encoded refused: {exc.reason} "
                            f"at position {exc.start}") from None
        parser = _parser(encoding="utf-8")
    else:
        data = bytes(document)
        parser = _parser()
    _check_prolog(data)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise UnsafeXML(f"malformed XML refused: {exc}") from exc
    except (ValueError, LookupError) as exc:  # e.g. an unknown declared encoding
        raise UnsafeXML(f"XML refused: {exc}") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXML("XML with a DOCTYPE is refused")
    for node in root.iter():
        if isinstance(node, etree._Entity):  # noqa: SLF001 - lxml's entity node type
            raise UnsafeXML(f"XML with an entity reference ({node.text}) is refused")
    return root


def to_string(element: etree._Element) -> str:
    """Serialise ``element`` (pretty-printed, no XML declaration) for libvirt."""
    return str(etree.tostring(element, pretty_print=True, encoding="unicode"))


def find_text(element: etree._Element, path: str, default: str = "") -> str:
    """Text of the first node matching ``path`` (an XPath or ElementPath), or
    ``default``."""
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return str(found.text)
