"""The ``virtsdk`` command line."""

from virtsdk._quiet import quiet_import_warnings

quiet_import_warnings()
