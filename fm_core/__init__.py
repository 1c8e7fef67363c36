"""The recommender that loopbreak wraps: event histories in, calibrated P(play) out.

This package holds the Scorer interface and its inputs, the baseline scorer, and the transformer
foundation model: event tokenization (``tokenize``), the causal decoder with its item encoder and
objectives (``model``, ``item_embedding``, ``objectives``), its training loop with DDP
(``train_fm``), checkpoints and evaluation; incremental training onto a grown catalog
(``warm_start``) and Procrustes-aligned embedding exports (``alignment``); and the DCN-v2 ranker
(``ranker``) with its calibration (``calibration``) and its network as an OPE reward model
(``reward_classifier``), served with the FM behind the Scorer interface by ``fm_scorer`` and
fitted by ``fm_scorer_fit``; the impressions both scorers learn from (``impressions``), and the
model file they are saved in (``model_archive``, opened by kind in ``model_file``). It
may import torch and numpy, never loopbreak's other parts. Nothing here touches CUDA at import
time, and the model's names load lazily.
"""

from fm_core.baseline import PopularityAffinityScorer
from fm_core.impressions import TrainingImpressions
from fm_core.scorer import Scorer
from fm_core.types import History, ItemCatalog, ScoreRequest, daypart_of

__all__ = [
    "History",
    "ItemCatalog",
    "PopularityAffinityScorer",
    "ScoreRequest",
    "Scorer",
    "TrainingImpressions",
    "daypart_of",
]

# The foundation model's names load lazily (PEP 562), so that importing fm_core for its types or
# the baseline does not import torch (~1.5 s). `from fm_core import FoundationModel` works.
_LAZY = {
    "EventContext": "fm_core.tokenize",
    "TokenBatch": "fm_core.tokenize",
    "TokenizerConfig": "fm_core.tokenize",
    "collate": "fm_core.tokenize",
    "rollup": "fm_core.tokenize",
    "sliding_windows": "fm_core.tokenize",
    "tokenize_histories": "fm_core.tokenize",
    "tokenize_requests": "fm_core.tokenize",
    "FMConfig": "fm_core.model",
    "FoundationModel": "fm_core.model",
    "TrainConfig": "fm_core.train_fm",
    "train_fm": "fm_core.train_fm",
    "load_checkpoint": "fm_core.checkpoint",
    "save_checkpoint": "fm_core.checkpoint",
    "evaluate_next_item": "fm_core.fm_eval",
    "autocast_context": "fm_core.device",
    "select_device": "fm_core.device",
    "WarmStartReport": "fm_core.warm_start",
    "warm_start_from": "fm_core.warm_start",
    "ItemEmbeddings": "fm_core.alignment",
    "export_item_embeddings": "fm_core.alignment",
    "load_item_embeddings": "fm_core.alignment",
    "procrustes_rotation": "fm_core.alignment",
    "save_item_embeddings": "fm_core.alignment",
    "Ranker": "fm_core.ranker",
    "RankerConfig": "fm_core.ranker",
    "CrossDeepNetwork": "fm_core.ranker",
    "RankerRewardModel": "fm_core.reward_classifier",
    "Calibrator": "fm_core.calibration",
    "expected_calibration_error": "fm_core.calibration",
    "fit_calibrator": "fm_core.calibration",
    "reliability_table": "fm_core.calibration",
    "FMRankerScorer": "fm_core.fm_scorer",
    "FMScorerConfig": "fm_core.fm_scorer_fit",
    "fit_fm_scorer": "fm_core.fm_scorer_fit",
    "load_scorer_file": "fm_core.model_file",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fm_core' has no attribute {name!r}")
