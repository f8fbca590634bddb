"""What the fine-tuning and zero-shot models share: resolve an encoder spec to a Hugging Face model
folder, load it, freeze its first layers, and save a fine-tuned copy into the run so that it can be
used as a feature encoder (`hf:RUN/encoder`, or `finetuned:RUN`)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from emofuse.features.encoders.hf import ENCODER_DIR, finetuned_folder  # noqa: F401  (models -> features, one way)


def hf_folder(spec: str) -> Path:
    """A local HF model folder for a built-in encoder name ('minilm'), 'hf:<id-or-folder>', a bare
    folder or hub id, or 'finetuned:RUN' (a run's fine-tuned encoder). Encoder options after '@' are
    not allowed here: the model's own config says how it is used."""
    from emofuse.features.encoders.hf import HFEncoder, build_encoder
    from emofuse.features.encoders.loading import resolve_folder
    from emofuse.registry import ENCODERS

    if spec.startswith("hf:"):
        return resolve_folder(spec[3:])
    if spec.startswith("finetuned:"):
        return finetuned_folder(spec[len("finetuned:"):])
    if spec in ENCODERS:
        enc = build_encoder(spec)
        if not isinstance(enc, HFEncoder):
            raise ValueError(f"encoder {spec!r} is not a Hugging Face model, so it cannot be fine-tuned; "
                             "use hf:<id-or-folder> or a transformers-based built-in such as minilm")
        return enc.folder
    return resolve_folder(spec)


class _Quiet:
    """transformers without its progress bars and load report (we fine-tune: a missing head is normal)."""

    def __enter__(self):
        from transformers.utils import logging as tf_logging

        self.bar, self.level = tf_logging.is_progress_bar_enabled(), tf_logging.get_verbosity()
        tf_logging.disable_progress_bar()
        tf_logging.set_verbosity_error()

    def __exit__(self, *exc):
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity(self.level)
        if self.bar:
            tf_logging.enable_progress_bar()


def quiet_from_pretrained(cls, folder: Path, **kw):
    """from_pretrained, quietly, in training mode (from_pretrained returns the model in eval mode,
    which would switch dropout off while fine-tuning)."""
    with _Quiet():
        return cls.from_pretrained(folder, **kw).train()


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the longest nn.ModuleList whose length is the config's layer count."""
    n = int(getattr(model.config, "num_hidden_layers", 0))
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not stacks:
        raise ValueError(f"cannot find the {n} transformer layers of {type(model).__name__}")
    return stacks[0]


def freeze_first_layers(model: nn.Module, k: int) -> int:
    """Freeze every parameter that comes before transformer layer `k` (the embeddings, or the
    convolutional feature encoder of speech models, and layers 0..k-1); k < 0 freezes everything.
    Returns the number of frozen parameters."""
    if k == 0:
        return 0
    params = list(model.named_parameters())
    if k < 0:
        stop = len(params)
    else:
        layers = layer_stack(model)
        if k > len(layers):
            raise ValueError(f"freeze_layers={k} but the model has {len(layers)} layers")
        if k == len(layers):
            last = {id(p) for p in layers[-1].parameters()}
            stop = max(i for i, (_, p) in enumerate(params) if id(p) in last) + 1
        else:
            first = {id(p) for p in layers[k].parameters()}
            stop = min(i for i, (_, p) in enumerate(params) if id(p) in first)
    n = 0
    for _, p in params[:stop]:
        p.requires_grad_(False)
        n += p.numel()
    return n


def save_encoder(backbone, processor, folder: Path, source: str, info: dict | None = None) -> Path:
    """save_pretrained the backbone and its tokenizer / feature extractor into `folder`, with a note
    of where it came from (emofuse_finetune.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    with _Quiet():
        backbone.save_pretrained(folder)
        processor.save_pretrained(folder)
    (folder / "emofuse_finetune.json").write_text(json.dumps({"base": source, **(info or {})}, indent=2))
    return folder
