"""How many CPU threads a served model's torch operations use in one serving process.

torch runs each operation on as many threads as the machine has cores by default. A serving
worker already keeps its cores busy with requests (and ``loopbreak serve --workers N`` runs one
worker per core), so a forward pass split across threads only makes them wait on each other:
scoring one request of 1,000 candidates with the small FM and ranker took 11.5 ms of wall time
and 16.2 ms of CPU on 2 threads against 5.9 ms of both on 1 (this project's 2-core machine).
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


def limit_torch_threads(threads: int) -> None:
    """Cap torch's intra-op threads at ``threads`` in this process; 0 leaves torch's default.

    Never imports torch itself, so a worker serving the baseline scorer does not pay for it.
    When torch is not loaded yet, ``OMP_NUM_THREADS`` (unless set) carries the cap to the import
    that a model loaded later makes, in whichever thread; once it is loaded, the cap is set in
    the calling thread, since OpenMP keeps it per thread: call this where the model runs (the
    app calls it on its event loop, and again for each model it swaps in)."""
    if threads <= 0:
        return
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info("torch operations limited to %d thread(s) per serving worker", threads)
