"""Tests of the libvirt driver (the ``lab`` ones on the two-host lab of ``contrib/lab``)."""
