"""virtsdk-libvirt: a libvirt/QEMU driver for virtsdk."""
