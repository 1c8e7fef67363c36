"""Benchmarks behind ``loopbreak bench NAME``.

Each module has ``run(**options) -> dict`` and ``table(result) -> str``; the command prints the
table, and with ``--json`` one JSON object as the last line. Timings are never asserted in tests.
"""

BENCHMARKS = ("policy",)
