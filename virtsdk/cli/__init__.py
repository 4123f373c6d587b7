"""The ``virtsdk`` command line."""
