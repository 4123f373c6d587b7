"""virtsdk driver running QEMU guests directly, managed over QMP (no libvirt)."""
