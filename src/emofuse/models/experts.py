"""A product of calibrated experts: one expert per modality, each made of members (one per input),
fused by a weighted product over the modalities a clip has. What the default model (emofuse-base)
is, and what any run can train on its own inputs.

    member k (an input):   z_k = W_k x_k + b_k        (kind linear: logistic regression on the input)
                           z_k = log x_k[columns]     (kind probs: an input that holds a classifier's
                                                       class probabilities, e.g. a face network's)
                           lp_k = log_softmax(z_k / T_k)
    expert m (a modality): lp_m = log_softmax(sum_k w_k lp_k / T_m)     over its members present
    fused:                 log_softmax(sum_m a_m lp_m / T)              over the modalities present

A modality a clip lacks drops out of the product (its weight is 0 for that clip). Linear members
train on their own cross-entropy (aux_logits, as late fusion's members do). Every temperature and
weight is fitted on validation afterwards (`fit_validation`, models.late.fit_fusion: temperatures,
then weights pulled towards equal by cross-validated shrinkage): with `fit: all` the members of each
expert and then the experts; with `fit: modalities` only the experts' weights and temperatures
(the members kept as they are: how the default model's experts, each trained and calibrated on its
own corpora, are fused on another set's validation split).

Inputs of kind probs must reach the model as extracted: set data.standardise to none for them."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import EmotionModel, presence
from emofuse.models.late import combine_torch
from emofuse.registry import MODELS


class MemberConfig(StrictConfig):
    input: str  # the input key, e.g. "audio:whisper-base" (or "audio" for a single encoder)
    kind: Literal["linear", "probs"] = "linear"
    # probs: the input's column holding each class's probability, in the label set's class order
    columns: list[int] = Field(default_factory=list)


class ExpertsConfig(StrictConfig):
    experts: dict[str, list[MemberConfig]]  # modality -> its members
    fit: Literal["all", "modalities", "none"] = "all"  # what fit_validation fits (see the module docstring)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on a linear member's input while training


class Member(nn.Module):
    def __init__(self, dim: int, n_classes: int, cfg: MemberConfig, dropout: float):
        super().__init__()
        self.kind = cfg.kind
        if cfg.kind == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes))
        else:
            if len(cfg.columns) != n_classes or not all(0 <= c < dim for c in cfg.columns):
                raise ValueError(f"experts: member {cfg.input!r} of kind probs needs {n_classes} columns of its "
                                 f"{dim}-d input, one per class; got {cfg.columns}")
            self.register_buffer("columns", torch.tensor(cfg.columns, dtype=torch.long))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("weight", torch.ones(()))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C), before the temperature."""
        if self.kind == "linear":
            return self.head(x).float()
        return torch.log(x.float()[:, self.columns].clamp_min(1e-6))


class Gate(nn.Module):
    """An expert's (a modality's) weight and temperature in the product."""

    def __init__(self):
        super().__init__()
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("weight", torch.ones(()))


def _key(name: str) -> str:
    return name.replace(":", "__").replace(".", "_")  # ModuleDict keys cannot hold '.'


@MODELS.register("experts")
class Experts(EmotionModel):
    Config = ExpertsConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: ExpertsConfig):
        super().__init__(in_dims, n_classes, cfg)
        named = [m.input for ms in cfg.experts.values() for m in ms]
        missing = sorted(set(named) - set(in_dims))
        if missing or len(set(named)) != len(named) or not named:
            raise ValueError(f"experts: members {named} must name distinct inputs among {sorted(in_dims)}"
                             + (f"; not inputs: {missing}" if missing else ""))
        wrong = [m.input for mod, ms in cfg.experts.items() for m in ms if m.input.split(":")[0] != mod]
        if wrong:
            raise ValueError(f"experts: members {wrong} are listed under another modality than their own")
        self.expert_names = list(cfg.experts)  # modality order: the fused weights' order
        self.weight_names = self.expert_names
        self.member_inputs = {mod: [m.input for m in ms] for mod, ms in cfg.experts.items()}
        self.members = nn.ModuleDict({_key(m.input): Member(in_dims[m.input], n_classes, m, cfg.dropout)
                                      for ms in cfg.experts.values() for m in ms})
        self.gates = nn.ModuleDict({mod: Gate() for mod in cfg.experts})
        self.register_buffer("fused_temperature", torch.ones(()))

    # -- the product ------------------------------------------------------------------------

    def _member_logits(self, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """input -> ((B, C) logits before temperature, (B,) presence)."""
        return {k: (self.members[_key(k)].logits(batch[k]), presence(batch, k))
                for ks in self.member_inputs.values() for k in ks}

    def _expert(self, mod: str, z: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) log-probabilities of one expert over its present members, and its (B,) presence."""
        ks = self.member_inputs[mod]
        lp = torch.stack([torch.log_softmax(z[k][0] / self.members[_key(k)].temperature, -1) for k in ks], 1)
        present = torch.stack([z[k][1] for k in ks], 1)  # (B, K)
        w = torch.stack([self.members[_key(k)].weight for k in ks])
        fused, _ = combine_torch(lp, w, present.to(lp.dtype), "product")
        return torch.log_softmax(fused / self.gates[mod].temperature, -1), present.any(1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        z = self._member_logits(batch)
        experts = [self._expert(mod, z) for mod in self.expert_names]
        lp = torch.stack([e[0] for e in experts], 1)  # (B, M, C)
        present = torch.stack([e[1] for e in experts], 1).to(lp.dtype)  # (B, M)
        a = torch.stack([self.gates[mod].weight for mod in self.expert_names])
        fused, w = combine_torch(lp, a, present, "product")
        out = {"logits": torch.log_softmax(fused / self.fused_temperature, -1), "weights": w / w.sum(1, keepdim=True).clamp_min(1e-12)}
        linear = [k for ks in self.member_inputs.values() for k in ks if self.members[_key(k)].kind == "linear"]
        if linear:  # each linear member learns on its own cross-entropy, over the rows that have its input
            out["aux_logits"] = torch.stack([z[k][0] for k in linear], 1)  # (B, L, C)
            out["aux_mask"] = torch.stack([z[k][1] for k in linear], 1)  # (B, L)
        return out

    # -- fitted on validation ---------------------------------------------------------------

    @torch.no_grad()
    def fit_validation(self, loader) -> dict:
        """Temperatures and weights on the validation rows (see the module docstring)."""
        from emofuse.models.late import fit_fusion

        if self.cfg.fit == "none":
            return {}
        self.eval()
        zs, labels = {}, []
        device = next((b.device for b in self.buffers()), torch.device("cpu"))
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            for k, (logit, pres) in self._member_logits(batch).items():
                zs.setdefault(k, ([], []))
                zs[k][0].append(torch.softmax(logit, -1).cpu().numpy())
                zs[k][1].append(pres.cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
        y = np.concatenate(labels)
        keep = y >= 0
        probs = {k: (np.concatenate(p)[keep], np.concatenate(m)[keep].astype(np.float64)) for k, (p, m) in zs.items()}
        y = y[keep]
        summary: dict = {}
        if self.cfg.fit == "all":
            for mod, ks in self.member_inputs.items():
                rows = np.stack([probs[k][1] for k in ks], 1).any(1)
                if rows.sum() < 2:
                    continue
                fusion = fit_fusion(np.stack([probs[k][0][rows] for k in ks], 1),
                                    np.stack([probs[k][1][rows] for k in ks], 1), y[rows], combine="product")
                for k, t, w in zip(ks, fusion.member_temperatures, fusion.weights):
                    self.members[_key(k)].temperature.fill_(float(t))
                    self.members[_key(k)].weight.fill_(float(w))
                self.gates[mod].temperature.fill_(float(fusion.temperature))
                summary[mod] = fusion.summary(ks)
        # the experts: their calibrated outputs, fused by weights and temperatures fitted here
        z = {k: (torch.log(torch.from_numpy(p).clamp_min(1e-12)), torch.from_numpy(m > 0)) for k, (p, m) in probs.items()}
        experts = [self._expert(mod, {k: (v[0].to(device), v[1].to(device)) for k, v in z.items()}) for mod in self.expert_names]
        ep = np.stack([torch.exp(e[0]).cpu().numpy() for e in experts], 1)  # (N, M, C)
        present = np.stack([e[1].cpu().numpy() for e in experts], 1).astype(np.float64)
        rows = present.any(1)
        if rows.sum() >= 2:
            fusion = fit_fusion(ep[rows], present[rows], y[rows], combine="product")
            for mod, t, a in zip(self.expert_names, fusion.member_temperatures, fusion.weights):
                self.gates[mod].temperature.mul_(float(t))  # log_softmax(log_softmax(x / T) / t) = log_softmax(x / (T t))
                self.gates[mod].weight.fill_(float(a))
            self.fused_temperature.fill_(float(fusion.temperature))
            summary["fused"] = fusion.summary(self.expert_names)
        return summary
