"""The kinds of scorer the loop fits and serves: the baseline (popularity and affinity, numpy) and
the foundation model with its ranker (torch). A module of its own so that the command line can
offer them without importing the store or the scorers."""

MODEL_KINDS: tuple[str, ...] = ("baseline", "fm")
