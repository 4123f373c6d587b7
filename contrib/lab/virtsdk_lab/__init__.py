"""virtsdk-lab: N libvirt hosts on one machine, each in its own network namespace."""
