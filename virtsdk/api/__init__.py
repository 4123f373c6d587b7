"""The public Python API (:class:`virtsdk.api.api.API`)."""

from virtsdk.api.api import API

__all__ = ["API"]
