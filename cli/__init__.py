"""The ``loopbreak`` command: one module per command group, each with ``add_parser`` and ``run``."""
