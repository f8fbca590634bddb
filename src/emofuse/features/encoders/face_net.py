"""The face network trained here (models/finetune_face.py) as a feature encoder: `finetuned:RUN`,
where RUN is a finetune_face run (its saved RUN/encoder folder: config.json whose model_type is
emofuse-face-cnn, and model.safetensors).

Per clip: each face crop (F, H, W, 3) goes through the network (grey, resized to its input side,
with the mirror image, and faces shifted by a pixel or two, averaged in when the run evaluated so); the features are the mean over the
frames of [class probabilities (C), penultimate activations (D)], and the frame sequence of the
same. Several networks (seeds of one recipe, the same classes) make one encoder: the mean of their
probabilities, then each network's activations side by side ([C, D1, D2, ...]).
The network body lives here, below the models, so that the model and the encoder share it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.encoders.wheels import sha256_file
from emofuse.registry import ENCODERS

FACE_NET_TYPE = "emofuse-face-cnn"  # config.json's model_type of a saved network
WEIGHTS = "model.safetensors"
ASSETS = Path(__file__).resolve().parents[2] / "assets"
# the face networks the package ships (trained by `emofuse bench fer2013 -o face_net=true` with training
# seeds 0, 1 and 2 on the same folds, then each 5 epochs more with its weights averaged, train.swa_epochs;
# see the README's "Where the weights come from"): the default model's face expert averages them
SHIPPED = ASSETS / "face-net"
SHIPPED_NETS = (SHIPPED, ASSETS / "face-net-seed1", ASSETS / "face-net-seed2")


class FaceNet(nn.Module):
    """A VGG-style body for small grey faces and its classifier: (N, 1, S, S) centred grey -> (N, C)
    logits. `blocks` stages of two 3x3 conv + BN + ReLU and a 2x2 max-pool, widths doubling from
    `width`; global average pool; dropout; linear. `features` gives the pooled (N, D) vector."""

    def __init__(self, n_classes: int, width: int = 32, blocks: int = 4, dropout: float = 0.4):
        super().__init__()
        layers, c_in = [], 1
        for b in range(blocks):
            c = width * 2 ** b
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.dim = c_in
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.features(x)))  # (N, C)


def to_grey(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 1, size, size) float, centred: (x / 255 - 0.5) / 0.25."""
    rgb = frames.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    grey = (rgb * torch.tensor([0.299, 0.587, 0.114], device=rgb.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if grey.shape[-1] != size or grey.shape[-2] != size:
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (grey - 0.5) / 0.25


def tta_views(x: torch.Tensor, *, flip: bool = True, shift: int = 0) -> list[torch.Tensor]:
    """Test-time views of a batch of faces (N, C, S, S): the face itself; with `shift` > 0, the face moved by
    `shift` pixels left, right, up and down (the vacated border repeats the edge); with `flip`, the
    mirror image of each of those. 1, 2, 5 or 10 views, each of the batch's shape."""
    views = [x]
    if shift > 0:
        s = int(shift)
        pad = F.pad(x, (s, s, s, s), mode="replicate")
        n = x.shape[-1]
        for dy, dx in ((0, -s), (0, s), (-s, 0), (s, 0)):  # the face moves right, left, down, up
            views.append(pad[..., s + dy:s + dy + n, s + dx:s + dx + n])
    if flip:
        views += [v.flip(-1) for v in views]
    return views


def save_face_net(net: FaceNet, folder: Path, *, size: int, width: int, blocks: int, tta_flip: bool,
                  classes: list[str] | None = None, tta_shift: int = 0) -> Path:
    """Write the network as an encoder folder: config.json + model.safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"model_type": FACE_NET_TYPE, "n_classes": net.classifier.out_features, "size": size, "width": width,
         "blocks": blocks, "tta_flip": tta_flip, **({"tta_shift": int(tta_shift)} if tta_shift else {}),
         **({"classes": list(classes)} if classes else {})}, indent=2))
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS))
    return folder


def load_face_net(folder: str | Path) -> tuple[FaceNet, dict]:
    """A saved network folder (config.json + model.safetensors) -> (the network in eval mode, its config)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (a face network folder: a finetune_face run's encoder/, "
                                "or the package's assets/face-net)")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") != FACE_NET_TYPE:
        raise ValueError(f"{folder}: not a face network (model_type {cfg.get('model_type')!r})")
    net = FaceNet(int(cfg["n_classes"]), int(cfg["width"]), int(cfg["blocks"])).eval()
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    return net, cfg


class FaceNetEncoder(Encoder):
    """One saved face network, or several averaged, as a video encoder (see the module docstring)."""

    modality = "video"
    gives_sequence = True

    def __init__(self, folder: str | Path | list[str | Path] | tuple[str | Path, ...], *, name: str | None = None,
                 tta_flip: bool | None = None, tta_shift: int | None = None, batch: int = 256):
        folders = [Path(f) for f in (folder if isinstance(folder, (list, tuple)) else [folder])]
        if not folders:
            raise ValueError("no face network folder given")
        self.folders, self.nets, cfgs = folders, [], []
        for f in folders:
            net, cfg = load_face_net(f)
            self.nets.append(net)
            cfgs.append(cfg)
        for f, cfg in zip(folders[1:], cfgs[1:]):
            if (cfg["n_classes"], cfg["size"], cfg.get("classes")) != (cfgs[0]["n_classes"], cfgs[0]["size"],
                                                                         cfgs[0].get("classes")):
                raise ValueError(f"{f}: its classes or input size differ from {folders[0]}'s; networks averaged "
                                 "as one encoder must answer the same question")
        self.folder, self.cfg, self.cfgs = folders[0], cfgs[0], cfgs
        self.size = int(self.cfg["size"])
        self.tta_flip = bool(self.cfg.get("tta_flip", True) if tta_flip is None else tta_flip)
        self.tta_shift = int(self.cfg.get("tta_shift", 0) if tta_shift is None else tta_shift)
        if self.tta_shift < 0 or self.tta_shift >= self.size // 2:
            raise ValueError(f"tta_shift must be 0 to {self.size // 2 - 1} pixels, not {self.tta_shift}")
        self.batch = int(batch)
        self.name = name or f"facenet-{self.folder.resolve().parent.name}"
        self.n_classes = int(self.cfg["n_classes"])
        self.dim = self.n_classes + sum(n.dim for n in self.nets)

    def config(self) -> dict[str, Any]:
        def one(cfg: dict) -> dict:
            return {"size": self.size, "width": cfg["width"], "blocks": cfg["blocks"], "n_classes": cfg["n_classes"]}

        return {"encoder": FACE_NET_TYPE, **one(self.cfg), "tta_flip": self.tta_flip,
                **({"tta_shift": self.tta_shift} if self.tta_shift else {}),  # an old cache key stays valid without shifts
                **({"networks": [one(c) for c in self.cfgs]} if len(self.nets) > 1 else {})}

    def weights_digest(self) -> str:
        digests = [sha256_file(f / WEIGHTS) for f in self.folders]
        return digests[0] if len(digests) == 1 else hashlib.sha256("+".join(digests).encode()).hexdigest()

    @torch.no_grad()
    def frames(self, crops: np.ndarray) -> np.ndarray:
        """(F, H, W, 3) uint8 -> (F, C + D1 + ...) float32: the class probabilities (the mean over the networks
        and the test-time views) and each network's penultimate features (the mean over the views)."""
        out = []
        for i in range(0, len(crops), self.batch):
            x = to_grey(torch.from_numpy(np.array(crops[i:i + self.batch])), self.size)  # a copy: crops may be read-only
            views = tta_views(x, flip=self.tta_flip, shift=self.tta_shift)
            probs, feats = [], []
            for net in self.nets:
                f = [net.features(v) for v in views]
                probs.append(torch.stack([torch.softmax(net.classifier(v), -1) for v in f]).mean(0))
                feats.append(torch.stack(f).mean(0))
            out.append(torch.cat([torch.stack(probs).mean(0), *feats], -1).numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode(self, items: list) -> list[Encoded | None]:
        res = []
        for crops in items:
            seq = self.frames(np.asarray(crops))
            res.append(Encoded(seq.mean(0), seq) if len(seq) else None)
        return res


@ENCODERS.register("emofuse-face")
def shipped_face_net(*, folder: str = "", tta_flip: bool | None = None, tta_shift: int | None = None,
                     batch: int = 256) -> FaceNetEncoder:
    """The face networks shipped with the package, their probabilities averaged (folder: other saved
    networks under the same name, several joined by '+', e.g. while building a model around networks
    that are not shipped yet). Its features: 7 FER2013 class probabilities (angry, disgust, fear, happy,
    sad, surprise, neutral) and each network's pooled activations."""
    where = [Path(f) for f in folder.split("+") if f.strip()] if folder else list(SHIPPED_NETS)
    for w in where:
        if not (w / "config.json").is_file():
            raise FileNotFoundError(f"no face network at {w}: the package ships none, or it was removed; train one "
                                    "with `emofuse bench fer2013 -o face_net=true` and pass its RUN/encoder folder")
    return FaceNetEncoder(where, name="emofuse-face", tta_flip=tta_flip, tta_shift=tta_shift, batch=batch)
