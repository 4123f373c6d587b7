"""Disk transfer for cold migration: transports are plugins in the entry-point
group ``virtsdk.disk_transports`` (see :mod:`virtsdk.transfer.base`)."""
