"""emofuse: multimodal emotion recognition — corpora, feature bank, fusion models, one training loop.

The CLI verbs are importable functions:
    from emofuse import prepare, extract, train_run, run_demo, make_demo_corpus, build_encoder
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "prepare": "emofuse.corpora.base",
    "Manifest": "emofuse.corpora.base",
    "make_demo_corpus": "emofuse.corpora.demo",
    "extract": "emofuse.features.extract",
    "build_encoder": "emofuse.features.encoders.hf",
    "load_features": "emofuse.features.cache",
    "train_run": "emofuse.training.run",
    "run_demo": "emofuse.pipeline",
    "RunConfig": "emofuse.config",
    "load_config": "emofuse.config",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    # heavy imports (torch, transformers) only when a function is used
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emofuse' has no attribute {name!r}")
