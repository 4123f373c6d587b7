"""Errors raised by the lab."""

from __future__ import annotations

from virtsdk.exceptions import VirtSDKError


class LabError(VirtSDKError):
    """The lab could not be brought up, inspected or torn down.

    The message names the step that failed and, where the cause is a command, its
    output, so a test run that cannot start the lab says exactly why.
    """


class PrerequisitesMissing(LabError):
    """Something the lab needs (a binary, root, a kernel feature) is not there."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        lines = "\n".join(f"  - {item}" for item in self.missing)
        super().__init__(f"the libvirt lab cannot start, missing:\n{lines}")


class GuestImageError(LabError):
    """The test guest (kernel + initramfs) could not be built."""
