"""The compute side: one manager per host, its RPC API and its service wrapper."""
