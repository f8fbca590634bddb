"""A Hugging Face speech encoder (wav2vec2, HuBERT, WavLM, by id or folder) fine-tuned end to end on
raw 16 kHz waveforms as a unimodal emotion classifier: waveform -> encoder -> mean over the valid
frames -> dropout -> linear.

It reads raw audio (data.features = {audio: raw}; clips are cut to data.raw.max_audio_s). The
convolutional feature encoder stays frozen by default, as in the wav2vec2 fine-tuning recipe: it is
a third of the compute and learns nothing useful from a few thousand labelled clips. After training
the fine-tuned encoder and its feature extractor are saved in the run (RUN/encoder)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import EmotionModel
from emofuse.models.hf_backbone import ENCODER_DIR, freeze_first_layers, hf_folder, quiet_from_pretrained, save_encoder
from emofuse.registry import MODELS

MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: more than the conv front end's receptive field (400 in wav2vec2)


class FinetuneAudioConfig(StrictConfig):
    encoder: str  # hf:<id-or-folder> of a wav2vec2 / HuBERT / WavLM checkpoint, or finetuned:RUN
    freeze_feature_encoder: bool = True
    freeze_layers: int = 0  # freeze the feature encoder + projection and the first K layers; -1: all
    dropout: float = 0.1
    gradient_checkpointing: bool = False


@MODELS.register("finetune_audio")
class FinetuneAudio(EmotionModel):
    Config = FinetuneAudioConfig
    raw_inputs = True  # the loop gives raw waveforms (data/raw.py), not cached features

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: FinetuneAudioConfig):
        super().__init__(in_dims, n_classes, cfg)
        from transformers import AutoFeatureExtractor, AutoModel

        if list(in_dims) != ["audio"]:
            raise ValueError(f"finetune_audio reads audio only: set data.features to {{audio: raw}}, not {sorted(in_dims)}")
        self.folder = hf_folder(cfg.encoder)
        self.backbone = quiet_from_pretrained(AutoModel, self.folder)
        if not hasattr(self.backbone, "_get_feat_extract_output_lengths"):
            raise ValueError(f"{cfg.encoder}: not a speech encoder of the wav2vec2 family "
                             f"(model_type {self.backbone.config.model_type!r})")
        # SpecAugment-style masking is part of pre-training; with a few thousand clips it only adds noise
        for key in ("mask_time_prob", "mask_feature_prob"):
            if hasattr(self.backbone.config, key):
                setattr(self.backbone.config, key, 0.0)
        if getattr(self.backbone, "masked_spec_embed", None) is not None:  # the mask token: unused without masking
            self.backbone.masked_spec_embed.requires_grad_(False)
        if cfg.gradient_checkpointing:
            self.backbone.gradient_checkpointing_enable()
        self.extractor = AutoFeatureExtractor.from_pretrained(self.folder)
        if cfg.freeze_feature_encoder:
            self.backbone.feature_extractor.requires_grad_(False)
        self.frozen = freeze_first_layers(self.backbone, cfg.freeze_layers)
        hidden = int(self.backbone.config.hidden_size)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, n_classes))

    def encode(self, batch: dict) -> torch.Tensor:
        wave, mask = batch["audio"], batch["audio_mask"]  # (B, S), (B, S)
        if wave.shape[1] < MIN_SAMPLES:  # a batch of absent or very short clips
            pad = MIN_SAMPLES - wave.shape[1]
            wave, mask = nn.functional.pad(wave, (0, pad)), nn.functional.pad(mask, (0, pad))
        lengths = mask.sum(1)  # (B,) valid samples
        if getattr(self.extractor, "do_normalize", False):
            # zero mean, unit variance per clip over its valid samples, as the feature extractor does
            m = mask.to(wave.dtype)
            n = lengths.clamp(min=1).unsqueeze(1).to(wave.dtype)
            mean = (wave * m).sum(1, keepdim=True) / n
            var = (((wave - mean) * m) ** 2).sum(1, keepdim=True) / n
            wave = (wave - mean) / torch.sqrt(var + 1e-7) * m
        kw = {}
        if getattr(self.extractor, "return_attention_mask", False):
            kw["attention_mask"] = mask.long()
        # (group-norm models such as wav2vec2-base take no mask; their padding is zeros, as in training)
        states = self.backbone(wave, **kw).last_hidden_state  # (B, T, D)
        frames = self.backbone._get_feat_extract_output_lengths(lengths).clamp(min=1, max=states.shape[1])  # (B,)
        valid = torch.arange(states.shape[1], device=states.device)[None, :] < frames[:, None]  # (B, T)
        v = valid.unsqueeze(-1).to(states.dtype)
        return (states * v).sum(1) / v.sum(1).clamp(min=1)  # (B, D)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.encode(batch)).float()}  # (B, C)

    def save_artifacts(self, unit_dir: Path, classes: list[str] | None = None) -> None:
        save_encoder(self.backbone, self.extractor, Path(unit_dir) / ENCODER_DIR, self.cfg.encoder,
                     {"model": "finetune_audio"})
