"""The test guest: build/cache it, describe a domain for it, read its console."""

from virtsdk_lab.guest.console import ConsoleLog, Heartbeat, Marker, MemCheck
from virtsdk_lab.guest.domain import demo_domain_xml
from virtsdk_lab.guest.image import DEFAULT_CACHE_DIR, GuestImage, build_guest_image

__all__ = [
    "DEFAULT_CACHE_DIR",
    "ConsoleLog",
    "GuestImage",
    "Heartbeat",
    "Marker",
    "MemCheck",
    "build_guest_image",
    "demo_domain_xml",
]
