"""Live migration for the libvirt driver (checks, pre_live_migration, XML rewriting,
migrateToURI3, monitoring).  :class:`LiveMigrationMixin` is mixed into
:class:`virtsdk_libvirt.driver.LibvirtDriver`."""


class LiveMigrationMixin:
    """Placeholder until the live-migration methods land."""
