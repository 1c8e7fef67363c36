"""Benchmarks behind ``loopbreak bench NAME``.

Each module has ``run(**options) -> dict`` and ``table(result) -> str``, and may have
``add_arguments(parser)`` for its own command-line options, which ``loopbreak bench NAME`` passes
to ``run`` as keyword arguments. The command prints the table, and with ``--json`` one JSON object
as the last line. Timings are never asserted in tests. The command imports every benchmark module
to build its help, so a module imports heavy libraries (torch, obp, vowpalwabbit) inside ``run``.
"""

BENCHMARKS = ("explore", "ope", "fm", "log", "api", "warm_start", "surfaces")
