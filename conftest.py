"""The fixtures every test tree of this repository shares, from pytest plugin modules.

One declaration at the root, so ``tests/``, ``drivers/*/tests/`` and ``contrib/*/tests/``
(each driver folder carries its own tests) and ``benchmarks/`` all find them:

``lab`` (session: two real libvirt hosts in network namespaces) and ``guest_image``
(session: the cached test guest) from the lab's plugin, :mod:`virtsdk_lab.fixtures`;
tests that use the lab carry ``@pytest.mark.lab``.

``rabbit`` / ``rabbit_url`` and ``postgres`` / ``postgres_url`` (a private RabbitMQ node
and PostgreSQL cluster started by the tests) from :mod:`virtsdk.testing.services`.

Helpers shared between trees are ordinary modules imported by their package path
(``tests.audit_check``, ``drivers.libvirt.tests.libvirt_lab``), never from a conftest:
``[tool.pytest.ini_options]`` puts the repository root on ``sys.path`` and names every
test module by its full package path (``consider_namespace_packages``).
"""

pytest_plugins = ("virtsdk_lab.fixtures", "virtsdk.testing.services")
