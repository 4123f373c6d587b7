"""Tests of the fake driver (run from the repository root by ``./dev.sh test``)."""
