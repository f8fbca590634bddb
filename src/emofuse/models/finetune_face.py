"""A facial-expression network trained end to end on face crops: a VGG-style convolutional body
for small grey faces (48x48 by default, FER2013's size), written in plain torch.

    face crops (B, F, H, W, 3) uint8 -> grey, resized to `size`, centred
      -> [augmentation, training only] -> `blocks` stages of two 3x3 conv + BN + ReLU, max-pool
      -> global average pool -> dropout -> linear -> per-frame logits -> mean over the valid frames

It reads raw faces (data.features = {video: raw}; face images such as FER2013's are used whole and
kept in memory once decoded, data/raw.py; video clips give the face crops of every Nth frame).
Widths double per stage from `width` (32: 32, 64, 128, 256 channels, 1.2M parameters).

Augmentation runs on the batch tensor, on the training device, from torch's generator (seeded by the
loop, so the same seed gives the same batches): a random affine per face (zoom, shift, rotation,
horizontal flip; one `grid_sample` for the batch) and random erasing of a rectangle. Evaluation may
average the face and its mirror image (`tta_flip`), and the face moved by `tta_shift` pixels each way.

The run saves the network as a face encoder folder (RUN/encoder: config.json + model.safetensors),
so that `finetuned:RUN` gives its class probabilities and penultimate features as video features for
the fusion models (features/encoders/face_net.py, which holds the network body)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from emofuse.config import StrictConfig
from emofuse.features.encoders.face_net import FaceNet, load_face_net, save_face_net, to_grey, tta_views  # models -> features, one way
from emofuse.models.base import EmotionModel
from emofuse.registry import MODELS

ENCODER_DIR = "encoder"


class FinetuneFaceConfig(StrictConfig):
    size: int = Field(48, ge=16)  # side of the grey face the network sees
    width: int = Field(32, ge=4)  # channels of the first stage; doubled per stage
    blocks: int = Field(4, ge=1, le=6)  # stages (each halves the resolution)
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    # augmentation (training only)
    flip: bool = True  # mirror half of the faces
    zoom: float = Field(0.15, ge=0.0, lt=1.0)  # scale in [1 - zoom, 1 + zoom] (a random crop and resize)
    shift: float = Field(0.1, ge=0.0, lt=1.0)  # translation, fraction of the side
    rotate: float = Field(10.0, ge=0.0, le=180.0)  # degrees, either way
    erase: float = Field(0.5, ge=0.0, le=1.0)  # probability of erasing one rectangle (2-20 % of the face)
    tta_flip: bool = True  # evaluation: mean of the logits of the face and its mirror image
    tta_shift: int = Field(0, ge=0, le=8)  # evaluation: also the face moved this many pixels each way (x5 views)
    # a saved face network folder (a run's encoder/, or assets/face-net) whose weights start the training:
    # a trained network trained further (weight averaging, train.swa_epochs), or moved to another corpus.
    # Its size, width and blocks must be these; its classes, where it names them, the manifest's.
    init: str = ""


def augment(x: torch.Tensor, *, flip: bool = True, zoom: float = 0.15, shift: float = 0.1, rotate: float = 10.0,
            erase: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random views of a batch of faces (N, C, S, S) float: same shape and dtype. Draws from
    `generator` (torch's default when None), on the batch's device."""
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float, *shape) -> torch.Tensor:
        r = torch.rand(*(shape or (n,)), generator=generator, device=generator.device if generator else dev)
        return (lo + (hi - lo) * r).to(dev, torch.float32)

    angle = u(-rotate, rotate) * (math.pi / 180)
    scale = u(1 - zoom, 1 + zoom)
    tx, ty = u(-shift, shift) * 2, u(-shift, shift) * 2  # affine_grid's coordinates span [-1, 1]
    mirror = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], -1),
                         torch.stack([sin * mirror, cos, ty], -1)], 1)  # (N, 2, 3): output -> input coordinates
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if erase > 0:
        s = x.shape[-1]
        area = u(0.02, 0.2) * s * s
        ratio = torch.exp(u(math.log(0.3), math.log(3.3)))
        h = torch.sqrt(area * ratio).clamp(1, s)
        w = torch.sqrt(area / ratio).clamp(1, s)
        top, left = u(0, 1) * (s - h), u(0, 1) * (s - w)
        keep = u(0, 1) < erase  # (N,) which faces lose a rectangle
        pos = torch.arange(s, device=dev, dtype=torch.float32)
        rows = (pos[None] >= top[:, None]) & (pos[None] < (top + h)[:, None])  # (N, S)
        cols = (pos[None] >= left[:, None]) & (pos[None] < (left + w)[:, None])  # (N, S)
        box = (rows[:, :, None] & cols[:, None, :] & keep[:, None, None]).unsqueeze(1)  # (N, 1, S, S)
        out = out.masked_fill(box, 0.0)  # 0: the mean grey after centring
    return out


@MODELS.register("finetune_face")
class FinetuneFace(EmotionModel):
    Config = FinetuneFaceConfig
    raw_inputs = True  # the loop gives face crops (data/raw.py), not cached features

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: FinetuneFaceConfig):
        super().__init__(in_dims, n_classes, cfg)
        if list(in_dims) != ["video"]:
            raise ValueError(f"finetune_face reads faces only: set data.features to {{video: raw}}, not {sorted(in_dims)}")
        self.net = FaceNet(n_classes, cfg.width, cfg.blocks, cfg.dropout)

    def prepare_fit(self) -> None:
        """init: the saved network's weights, before training (a loaded run has its own and never reads init)."""
        if not self.cfg.init:
            return
        folder = self.cfg.init
        net, saved = load_face_net(folder)
        c = self.cfg
        mine = {"size": c.size, "width": c.width, "blocks": c.blocks, "n_classes": self.n_classes}
        theirs = {k: int(saved[k]) for k in mine}
        if theirs != mine:
            raise ValueError(f"finetune_face init {folder}: the saved network has {theirs}, this model {mine}; "
                             "set model.params to the saved network's size, width and blocks")
        self.classes = saved.get("classes")  # where it names them: the loop checks them against the manifest's
        self.net.load_state_dict(net.state_dict())

    def frame_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 faces -> (N, C) logits; augmented in training, mirrored too in evaluation
        with tta_flip."""
        c = self.cfg
        x = to_grey(frames, c.size)
        if self.training:
            x = augment(x, flip=c.flip, zoom=c.zoom, shift=c.shift, rotate=c.rotate, erase=c.erase)
            return self.net(x)
        views = tta_views(x, flip=c.tta_flip, shift=c.tta_shift)
        return torch.stack([self.net(v) for v in views]).mean(0)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        video, mask = batch["video"], batch["video_mask"]  # (B, F, H, W, 3) uint8, (B, F) bool
        b, f = mask.shape
        flat = mask.reshape(-1)
        logits = video.new_zeros((b * f, self.n_classes), dtype=torch.float32)
        if flat.any():  # only the valid frames go through the network
            logits[flat] = self.frame_logits(video.reshape(b * f, *video.shape[2:])[flat]).float()
        m = mask.to(logits.dtype).unsqueeze(-1)  # (B, F, 1)
        pooled = (logits.view(b, f, -1) * m).sum(1) / m.sum(1).clamp(min=1)  # (B, C); no face: zeros (uniform)
        return {"logits": pooled}

    def save_artifacts(self, unit_dir: Path, classes: list[str] | None = None) -> None:
        """The network as a face encoder folder (finetuned:RUN): config.json (with the class names, so the
        folder alone says what it predicts) + model.safetensors."""
        c = self.cfg
        save_face_net(self.net, Path(unit_dir) / ENCODER_DIR, size=c.size, width=c.width, blocks=c.blocks,
                      tta_flip=c.tta_flip, tta_shift=c.tta_shift, classes=classes)
