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
    """Cap torch's intra-op threads at ``threads`` in the calling thread when torch is loaded (a
    foundation model is served); 0 leaves torch's default. Never imports torch itself, so a
    worker serving the baseline scorer does not pay for it. OpenMP keeps the cap per thread:
    call this where the model runs (the app calls it on its event loop, and again for each
    model it swaps in)."""
    torch = sys.modules.get("torch")
    if torch is None or threads <= 0 or torch.get_num_threads() == threads:
        return
    torch.set_num_threads(threads)
    logger.info("torch operations limited to %d thread(s) per serving worker", threads)


def torch_thread_environment(threads: int) -> dict[str, str]:
    """The environment that carries the cap to a serving process's later ``import torch`` in any
    thread (``OMP_NUM_THREADS``, unless the operator set it): what ``loopbreak serve`` gives its
    workers, so that a model loaded by a hot reload in a background thread is capped too."""
    if threads <= 0 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(threads)}
