"""What every model is: the contract the training loop, the bundles and the reports rely on.

A model is built from the input dims per modality, the number of classes and its typed config; it
takes a dict batch keyed by modality (with `<modality>_mask`) and returns a dict with `logits` (B, C)
and, where it has them, per-sample `weights` (B, M) over `weight_names` and Top-N `selected` indices
into `candidate_names`. Everything else a model may do is one of the hooks below, each with a
default that does nothing, so that the loop calls them on every model and never probes for them:

- `raw_inputs`: the loop gives the media themselves (data/raw.py) instead of cached features.
- `classes`: a zero-shot model's own class list, checked against the manifest's before training.
- `weight_names`, `candidate_names`: the names of the `weights` columns and of the Top-N candidates.
- `input_lengths(ds)`: each row's size, so that training batches rows of similar sizes and evaluation
  runs them in size order (little padding); by default the dataset's own measure.
- `param_groups(lr)`: the optimiser's parameter groups (LoRA adapters apart from a head, say).
- `fit_validation(batches)`: after the fit, parameters fitted on the validation rows (late-fusion
  weights, temperatures); returns what it fitted, for the run's metrics.
- `save_artifacts(unit_dir)`: files beside the weights (a fine-tuned encoder, for use as a feature
  encoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from emofuse.config import StrictConfig


class EmotionModel(nn.Module):
    Config: ClassVar[type[StrictConfig]]
    raw_inputs: ClassVar[bool] = False  # True: batches hold the media (text, waveforms, face crops)
    classes: list[str] | None = None  # a zero-shot model's own classes, in its output order
    candidate_names: list[str] | None = None  # the Top-N candidates `selected` indexes (llama_topn)

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: StrictConfig):
        super().__init__()
        self.in_dims = dict(in_dims)
        self.modalities = sorted(in_dims)
        self.n_classes = n_classes
        self.cfg = cfg
        self.weight_names: list[str] = self.modalities  # the columns of out["weights"], where given

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_lengths(self, ds) -> list[int] | None:
        """Each row's size, for batches of similar sizes: by default the dataset's `lengths()`
        (characters of raw text; None for features, which batch as they come)."""
        return ds.lengths()

    def param_groups(self, lr: float) -> list[dict]:
        """The optimiser's parameter groups: by default one, every trainable parameter."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def prepare_fit(self) -> None:
        """Called by the training loop once, before the fit, never when a saved run is loaded (predict,
        export): e.g. initial weights read from another file, which a loaded run no longer needs."""

    def fit_validation(self, batches) -> dict:
        """Called once after the fit, in eval mode, with the validation loader (not after a refit,
        whose validation rows were trained on): fit what is fitted on validation and return it."""
        return {}

    def save_artifacts(self, unit_dir: Path, classes: list[str] | None = None) -> None:
        """Write files beside model.safetensors in the unit's folder (classes: the label set's names, in
        output order); by default none."""


def presence(batch: dict, modality: str) -> torch.Tensor:
    """(B,) bool: whether each sample has this modality (any valid frame for sequences)."""
    mask = batch[f"{modality}_mask"]
    return mask if mask.dim() == 1 else mask.any(dim=-1)


def masked_scores(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Scores with the positions not kept set to the lowest value of the scores' *own* dtype, so a
    softmax ignores them. Under mixed precision the scores may be bf16/fp16 while the tensors around
    them are fp32: fp32's minimum does not fit in fp16 and masked_fill then raises on a GPU."""
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


class AttentionPool(nn.Module):
    """Masked attention pooling over a sequence: (B, T, D) -> (B, D)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = masked_scores(self.score(x).squeeze(-1), mask)  # (B, T)
        w = torch.softmax(s, dim=-1) * mask  # all-masked rows give zeros, not NaN
        return torch.einsum("bt,btd->bd", w, x)


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


def member_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B, M, C) logits of a model made of one member per input: `model.norm[k]`, `model.pool[k]`
    (for frame sequences) and `model.members[k]` over `model.modalities` (late fusion, ensemble)."""
    out = []
    for k in model.modalities:
        x = model.norm[k](batch[k])  # (B, D) or (B, T, D)
        if x.dim() == 3:
            x = model.pool[k](x, batch[f"{k}_mask"])
        out.append(model.members[k](x))
    return torch.stack(out, dim=1)
