"""Shared fixtures of the whole suite.

``lab`` (session: two real libvirt hosts in network namespaces) and ``guest_image``
(session: the cached test guest) come from the lab's pytest plugin; see
:mod:`virtsdk_lab.fixtures`.  Tests that use the lab carry ``@pytest.mark.lab``.
"""

pytest_plugins = ("virtsdk_lab.fixtures",)
