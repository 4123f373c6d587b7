"""The conductor: orchestration of boots and migrations between API and hosts."""
