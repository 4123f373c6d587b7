"""This host's base-image cache: the SDK's :mod:`virtsdk.localdisk.imagecache`."""

from virtsdk.localdisk.imagecache import ImageCache, ImageUnavailable

__all__ = ["ImageCache", "ImageUnavailable"]
