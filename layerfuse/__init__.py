"""The ``layerfuse`` command line (and, later, the Python client of the service)."""
