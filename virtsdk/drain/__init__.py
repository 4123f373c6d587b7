"""Draining a host: empty it of guests for maintenance.

:mod:`virtsdk.drain.plan` is the pure planner (which guest to which destination,
when); :mod:`virtsdk.drain.executor` runs a plan through the API's live-migration and
cold-migration flows and keeps the drain's record.
"""
