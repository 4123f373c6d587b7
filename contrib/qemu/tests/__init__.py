"""Tests of the qemu driver (QEMU over QMP, on the two-host lab of ``contrib/lab``)."""
