"""virtsdk: an SDK for hypervisor drivers that move virtual machines between hosts.

The core package never imports a driver.  Drivers are separate distributions that
register a :class:`virtsdk.driver.ComputeDriver` subclass in the entry-point group
``virtsdk.compute_drivers``; :mod:`virtsdk.plugins` finds and loads them (and every
other plugin group) by entry-point name.
"""

__version__ = "0.1.0"
