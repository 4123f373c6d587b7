"""virtsdk-lab: N libvirt hosts on one machine, each in its own network namespace.

Public API: :class:`Lab`, :class:`LabHost`, :func:`check_prerequisites`; the test
guest is in :mod:`virtsdk_lab.guest` (:class:`GuestImage`, :func:`build_guest_image`,
:class:`ConsoleLog`, :func:`demo_domain_xml`); pytest fixtures in :mod:`virtsdk_lab.fixtures`.
"""

from virtsdk_lab.errors import GuestImageError, LabError, PrerequisitesMissing
from virtsdk_lab.host import LabHost
from virtsdk_lab.lab import DEFAULT_ROOT, HostStatus, Lab
from virtsdk_lab.prereqs import check_prerequisites

__all__ = [
    "DEFAULT_ROOT",
    "GuestImageError",
    "HostStatus",
    "Lab",
    "LabError",
    "LabHost",
    "PrerequisitesMissing",
    "check_prerequisites",
]
