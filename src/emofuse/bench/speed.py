"""`emofuse speed`: the project's path and a plain reference loop, side by side on the same items in one
run, each printing both throughputs and, last, `ratio: X` (project ÷ plain; above 1 the project is
faster). Figures are printed, never asserted: the machines are shared and noisy.

    speed extract   --encoder ENC --manifest M [--limit N] [--device cpu|cuda]
    speed finetune  --config C --manifest M [--steps N]
    speed face      --manifest M [--n-train N] [--epochs E]   (finetune_face on face images)
    speed train     --n 10000 --epochs 100      (attention fusion on synthetic 3-modality features)
    speed video     --minutes 10                (a generated 720p clip with audio: extract + predict)

What the plain loops are (the strongest simple recipe each, so a ratio near 1 means the project adds
little over the work itself):
- extract, an `hf:`/`minilm` text encoder: the tokenizer and model straight from transformers,
  batches sorted by length, `torch.inference_mode`, mean pooling (bf16 autocast on CUDA); any other
  encoder: the same media decoding and the same encoder's `encode` on batches in file order, one
  thread, no cache (so the ratio is the pipeline's cost: threads, cache writes, bookkeeping).
- finetune: transformers' model + a linear head, tokenised once, length-grouped batches padded to
  their longest row, AdamW with the config's schedule and clipping, evaluated on the same validation
  and test rows, in plain PyTorch; run twice, with torch's default AdamW and with its fused kernel,
  and the faster of the two is the reference.
- train: the same fusion model and loss on tensors held in memory, indexed per batch, AdamW, one
  validation pass per epoch, in plain PyTorch.
- face: the same face network, augmentation, loss and cosine schedule on one uint8 tensor of every
  face, decoded once before the epochs (PIL), indexed per batch; validation each epoch and test with
  the mirror image, in plain PyTorch. Both sides decode every image once: the project in its first
  epoch, into memory, the plain loop before it.
- video: PyAV's decoder over every frame keeping the sampled ones, the whole audio track decoded at
  once; each side in its own process so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features.cache import CacheEntry
from emofuse.features.encoders.base import Encoder


def _say(line: str) -> None:
    print(line, flush=True)


def _ratio(project_rate: float, plain_rate: float) -> float:
    return project_rate / plain_rate if plain_rate > 0 else float("nan")


def _threads() -> None:
    """Two cores are common here: OpenMP threads that spin while another process works make torch
    several times slower, so waiting threads sleep. transformers' loading bars are off."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from transformers.utils import logging as tf_logging

    tf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------
# train: attention fusion on synthetic features

SYNTH_DIMS = {"audio": 1024, "text": 1024, "video": 768}  # HuBERT-large, RoBERTa-large, ViT-base widths


def synthetic_corpus(folder: Path, n: int, n_classes: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """A manifest of n rows (80/10/10 train/val/test) and a feature cache with one encoder per
    modality: class-dependent means plus noise, so a model has something to learn. Returns
    (manifest path, cache folder)."""
    import pandas as pd

    from emofuse.labels import MER6

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    split = np.where(np.arange(n) % 10 == 8, "val", np.where(np.arange(n) % 10 == 9, "test", "train"))
    ids = [f"s{i:06d}" for i in range(n)]
    df = pd.DataFrame({c: [""] * n for c in MANIFEST_COLUMNS})
    df["id"], df["split"], df["fold"] = ids, split, -1
    df["label"] = [MER6.classes[k] for k in labels]
    df["speaker"] = [f"spk{i % 50}" for i in range(n)]
    manifest = Manifest("synthetic", MER6, df)
    path = folder / "manifest.csv"
    manifest.save(path)
    cache = folder / "cache"
    for m, d in SYNTH_DIMS.items():
        means = rng.normal(0, 1, (n_classes, d)).astype(np.float32)
        x = means[labels] * 0.04 + rng.normal(0, 1, (n, d)).astype(np.float32)
        entry = CacheEntry.open(cache, "synthetic", _Given(f"synth_{m}", d, m))
        entry.write_shard(ids, x, np.ones(n, bool))
        entry.save_meta(complete=True, n=n, n_present=n, n_expected=n)
    return path, cache


class _Given(Encoder):
    """Stands for the encoder of features written into the cache directly (synthetic ones)."""

    def __init__(self, name: str, dim: int, modality: str):
        self.name, self.dim, self.modality = name, dim, modality

    def config(self) -> dict[str, Any]:
        return {"kind": "synthetic", "name": self.name, "dim": self.dim}

    def encode(self, items: list) -> list:
        raise NotImplementedError("synthetic features are written, not encoded")


def speed_train(n: int = 10000, epochs: int = 100, batch_size: int = 256, out: Path | None = None,
                say: Callable[[str], None] = _say) -> dict[str, float]:
    """Project: `train_run` of the attention fusion for `epochs` epochs (early stopping off), with its
    reports; plain: the same model and loss in a plain PyTorch loop over tensors in memory."""
    _threads()
    import torch

    from emofuse.config import RunConfig, validate
    from emofuse.data.dataset import FeatureDataset
    from emofuse.training.module import model_loss
    from emofuse.models.build import build_model
    from emofuse.training.run import train_run

    work = Path(out or tempfile.mkdtemp(prefix="emofuse-speed-train-"))
    t0 = time.perf_counter()
    manifest_path, cache = synthetic_corpus(work, n)
    say(f"synthetic corpus: {n} rows, {', '.join(f'{m} {d}-d' for m, d in SYNTH_DIMS.items())} "
        f"({time.perf_counter() - t0:.1f} s to write)")
    features = {m: f"synth_{m}" for m in SYNTH_DIMS}
    cfg = validate(RunConfig, {
        "name": "speed-attention", "out": str(work / "runs"),
        "data": {"manifest": str(manifest_path), "cache": str(cache), "features": features, "batch_size": batch_size},
        "model": {"name": "attention", "params": {"hidden": 128, "dropout": 0.3}},
        "train": {"max_epochs": epochs, "patience": epochs + 1, "seeds": [0], "logger": "none", "progress": False},
    })

    # plain: the same model and loss, tensors in memory, shuffled index batches, a validation pass per epoch
    manifest = Manifest.load(manifest_path)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tr = FeatureDataset.from_manifest(manifest, cache, features, "train")
    va = FeatureDataset.from_manifest(manifest, cache, features, "val")
    stats = tr.fit_standardiser()
    tr, va = tr.standardised(stats), va.standardised(stats)

    def tensors(ds):
        b = {m: torch.from_numpy(f.vectors) for m, f in ds.features.items()}
        b.update({f"{m}_mask": torch.from_numpy(f.present) for m, f in ds.features.items()})
        b["label"], b["target"] = torch.from_numpy(ds.labels), torch.from_numpy(ds.targets)
        return b

    xtr, xva = tensors(tr), tensors(va)
    model = build_model("attention", {"hidden": 128, "dropout": 0.3}, tr.in_dims(), 6)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    n_tr = len(tr)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n_tr).split(batch_size):
            batch = {k: v[idx] for k, v in xtr.items()}
            loss = model_loss(model(batch), batch, cfg.train.mse_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            correct = 0
            for idx in torch.arange(len(va)).split(256):
                batch = {k: v[idx] for k, v in xva.items()}
                correct += int((model(batch)["logits"].argmax(-1) == batch["label"]).sum())
    plain_s = time.perf_counter() - t0
    say(f"plain loop: {epochs} epochs x {n_tr} rows in {plain_s:.1f} s (val accuracy {100 * correct / len(va):.1f})")

    t0 = time.perf_counter()
    metrics = train_run(cfg)
    project_s = time.perf_counter() - t0
    say(f"emofuse train_run: {epochs} epochs in {project_s:.1f} s, with its reports "
        f"(test accuracy {100 * metrics['test']['accuracy']:.1f}) -> {work / 'runs'}")
    ratio = plain_s / project_s
    say(f"seconds: {project_s:.1f}")
    say(f"ratio: {ratio:.2f}")
    return {"seconds": project_s, "plain_seconds": plain_s, "ratio": ratio}


# ---------------------------------------------------------------------------------------------
# extract: the project's extract() against a plain loop on the same rows


def _with_option(spec: str, key: str, value: str) -> str:
    head, sep, tail = spec.partition("@")
    return f"{spec},{key}={value}" if sep else f"{spec}@{key}={value}"


def speed_extract(encoder: str, manifest: str | Path, limit: int | None = 2000, device: str | None = None,
                  batch_size: int | None = None, say: Callable[[str], None] = _say) -> dict[str, float]:
    """Items per second of `extract()` (decode, encode, cache writes) and of a plain loop over the
    same rows, in one run. The plain loop goes first and loads the model itself, so neither side
    pays the other's warm-up; both encode one warm-up batch first that the clock does not count."""
    _threads()
    from emofuse.features.encoders.hf import HFEncoder, build_encoder
    from emofuse.features.extract import extract

    m = Manifest.load(manifest)
    if limit is not None and limit < len(m.df):
        m = Manifest(m.corpus, m.label_set, m.df.iloc[:limit].reset_index(drop=True), m.meta)
    spec = encoder
    enc = build_encoder(spec)
    if device is not None:
        if not hasattr(enc, "device"):
            say(f"{enc.name} has no device option: it runs on the CPU")
        else:
            spec = _with_option(spec, "device", device)
            enc = build_encoder(spec)
    bs = batch_size or int(getattr(enc, "batch_size", 0) or 16)
    rows = m.df.to_dict("records")
    say(f"{enc.name} ({enc.modality}) on {len(rows)} rows of {m.corpus}, batch {bs}"
        + (f", device {enc.device}" if hasattr(enc, "device") else ""))

    from emofuse.features.encoders.whisper import WhisperEncoder

    if isinstance(enc, HFEncoder) and enc.modality == "text":
        plain_s, n_plain = _plain_hf_text(enc, [str(r.get("text") or "") for r in rows], bs)
        what = "plain loop (transformers: length-sorted batches, inference mode, mean pooling)"
    elif isinstance(enc, WhisperEncoder):
        plain_s, n_plain = _plain_hf_whisper(enc, rows)
        what = ("plain loop (transformers: WhisperFeatureExtractor + WhisperModel's encoder as documented, input "
                "padded to its 30 s window, the layer's states over the clip's frames, mean and std)")
    else:
        plain_s, n_plain = _plain_encoder(enc, rows, bs)
        what = "plain loop (same decoding and encoder, file order, one thread, no cache)"
    plain_rate = n_plain / plain_s
    say(f"{what}: {n_plain} items in {plain_s:.2f} s = {plain_rate:.1f} items/s")

    with tempfile.TemporaryDirectory(prefix="emofuse-speed-extract-") as tmp:
        warm = Manifest(m.corpus + "-warmup", m.label_set, m.df.iloc[: min(bs, len(m.df))], m.meta)
        extract(warm, [enc], tmp, batch_size=bs, progress=False)  # loads the model, as the plain side did
        t0 = time.perf_counter()
        entry = extract(m, [enc], tmp, batch_size=bs, progress=False)[0]
        project_s = time.perf_counter() - t0
    n_project = len(m.df)
    project_rate = n_project / project_s
    st = entry.stats
    say(f"emofuse extract: {n_project} items in {project_s:.2f} s = {project_rate:.1f} items/s "
        f"({st['computed']} computed, {st['absent']} absent, {st['errors']} errors; shards written)")
    ratio = _ratio(project_rate, plain_rate)
    say(f"ratio: {ratio:.2f}")
    return {"project_items_s": project_rate, "plain_items_s": plain_rate, "ratio": ratio}


def _plain_hf_text(enc, texts: list[str], bs: int) -> tuple[float, int]:
    """transformers' tokenizer and model from the encoder's folder, as a user would write it."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    dev = torch.device(enc.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[enc.dtype]
    tok = AutoTokenizer.from_pretrained(enc.folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model = AutoModel.from_pretrained(enc.folder, dtype=dtype).to(dev).eval()
    texts = [t for t in texts if t.strip()]

    def run(items: list[str]) -> None:
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        with torch.inference_mode():
            for i in range(0, len(items), bs):
                chunk = [items[j] for j in order[i: i + bs]]
                x = tok(chunk, padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt")
                x = {k: v.to(dev, non_blocking=True) for k, v in x.items()}
                h = model(**x).last_hidden_state.float()
                mask = x["attention_mask"].unsqueeze(-1).to(h.dtype)
                vec = (h * mask).sum(1) / mask.sum(1).clamp(min=1)
                vec.cpu().numpy()

    run(texts[:bs])  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(texts)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, len(texts)


def _plain_hf_whisper(enc, rows: list[dict]) -> tuple[float, int]:
    """transformers' Whisper encoder as its documentation runs it: the feature extractor pads every clip to
    30 s (the encoder refuses any other length), hidden_states[layer], then the clip's own frames pooled."""
    import numpy as np
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    from emofuse.media.audio import load_audio

    fe = WhisperFeatureExtractor.from_pretrained(enc.folder)
    model = WhisperModel.from_pretrained(enc.folder, dtype=torch.float32).get_encoder().to(enc.device).eval()
    paths = [r.get("audio") or r.get("video") for r in rows if r.get("audio") or r.get("video")]

    def run(items) -> None:
        with torch.inference_mode():
            for path in items:
                w = load_audio(path, sr=16000)  # decoded inside the clock, as extract does
                x = fe(w, sampling_rate=16000, return_tensors="pt").input_features.to(enc.device)
                h = model(x, output_hidden_states=True).hidden_states[enc.layer][0]  # (1500, d)
                h = h[: max(1, -(-len(w) // 320))].float()  # the clip's own 20 ms frames
                np.concatenate([h.mean(0).cpu().numpy(), h.std(0).cpu().numpy()])

    run(paths[:1])  # warm-up
    t0 = time.perf_counter()
    run(paths)
    return time.perf_counter() - t0, len(paths)


def _plain_encoder(enc, rows: list[dict], bs: int) -> tuple[float, int]:
    """Decode each row with the media functions, encode batches with the same encoder."""
    from emofuse.media.suffixes import IMAGE_SUFFIXES
    from emofuse.media.audio import load_audio
    from emofuse.media.faces import FaceDetector, crop_image_file, face_track

    detector = FaceDetector() if enc.modality == "video" else None

    def decode(r: dict):
        if enc.modality == "text":
            return str(r.get("text") or "").strip() or None
        if enc.modality == "audio":
            path = r.get("audio") or r.get("video")
            return load_audio(path, sr=16000) if path else None
        path = r.get("video")
        if not path:
            return None
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return crop_image_file(path, 224, detector=detector).image[None]
        return face_track(path, size=224, detector=detector, k_uniform=8).crops

    def run(items: list[dict]) -> int:
        done, batch = 0, []
        for r in items:
            try:
                x = decode(r)
            except Exception:  # a broken file: skipped, as a plain loop would
                x = None
            if x is not None:
                batch.append(x)
            if len(batch) == bs:
                enc.encode(batch)
                done, batch = done + len(batch), []
        if batch:
            enc.encode(batch)
            done += len(batch)
        return done

    run(rows[: min(bs, len(rows))])  # warm-up: model load, first call
    t0 = time.perf_counter()
    n = run(rows)
    return time.perf_counter() - t0, max(n, 1)


# ---------------------------------------------------------------------------------------------
# finetune: train_run of a fine-tuning config against a plain transformers loop


def _slice_manifest(m: Manifest, n_train: int, seed: int = 0) -> Manifest:
    """Whole dialogues (so that context turns stay) of each split until the training split has about
    n_train rows, and the validation and test splits the same fraction of theirs."""
    df = m.df
    rng = np.random.default_rng(seed)
    n_full = int((df["split"] == "train").sum())
    frac = min(1.0, n_train / max(n_full, 1))
    keep = []
    for split in ("train", "val", "test"):
        part = df[df["split"] == split]
        groups = part["dialogue"].where(part["dialogue"] != "", part["id"]) if "dialogue" in part else part["id"]
        names = list(dict.fromkeys(groups.tolist()))
        rng.shuffle(names)
        want, chosen, n = max(1, round(frac * len(part))), set(), 0
        sizes = groups.value_counts()
        for g in names:
            if n >= want:
                break
            chosen.add(g)
            n += int(sizes[g])
        keep.append(part[groups.isin(chosen)])
    import pandas as pd

    out = pd.concat(keep).sort_index()
    return Manifest(m.corpus, m.label_set, out.reset_index(drop=True), m.meta)


def speed_finetune(config: str | Path, manifest: str | Path, steps: int = 100, overrides: list[str] | None = None,
                   say: Callable[[str], None] = _say) -> dict[str, float]:
    """One epoch of `steps` optimiser steps: the project's `train_run` of the config (its validation
    checks, test predictions and reports included) against a plain PyTorch + transformers loop
    doing the same work (the same rows, model, batch size, schedule; one validation pass; test)."""
    _threads()
    from emofuse.config import RunConfig, load_config
    from emofuse.training.run import train_run

    base = load_config(RunConfig, config, overrides or [])
    if base.model.name != "finetune_text":
        raise ValueError(f"speed finetune measures finetune_text configs; {config} trains {base.model.name!r}")
    full = Manifest.load(manifest)
    bs = base.data.batch_size
    m = _slice_manifest(full, steps * bs)
    work = Path(tempfile.mkdtemp(prefix="emofuse-speed-finetune-"))
    m.save(work / "manifest.csv")
    n = {s: int((m.df["split"] == s).sum()) for s in ("train", "val", "test")}
    say(f"{config}: {n['train']} training rows (~{steps} steps of {bs}), {n['val']} validation, {n['test']} test "
        f"rows of {full.corpus}; encoder {base.model.params.get('encoder', 'minilm')}")
    cfg = load_config(RunConfig, config, (overrides or []) + [
        f"data.manifest={work / 'manifest.csv'}", f"out={work / 'runs'}", "train.max_epochs=1", "train.seeds=[0]",
        "train.logger=none", "train.progress=false"])

    _plain_finetune(cfg, m, warm_up=True)  # imports, first allocations: paid here, by neither side
    plain = {}
    for fused in (False, True):
        plain[fused] = _plain_finetune(cfg, m, fused=fused)
        s, f1 = plain[fused]
        say(f"plain loop (transformers model + linear head, tokenised once, length-grouped batches, "
            f"{'fused' if fused else 'default'} AdamW, one validation pass, test): {s:.1f} s = "
            f"{n['train'] / s:.1f} training rows/s (test weighted F1 {100 * f1:.1f})")
    plain_s = min(s for s, _ in plain.values())  # the faster plain loop is the reference
    t0 = time.perf_counter()
    metrics = train_run(cfg)
    project_s = time.perf_counter() - t0
    say(f"emofuse train_run ({cfg.train.val_checks_per_epoch} validation check(s) per epoch, reports): "
        f"{project_s:.1f} s = {n['train'] / project_s:.1f} training rows/s "
        f"(test weighted F1 {100 * metrics['test']['weighted_f1']:.1f})")
    ratio = plain_s / project_s
    say(f"ratio: {ratio:.2f}")
    return {"project_s": project_s, "plain_s": plain_s, "ratio": ratio}


def _plain_finetune(cfg, m: Manifest, warm_up: bool = False, fused: bool = False) -> tuple[float, float]:
    """warm_up: load the model and take two steps, untimed. fused: AdamW's fused kernel (torch's
    default is its per-tensor loop on CPU)."""
    import torch
    from sklearn.metrics import f1_score
    from torch import nn
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from emofuse.data.raw import dialogue_turns
    from emofuse.models.hf_backbone import hf_folder
    from emofuse.training.module import class_weights

    t0 = time.perf_counter()
    torch.manual_seed(0)
    p = cfg.model.params
    folder = hf_folder(p.get("encoder", "minilm"))
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    backbone = AutoModel.from_pretrained(folder)
    head = nn.Sequential(nn.Dropout(p.get("dropout", 0.1)), nn.Linear(backbone.config.hidden_size, len(m.label_set)))
    texts, before, after = dialogue_turns(m.df, cfg.data.raw.context, cfg.data.raw.context_after)
    labels = m.label_indices()
    max_len = int(p.get("max_length", 128))
    ids = []
    for t, b, a in zip(texts, before, after):  # the utterance first; its context as the pair, cut first
        ctx = " ".join(list(b) + list(a))
        enc = tok(t, ctx or None, truncation="only_second" if ctx else True, max_length=max_len)
        ids.append(enc["input_ids"])
    split = m.df["split"].to_numpy()
    rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=fused or None)
    bs = cfg.data.batch_size
    n_steps = math.ceil(len(rows["train"]) / bs)
    warm = int(cfg.train.warmup * n_steps)
    sched = get_linear_schedule_with_warmup(opt, warm, n_steps) if cfg.train.lr_schedule == "linear" else None
    weight = class_weights(labels[rows["train"]], len(m.label_set), cfg.train.class_weights)  # as the config means
    loss_fn = nn.CrossEntropyLoss(weight=weight)

    def batch_of(idx):
        x = tok.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
        h = backbone(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).last_hidden_state
        mask = x["attention_mask"].unsqueeze(-1).to(h.dtype)
        return head((h * mask).sum(1) / mask.sum(1).clamp(min=1))

    def predict(rs):
        backbone.eval(), head.eval()
        order = sorted(rs, key=lambda i: len(ids[i]))
        out = {}
        with torch.inference_mode():
            for i in range(0, len(order), bs):
                idx = order[i: i + bs]
                out.update(zip(idx, batch_of(idx).argmax(-1).tolist()))
        return np.array([out[i] for i in rs])

    g = torch.Generator().manual_seed(0)
    sampler = LengthGroupedSampler(bs, lengths=[len(ids[i]) for i in rows["train"]], generator=g)
    order = [int(rows["train"][i]) for i in sampler][: 2 * bs if warm_up else None]
    backbone.train(), head.train()
    for i in range(0, len(order), bs):
        idx = order[i: i + bs]
        loss = loss_fn(batch_of(idx), torch.as_tensor(labels[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.gradient_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.gradient_clip)
        opt.step()
        if sched is not None:
            sched.step()
    if warm_up:
        return 0.0, 0.0
    predict(rows["val"])  # the one validation pass an epoch gets
    test = predict(rows["test"])
    f1 = f1_score(labels[rows["test"]], test, average="weighted")
    return time.perf_counter() - t0, float(f1)


# ---------------------------------------------------------------------------------------------
# face: finetune_face on face images, the project's train_run against a plain loop


def _face_slice(m: Manifest, n_train: int, seed: int = 0) -> Manifest:
    """About n_train training rows (seeded, stratified), validation and test cut by the same fraction."""
    from sklearn.model_selection import train_test_split
    import pandas as pd

    frac = min(1.0, n_train / max(1, int((m.df["split"] == "train").sum())))
    parts = []
    for _, df in m.df.groupby("split", sort=False):
        if frac < 1.0:
            df, _ = train_test_split(df, train_size=max(7, round(frac * len(df))), random_state=seed, stratify=df["label"])
        parts.append(df)
    return Manifest(m.corpus, m.label_set, pd.concat(parts).sort_index().reset_index(drop=True), m.meta)


def speed_face(manifest: str | Path, n_train: int = 4000, epochs: int = 2, width: int = 32,
               say: Callable[[str], None] = _say) -> dict[str, float]:
    """`epochs` epochs of finetune_face (bench fer2013's recipe) on about n_train training faces of a
    face-image manifest (FER2013's): the project's train_run (validation checks, test predictions,
    reports) against a plain PyTorch loop doing the same work on a tensor of the decoded faces."""
    _threads()
    from emofuse.bench.fer2013 import face_net_run
    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.training.run import train_run

    full = Manifest.load(manifest)
    if not (full.meta.get("decoding") or {}).get("images_are_faces"):
        raise ValueError(f"{manifest}: speed face takes a manifest of face images (FER2013, CK+), whose decoding "
                         "says images_are_faces")
    m = _face_slice(full, n_train)
    work = Path(tempfile.mkdtemp(prefix="emofuse-speed-face-"))
    m.save(work / "manifest.csv")
    n = {s: int((m.df["split"] == s).sum()) for s in ("train", "val", "test")}
    run = face_net_run(epochs, width)
    cfg = RunConfig(name="face", data=DataConfig(manifest=str(work / "manifest.csv"), features=run.features, **run.data),
                    model=ModelConfig(name=run.model, params=run.params),
                    train=TrainConfig(**run.train, seeds=[0], logger="none", progress=False), out=str(work / "runs"))
    say(f"{manifest}: {n['train']} training faces, {n['val']} validation, {n['test']} test; finetune_face width "
        f"{width}, {epochs} epoch(s) of batch {cfg.data.batch_size}")
    _plain_face(cfg, m, warm_up=True)  # imports, first allocations: paid here, by neither side
    plain_s, plain_acc, decode_s = _plain_face(cfg, m)
    say(f"plain loop (faces decoded once into one tensor: {decode_s:.1f} s; the same network, augmentation, "
        f"AdamW + cosine; validation each epoch; test): {plain_s:.1f} s = {epochs * n['train'] / plain_s:.1f} "
        f"training faces/s (test accuracy {100 * plain_acc:.1f})")
    t0 = time.perf_counter()
    metrics = train_run(cfg)
    project_s = time.perf_counter() - t0
    say(f"emofuse train_run (faces decoded in the first epoch and kept in memory; reports): {project_s:.1f} s = "
        f"{epochs * n['train'] / project_s:.1f} training faces/s (test accuracy {100 * metrics['test']['accuracy']:.1f})")
    ratio = plain_s / project_s
    say(f"ratio: {ratio:.2f}")
    return {"project_s": project_s, "plain_s": plain_s, "ratio": ratio}


def _plain_face(cfg, m: Manifest, warm_up: bool = False) -> tuple[float, float, float]:
    """(seconds, test accuracy, of which decoding seconds). warm_up: two steps on a few faces, untimed."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from emofuse.features.encoders.face_net import FaceNet, to_grey
    from emofuse.models.finetune_face import augment

    t0 = time.perf_counter()
    torch.manual_seed(0)
    p, size = cfg.model.params, cfg.data.raw.face_size
    df = m.df.iloc[: 2 * cfg.data.batch_size] if warm_up else m.df

    def load(path: str) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))

    faces = torch.from_numpy(np.stack([load(v) for v in df["video"]]))  # (N, S, S, 3) uint8
    decode_s = time.perf_counter() - t0
    labels = torch.as_tensor(Manifest(m.corpus, m.label_set, df.reset_index(drop=True), m.meta).label_indices())
    split = df["split"].to_numpy()
    rows = {s: torch.as_tensor(np.flatnonzero(split == s)) for s in ("train", "val", "test")}
    if warm_up:
        rows["train"] = torch.arange(len(df))
    c = dict(width=32, blocks=4, dropout=0.4, size=48, zoom=0.15, shift=0.1, rotate=10.0, erase=0.5) | p
    net = FaceNet(len(m.label_set), c["width"], c["blocks"], c["dropout"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    bs, epochs = cfg.data.batch_size, 1 if warm_up else cfg.train.max_epochs
    total = epochs * math.ceil(len(rows["train"]) / bs)
    warm = int(cfg.train.warmup * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / warm if step < warm else
                                              0.5 * (1 - math.cos(math.pi * max(0.0, (total - step) / max(1, total - warm)))))

    def predict(rs):
        net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(rs), bs):
                x = to_grey(faces[rs[i: i + bs]], c["size"])
                out.append(((net(x) + net(x.flip(-1))) / 2).argmax(-1))
        net.train()
        return torch.cat(out)

    for _ in range(epochs):
        order = rows["train"][torch.randperm(len(rows["train"]))]
        for i in range(0, len(order), bs):
            idx = order[i: i + bs]
            x = augment(to_grey(faces[idx], c["size"]), zoom=c["zoom"], shift=c["shift"], rotate=c["rotate"], erase=c["erase"])
            loss = F.cross_entropy(net(x), labels[idx], label_smoothing=cfg.train.ce_label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if warm_up:
            return 0.0, 0.0, 0.0
        predict(rows["val"])
    acc = float((predict(rows["test"]) == labels[rows["test"]]).float().mean())
    return time.perf_counter() - t0, acc, decode_s


# ---------------------------------------------------------------------------------------------
# video: a long generated clip, extracted and predicted, memory bounded


def make_clip(path: Path, minutes: float, width: int = 1280, height: int = 720, fps: int = 25,
              sr: int = 48000) -> Path:
    """An H.264 720p clip with 48 kHz stereo AAC speech-like audio, written as it is generated
    (frames and one-second audio blocks interleaved), so making it holds one second at a time."""
    import av
    from fractions import Fraction

    rng = np.random.default_rng(0)
    seconds = max(1, int(round(minutes * 60)))
    # a second of distinct frames, cycled, made in yuv420p (the encoder's format: no conversion):
    # diagonal bars moving across the picture, chroma with a little noise (~1 Mbit/s at crf 28)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(fps):
        f = np.empty((height * 3 // 2, width), np.uint8)  # Y plane, then the U and V planes
        f[:height] = ((xx + 8 * k) // 4 + yy // 4) % 256
        f[height:] = 128 + rng.integers(0, 8, (height // 2, width), dtype=np.uint8)
        frames.append(f)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "28"}
        aus = out.add_stream("aac", rate=sr, layout="stereo")
        aus.bit_rate = 128000
        n_audio = 0
        for s in range(seconds):
            for k in range(fps):
                for p in vs.encode(av.VideoFrame.from_ndarray(frames[k], format="yuv420p")):
                    out.mux(p)
            t = (np.arange(sr) + s * sr) / sr
            voice = 0.2 * np.sin(2 * np.pi * (140 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
            block = np.stack([voice, voice]).astype(np.float32) + 0.005 * rng.standard_normal((2, sr)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.reshape(1, -1)), format="flt", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = sr, n_audio, Fraction(1, sr)
            n_audio += sr
            for p in aus.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        for p in aus.encode(None):
            out.mux(p)
    return path


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KB


def video_project(clip: str, model: str, cache: str) -> dict:
    """In its own process: extract the clip with the model's encoders into a cache, then predict."""
    _threads()
    from emofuse.features.extract import extract
    from emofuse.inference.predict import Clip, Predictor
    from emofuse.labels import LabelSet

    t0 = time.perf_counter()
    predictor = Predictor.load(model)
    d = predictor.spec.decoding
    import pandas as pd

    df = pd.DataFrame({c: [""] for c in MANIFEST_COLUMNS})
    df["id"], df["split"], df["fold"], df["video"] = "long", "test", -1, clip
    m = Manifest("speed-video", LabelSet("speed", ("x",)), df)
    t1 = time.perf_counter()
    entries = extract(m, list(predictor.bundle.encoders.values()), cache, video_sampling=d.video_sampling,
                      face_size=d.face_size, no_face=d.no_face, progress=False)
    t2 = time.perf_counter()
    pred = predictor.predict(Clip(video=Path(clip)))
    t3 = time.perf_counter()
    return {"load_s": t1 - t0, "extract_s": t2 - t1, "predict_s": t3 - t2, "label": pred.label,
            "errors": sum(e.stats["errors"] for e in entries), "peak_rss_gb": _peak_rss_gb()}


def video_plain(clip: str, k: int = 8) -> dict:
    """In its own process: what the work needs at least, streamed by PyAV: every video frame decoded,
    k of them kept at even spacing, and the whole audio track decoded and resampled to 16 kHz mono."""
    import av

    t0 = time.perf_counter()
    with av.open(clip) as c:
        n = c.streams.video[0].frames
        want = set(np.linspace(0, max(n - 1, 0), k).round().astype(int).tolist())
        kept = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in want]
    with av.open(clip) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in rs.resample(f)]
        chunks += [o.to_ndarray().reshape(-1) for o in rs.resample(None)]
        wave = np.concatenate(chunks)
    return {"seconds": time.perf_counter() - t0, "frames_kept": len(kept), "audio_s": len(wave) / 16000,
            "peak_rss_gb": _peak_rss_gb()}


def _child(call: str) -> dict:
    """Run `call` (an expression on this module) in a fresh interpreter; its result as a dict."""
    code = f"import json; from emofuse.bench import speed; print('@@' + json.dumps(speed.{call}))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("@@")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"the measuring process failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(lines[-1][2:])


def speed_video(minutes: float = 10.0, model: str | Path = "runs/demo/runs/fusion-attention",
                say: Callable[[str], None] = _say) -> dict[str, float]:
    """Generate a `minutes`-long 720p clip with audio, then, each in its own process so that each
    peak RSS is its own: the project extracts it (the model's encoders, into a cache) and predicts
    on it; the plain side decodes what that needs with PyAV and nothing else."""
    _threads()
    model = Path(model)
    if not (model / "config.yaml").is_file() and not (model / "bundle.json").is_file():
        raise FileNotFoundError(f"{model}: no trained run or bundle there; run `emofuse demo` (it writes "
                                "runs/demo/runs/fusion-attention) or give --model")
    with tempfile.TemporaryDirectory(prefix="emofuse-speed-video-") as tmp:
        clip = Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        make_clip(clip, minutes)
        say(f"made a {minutes:g}-minute 1280x720 25 fps clip with 48 kHz stereo audio in {time.perf_counter() - t0:.1f} s "
            f"({clip.stat().st_size / 1e6:.1f} MB)")
        plain = _child(f"video_plain({str(clip)!r})")
        say(f"plain (PyAV: every frame decoded, 8 kept, the audio track decoded at once): {plain['seconds']:.1f} s, "
            f"peak RSS {plain['peak_rss_gb']:.2f} GB")
        proj = _child(f"video_project({str(clip)!r}, {str(model)!r}, {str(Path(tmp) / 'cache')!r})")
        total = proj["extract_s"] + proj["predict_s"]
        say(f"emofuse: load {proj['load_s']:.1f} s, extract {proj['extract_s']:.1f} s ({proj['errors']} errors), "
            f"predict {proj['predict_s']:.1f} s -> {proj['label']}; peak RSS {proj['peak_rss_gb']:.2f} GB")
    # one pass each: the project's predict (decode, encode, model) against the plain decode alone
    ratio = plain["seconds"] / proj["predict_s"]
    say(f"peak_rss_gb: {proj['peak_rss_gb']:.2f}")
    say(f"ratio: {ratio:.2f}")
    return {"peak_rss_gb": proj["peak_rss_gb"], "plain_peak_rss_gb": plain["peak_rss_gb"], "seconds": total,
            "plain_seconds": plain["seconds"], "ratio": ratio}
