"""CLIP zero-shot video emotion: no training. Every Nth frame's face crop (data.raw.every_n, 10 by
default) is scored against text prompts per emotion ("a photo of a {emotion} face"); each frame's
softmax over the emotions is averaged over the clip with weights, giving the clip's probabilities.

Frame weights: "face" weighs the frames where the face detector found a face (OpenCV's Haar cascade
gives no graded score, so the confidence is found / not found), falling back to every frame when
none has a face; "uniform" weighs every sampled frame the same. A clip without video gets the
uniform distribution. Several prompts per emotion are averaged in CLIP's embedding space (prompt
ensembling, as in the CLIP paper).

It has nothing to train, so the loop goes straight to validation and test; its run directory has
the predictions that late fusion of runs (training/late_runs.py) combines with the other
modalities. Only the prompt embeddings are saved in model.safetensors: CLIP itself is rebuilt from
`model` (a hub id or folder)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import EmotionModel
from emofuse.models.hf_backbone import hf_folder, quiet_from_pretrained
from emofuse.registry import MODELS

# Class names as they read in "a photo of a {emotion} face"; labels not listed are used as they are.
ADJECTIVES = {
    "joy": "happy", "happiness": "happy", "anger": "angry", "sadness": "sad", "surprise": "surprised",
    "disgust": "disgusted", "fear": "fearful", "worry": "worried", "contempt": "contemptuous",
}


class ClipZeroShotConfig(StrictConfig):
    model: str  # hf:<id-or-folder> of a CLIP checkpoint with both towers (e.g. openai/clip-vit-base-patch32)
    label_set: str | None = None  # the run's label set by name (meld7, mer6, ...): the classes prompted for
    classes: list[str] | None = None  # or the classes themselves, in the label set's order
    class_names: dict[str, str] = {}  # class -> the word used in the prompts (default: ADJECTIVES, else the class)
    prompts: list[str] = ["a photo of a {emotion} face"]  # "{emotion}" is replaced by the class word
    frame_weights: Literal["face", "uniform"] = "face"
    frames_per_pass: int = 64  # frames per CLIP forward pass (memory bound)


@MODELS.register("clip_zeroshot")
class ClipZeroShot(EmotionModel):
    Config = ClipZeroShotConfig
    raw_inputs = True  # the loop gives face crops of every Nth frame (data/raw.py)

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: ClipZeroShotConfig):
        super().__init__(in_dims, n_classes, cfg)
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if list(in_dims) != ["video"]:
            raise ValueError(f"clip_zeroshot reads video only: set data.features to {{video: raw}}, not {sorted(in_dims)}")
        if (cfg.label_set is None) == (cfg.classes is None):
            raise ValueError("clip_zeroshot needs the classes to prompt for: give label_set (e.g. meld7) or classes")
        if cfg.label_set is not None:
            from emofuse.labels import get_label_set

            classes = list(get_label_set(cfg.label_set).classes)
        else:
            classes = list(cfg.classes)
        if len(classes) != n_classes:
            raise ValueError(f"clip_zeroshot: {len(classes)} classes to prompt for ({', '.join(classes)}) but the "
                             f"data has {n_classes}")
        if not cfg.prompts or any("{emotion}" not in p for p in cfg.prompts):
            raise ValueError(f"every prompt needs an {{emotion}} placeholder; got {cfg.prompts}")
        self.classes = classes  # the loop checks them against the manifest's label set
        folder = hf_folder(cfg.model)
        self.clip = quiet_from_pretrained(CLIPModel, folder).eval().requires_grad_(False)
        self.processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        words = [cfg.class_names.get(c, ADJECTIVES.get(c, c)) for c in classes]
        self.prompt_texts = [[p.format(emotion=w) for p in cfg.prompts] for w in words]
        self.register_buffer("class_embeds", self._embed_prompts(tokenizer))  # (C, D), unit length
        # CLIP is frozen and rebuilt from `model`: keep its weights out of model.safetensors
        self.register_state_dict_post_hook(_leave_out_clip)
        self.register_load_state_dict_pre_hook(_keep_clip)

    @torch.no_grad()
    def _embed_prompts(self, tokenizer) -> torch.Tensor:
        flat = [t for texts in self.prompt_texts for t in texts]
        enc = tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
        emb = _features(self.clip.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))
        emb = nn.functional.normalize(emb.float(), dim=-1).view(len(self.prompt_texts), -1, emb.shape[-1])  # (C, P, D)
        return nn.functional.normalize(emb.mean(1), dim=-1)  # (C, D)

    @torch.no_grad()
    def frame_probs(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 face crops -> (N, C) per-frame probabilities."""
        out = []
        scale = self.clip.logit_scale.exp().float()
        for i in range(0, len(frames), self.cfg.frames_per_pass):
            chunk = list(frames[i : i + self.cfg.frames_per_pass].cpu().numpy())
            px = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            px = px.to(self.class_embeds.device, next(self.clip.parameters()).dtype)
            img = nn.functional.normalize(_features(self.clip.get_image_features(pixel_values=px)).float(), dim=-1)  # (n, D)
            out.append(torch.softmax(scale * img @ self.class_embeds.T, dim=-1))  # (n, C)
        return torch.cat(out)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        frames, mask = batch["video"], batch["video_mask"]  # (B, F, H, W, 3), (B, F)
        b, f = mask.shape
        probs = torch.zeros(b, f, self.n_classes, device=mask.device)  # (B, F, C)
        if mask.any():
            probs[mask] = self.frame_probs(frames[mask]).to(probs.dtype)
        w = mask.float()
        if self.cfg.frame_weights == "face":
            face = batch.get("video_face", mask) & mask
            has_face = face.any(1, keepdim=True)  # (B, 1)
            w = torch.where(has_face, face.float(), w)  # clips without any detected face: every frame
        n = w.sum(1, keepdim=True)  # (B, 1)
        clip_probs = torch.einsum("bf,bfc->bc", w / n.clamp(min=1e-8), probs)  # (B, C)
        clip_probs = torch.where(n > 0, clip_probs, torch.full_like(clip_probs, 1.0 / self.n_classes))
        return {"logits": torch.log(clip_probs.clamp_min(1e-8))}


def _features(out) -> torch.Tensor:
    """get_*_features gives a tensor (transformers 4) or an output whose pooler_output is it (5)."""
    return out if torch.is_tensor(out) else out.pooler_output


def _leave_out_clip(module: ClipZeroShot, state_dict: dict, prefix: str, local_metadata) -> None:
    for k in [k for k in state_dict if k.startswith(f"{prefix}clip.")]:
        del state_dict[k]


def _keep_clip(module: ClipZeroShot, state_dict: dict, prefix: str, *_) -> None:
    for name, t in module.clip.state_dict().items():
        state_dict.setdefault(f"{prefix}clip.{name}", t)
