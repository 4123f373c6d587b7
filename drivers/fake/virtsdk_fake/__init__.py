"""virtsdk-fake: an in-memory hypervisor for tests, demos and driver authors."""
