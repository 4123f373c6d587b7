"""Hostile and tricky XML for the hardened parser and the destination-XML rewrite.

The parser refuses what it must (DOCTYPE and markup declarations before the root,
un-encodable text) with UnsafeXML and nothing else, and accepts legal documents whose
CDATA, comments or processing instructions merely *contain* such text.  The rewrite
follows libvirt's reading of the domain XML: a TCP character device ``<source>``
without ``mode`` connects (libvirt's default), and the ``<graphics listen=...>``
attribute counts only when there is no ``<listen>`` child or the first one is
``type='address'``.
"""

from __future__ import annotations

import pytest
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.live_migration.xml_rewrite import (
    DestinationSpec,
    ListenAddressError,
    check_can_migrate_as_is,
    graphics_listen_addresses,
    rewrite_for_destination,
    serial_listen_addresses,
)

from virtsdk.exceptions import UnsafeXML

SOURCE_ADDR = "198.18.1.2"
DEST_ADDR = "198.18.1.3"


# -- the parser -------------------------------------------------------------------------


@pytest.mark.parametrize("document", [
    pytest.param("<domain><name>\ud800</name></domain>", id="lone-high-surrogate"),
    pytest.param("<domain name='\udfff'/>", id="lone-low-surrogate-attribute"),
    pytest.param("<!DOCTYPE domain><domain/>", id="doctype"),
    pytest.param("<?xml version='1.0'?>\n<!-- hi -->\n<!DOCTYPE d [<!ENTITY x 'y'>]><d>&x;</d>",
                 id="doctype-after-comment"),
    pytest.param("<?pi x?><!doctype d><d/>", id="lowercase-doctype-after-pi"),
    pytest.param("\ufeff<!DOCTYPE d><d/>", id="bom-then-doctype"),
    pytest.param(b"\xef\xbb\xbf<!DOCTYPE d><d/>", id="utf8-bom-bytes-doctype"),
    pytest.param("<?xml version='1.0' encoding='UTF-16'?><!DOCTYPE d><d/>".encode("utf-16"),
                 id="utf16-doctype"),
    pytest.param("<!DOCTYPE d><d/>".encode("utf-32"), id="utf32-doctype"),
    pytest.param(b"<?xml version='1.0' encoding='no-such-codec'?><d/>", id="unknown-encoding"),
    pytest.param(b"\xff\xfe<\x00d\x00\x00\xd8/\x00>\x00", id="utf16-lone-surrogate"),
])
def test_refused_with_unsafe_xml(document: str | bytes) -> None:
    with pytest.raises(UnsafeXML):
        xmlutil.parse(document)


@pytest.mark.parametrize(("document", "text"), [
    pytest.param("<d><![CDATA[<!DOCTYPE x [<!ENTITY y 'z'>]>]]></d>",
                 "<!DOCTYPE x [<!ENTITY y 'z'>]>", id="cdata"),
    pytest.param("<d><!-- <!ENTITY lol 'lol'> --></d>", None, id="comment-in-root"),
    pytest.param("<!-- <!DOCTYPE d> --><d/>", None, id="comment-in-prolog"),
    pytest.param("<?note <!DOCTYPE d>?><d/>", None, id="pi-in-prolog"),
    pytest.param("<d><?note <!ENTITY x 'y'>?></d>", None, id="pi-in-root"),
    pytest.param("<d>&lt;!DOCTYPE d&gt;</d>", "<!DOCTYPE d>", id="escaped-text"),
])
def test_legal_documents_mentioning_declarations_parse(document: str, text: str | None) -> None:
    root = xmlutil.parse(document)
    assert root.tag == "d"
    if text is not None:
        assert root.text == text


def test_text_with_a_foreign_encoding_declaration_keeps_its_characters() -> None:
    """A str is already decoded: its declaration must not make 'é' into 'Ã©'."""
    for enc in ("ISO-8859-1", "windows-1252", "UTF-16", "UTF-8"):
        root = xmlutil.parse(f"<?xml version='1.0' encoding='{enc}'?><d n='é'>ü€</d>")
        assert (root.text, root.get("n")) == ("ü€", "é"), enc


def test_bytes_follow_their_declaration_or_bom() -> None:
    latin = "<?xml version='1.0' encoding='ISO-8859-1'?><d>é</d>".encode("latin-1")
    assert xmlutil.parse(latin).text == "é"
    wide = "<?xml version='1.0' encoding='UTF-16'?><d>é</d>".encode("utf-16")
    assert xmlutil.parse(wide).text == "é"
    assert xmlutil.parse("\ufeff<d>é</d>".encode()).text == "é"


# -- the rewrite ------------------------------------------------------------------------


def _domain(devices: str) -> object:
    return xmlutil.parse(f"<domain type='kvm'><name>vm</name><devices>{devices}</devices>"
                         "</domain>")


@pytest.mark.parametrize("tag", ["serial", "console", "channel"])
def test_tcp_source_without_mode_connects_and_is_left_alone(tag: str) -> None:
    target = "<target type='virtio' name='org.x.0'/>" if tag == "channel" else ""
    root = _domain(f"<{tag} type='tcp'><source host='192.0.2.9' service='4555'/>"
                   f"<protocol type='raw'/>{target}</{tag}>")
    assert serial_listen_addresses(root) == []
    check_can_migrate_as_is(root)  # nothing listens on a source address
    rewrite_for_destination(root, DestinationSpec(serial_listen=None))
    rewrite_for_destination(root, DestinationSpec(serial_listen=DEST_ADDR,
                                                  serial_ports=(10001,)))
    src = root.find(f"devices/{tag}/source")
    assert (src.get("host"), src.get("service")) == ("192.0.2.9", "4555")


def test_tcp_source_with_mode_bind_is_still_rewritten() -> None:
    root = _domain(f"<serial type='tcp'><source mode='bind' host='{SOURCE_ADDR}' "
                   "service='4555'/></serial>")
    assert serial_listen_addresses(root) == [SOURCE_ADDR]
    with pytest.raises(ListenAddressError):
        check_can_migrate_as_is(root)
    rewrite_for_destination(root, DestinationSpec(serial_listen=DEST_ADDR))
    assert root.find("devices/serial/source").get("host") == DEST_ADDR


@pytest.mark.parametrize("first", [
    "<listen type='network' network='default'/>",
    "<listen type='socket' socket='/run/vnc.sock'/>",
    "<listen type='none'/>",
])
def test_listen_attribute_ignored_when_first_listen_is_not_an_address(first: str) -> None:
    root = _domain(f"<graphics type='vnc' port='-1' autoport='yes' listen='{SOURCE_ADDR}'>"
                   f"{first}</graphics>")
    assert graphics_listen_addresses(root) == {"vnc": []}
    check_can_migrate_as_is(root)
    rewrite_for_destination(root, DestinationSpec(vnc_listen=None))
    assert root.find("devices/graphics").get("listen") == SOURCE_ADDR  # left alone


def test_listen_attribute_counts_with_an_address_listen_or_none() -> None:
    for children in ("", f"<listen type='address' address='{SOURCE_ADDR}'/>"):
        root = _domain(f"<graphics type='vnc' listen='{SOURCE_ADDR}'>{children}</graphics>")
        assert SOURCE_ADDR in graphics_listen_addresses(root)["vnc"]
        with pytest.raises(ListenAddressError):
            check_can_migrate_as_is(root)
        rewrite_for_destination(root, DestinationSpec(vnc_listen=DEST_ADDR))
        assert root.find("devices/graphics").get("listen") == DEST_ADDR
