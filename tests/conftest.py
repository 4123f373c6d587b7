"""Shared fixtures of the whole suite.

``lab`` (session: two real libvirt hosts in network namespaces) and ``guest_image``
(session: the cached test guest) come from the lab's pytest plugin; see
:mod:`virtsdk_lab.fixtures`.  Tests that use the lab carry ``@pytest.mark.lab``.

``rabbit`` / ``rabbit_url`` and ``postgres`` / ``postgres_url`` (a private RabbitMQ node
and PostgreSQL cluster started by the tests, see :mod:`virtsdk.testing.services`).
"""

pytest_plugins = ("virtsdk_lab.fixtures", "virtsdk.testing.services")
