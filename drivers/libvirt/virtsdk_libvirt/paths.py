"""Where an instance's files live: the SDK's :mod:`virtsdk.localdisk.paths`."""

from virtsdk.localdisk.paths import CONSOLE_LOG, RESIZE_SUFFIX, InstancePaths, checked_uuid

__all__ = ["CONSOLE_LOG", "RESIZE_SUFFIX", "InstancePaths", "checked_uuid"]
