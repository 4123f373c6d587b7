"""virtsdk-fake: an in-memory hypervisor for tests, demos and driver authors.

Every :class:`~virtsdk_fake.driver.FakeDriver` built with the same ``[fake] fabric``
name in one process joins one :class:`~virtsdk_fake.fabric.Fabric`; migrations between
its hosts move real bytes (guest memory and sparse disks).  From a test::

    from virtsdk_fake.fabric import get_fabric
    from virtsdk_fake.clock import ManualClock

    fabric = get_fabric(conf.fake.fabric)        # or driver.fabric
    fabric.use_clock(ManualClock())              # simulated time without waiting
    guest = fabric.host("h1").instances[uuid]    # a FakeInstance
    guest.write_memory(0, b"...");  guest.disks["disk"].write(4096, b"...")
    fp = guest.fingerprint()                     # compare after the migration
    fabric.find(uuid)                            # [(host, kind)]: where its pieces are
    fabric.inject("finish_migration", host="h2", exc=None, times=1)   # raise once
    held = fabric.stall("live_migration.switchover", host="h1")      # block ...
    held.wait_reached(); held.set()                                   # ... release
    fabric.set_migration_params(uuid, dirty_rate_mbps=64, working_set_mb=128)
    fabric.faults.calls                          # [(host, step)] in order

Steps are the driver method names plus :data:`virtsdk_fake.faults.INTERNAL_STEPS`.
Guest metadata ``fake:dirty_rate_mbps``, ``fake:working_set_mb`` and
``fake:ignore_shutdown`` tune a guest's behaviour.  Options: group ``[fake]``
(:mod:`virtsdk_fake.opts`); live-migration behaviour: group ``[live_migration]``.
"""
