"""Which Whisper-base encoder layer describes emotion in speech best: RAVDESS actor-grouped cross-validation.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/whisper_layers.py --data ../shared/data/ravdess_speech

For each layer 0..6 (0: after the convolutions and positions; 6: the encoder's layer-normed output) and for
all seven concatenated: the mean and std over each clip's frames, z-scored per actor (label-free), then
logistic regression. Folds of two actors (01-02, 03-04, ...): fold f tests, fold f+1 validates (C chosen
there), the rest train, as `emofuse bench ravdess` does. The layer is chosen on the validation figure;
the test figure is printed beside it, never used. One pass of the encoder gives every layer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

CS = (0.01, 0.03, 0.1, 0.3, 1.0)


def features(root: Path, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clips, 7 layers, 1024) mean+std per layer, labels, actors; cached in `cache`."""
    df = pd.read_csv(root / "labels.csv")
    if cache.is_file():
        z = np.load(cache)
        return z["x"], df["emotion"].to_numpy(), df["actor"].to_numpy()
    from rich.progress import track

    from emofuse.features.encoders.whisper import WhisperEncoder
    from emofuse.media.audio import load_audio

    enc = WhisperEncoder(layer=6)
    t0 = time.perf_counter()
    x = []
    for f in track(df["file"], description="whisper-base, all layers"):
        states = enc.layer_states(load_audio(root / f, sr=16000))
        x.append(np.stack([np.concatenate([s.mean(0), s.std(0)]) for s in states]))
    print(f"encoded {len(df)} clips in {time.perf_counter() - t0:.0f} s")
    x = np.stack(x).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x)
    return x, df["emotion"].to_numpy(), df["actor"].to_numpy()


def per_speaker(x: np.ndarray, spk: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for s in np.unique(spk):
        m = spk == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    return out


def cv(x: np.ndarray, y: np.ndarray, actors: np.ndarray) -> tuple[float, float, list[float]]:
    """(mean validation wF1 at the chosen C, mean test wF1, per-fold test) over the actor-pair folds."""
    ids = sorted(np.unique(actors))
    folds = [ids[i : i + 2] for i in range(0, len(ids), 2)]
    vals, tests = [], []
    for f, test in enumerate(folds):
        val = folds[(f + 1) % len(folds)]
        te, va = np.isin(actors, test), np.isin(actors, val)
        tr = ~(te | va)
        sc = StandardScaler().fit(x[tr])
        best = None
        for c in CS:
            m = LogisticRegression(C=c, max_iter=2000).fit(sc.transform(x[tr]), y[tr])
            v = f1_score(y[va], m.predict(sc.transform(x[va])), average="weighted")
            if best is None or v > best[0]:
                best = (v, m)
        vals.append(best[0])
        tests.append(f1_score(y[te], best[1].predict(sc.transform(x[te])), average="weighted"))
    return float(np.mean(vals)), float(np.mean(tests)), tests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ravdess_speech"))
    ap.add_argument("--cache", type=Path, default=Path("runs/whisper_layers/ravdess_layers.npz"))
    a = ap.parse_args()
    x, y, actors = features(a.data, a.cache)
    rows = []
    print("| layer | val wF1 (mean over folds) | test wF1 (mean over folds) | per test fold |")
    print("|---|---:|---:|---|")
    for name, feats in [*((f"layer {i}", x[:, i]) for i in range(x.shape[1])), ("all 7", x.reshape(len(x), -1))]:
        v, t, folds = cv(per_speaker(feats, actors), y, actors)
        rows.append((name, v, t, folds))
        print(f"| {name} | {100 * v:.1f} | {100 * t:.1f} | {' '.join(f'{100 * s:.1f}' for s in folds)} |", flush=True)
    best = max(rows[:-1], key=lambda r: r[1])
    print(f"chosen on validation: {best[0]} (val {100 * best[1]:.1f}, test {100 * best[2]:.1f})")


if __name__ == "__main__":
    main()
