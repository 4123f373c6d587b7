"""Test helpers for driver authors (pytest needed): :mod:`virtsdk.testing.contract`."""
