"""File-backed instance storage shared by drivers that keep each instance in a
directory of its own: paths (:mod:`.paths`), ``qemu-img`` operations
(:mod:`.images`), the base-image cache (:mod:`.imagecache`) and the disk layout of
an instance (:mod:`.disks`)."""
