"""Disk transfer for cold migration.

Transports are plugins in the entry-point group ``virtsdk.disk_transports``; a
driver loads one with :func:`virtsdk.transfer.base.load_transport` and drives it
through :class:`~virtsdk.transfer.base.DiskTransport` (prepare_receive on the
destination, send on the source, finish_receive / cancel_receive on the
destination).  Modules:

* :mod:`~virtsdk.transfer.base`      the interface, tickets, choosing a transport
* :mod:`~virtsdk.transfer.extents`   sparse reading (SEEK_DATA/SEEK_HOLE), runs, digests
* :mod:`~virtsdk.transfer.local`     ``local``: reflink / copy_file_range / sendfile
* :mod:`~virtsdk.transfer.stream`    ``stream``: the network transport (no ssh keys)
* :mod:`~virtsdk.transfer.sender`, :mod:`~virtsdk.transfer.receiver` (the receiver
  process; its parts ``receiver_gate``, ``receiver_session``, ``receiver_frames``,
  ``receiver_store``), :mod:`~virtsdk.transfer.protocol`  its two ends and wire format
* :mod:`~virtsdk.transfer.ssh`       ``rsync`` and ``scp`` (Nova parity)
* :mod:`~virtsdk.transfer.images`    raw/qcow2, backing files a destination lacks
* :mod:`~virtsdk.transfer.state`     the per-transfer record under the destination dir
"""
