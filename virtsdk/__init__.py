"""virtsdk: an SDK for hypervisor drivers that move virtual machines between hosts.

The core package never imports a driver.  Drivers are separate distributions that
register a :class:`virtsdk.driver.ComputeDriver` subclass in the entry-point group
``virtsdk.compute_drivers``; :mod:`virtsdk.loader` finds them with stevedore.
"""

__version__ = "0.1.0"
