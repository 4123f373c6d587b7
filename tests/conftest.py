"""Fixtures of the core's tests only.

The fixtures every test tree shares (``lab``, ``guest_image``, ``rabbit``, ``postgres``)
come from the plugin modules named in the repository's root ``conftest.py``; helpers
shared with other trees are plain modules (``tests.audit_check``), imported by their
package path, never from a conftest.
"""

from __future__ import annotations
