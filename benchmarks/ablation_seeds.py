"""One ablation row's seeds pooled from several run folders: where a variant's seeds ran as rows of their own
(`--only X --set seeds=[0]`, then `--only X-s12 --set seeds=[1,2]`), their test and validation figures
together, mean ± sample std, from each folder's metrics.json (its units, one per seed).

    python benchmarks/ablation_seeds.py runs/ablations/paired-llama-ablation prompt-words-only prompt-words-only-s12

With --best-val, a seed may be in several rows (a run and its continuation from its kept weights,
train.init_from): per seed, the unit with the highest validation weighted F1 counts, as one longer run would
keep its best epoch on validation.
    python benchmarks/ablation_seeds.py runs/ablations/paired-llama-ablation prompt prompt-6ep-s0 prompt-6ep-s1 prompt-6ep-s2 --best-val
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def pooled(root: Path, variants: list[str], best_val: bool = False) -> dict:
    """{"seeds": [...], split: {metric: (per-seed values, mean, std)}, "epoch_kept": [...], "rows": [...]} over
    the variants' units; a seed that appears twice is refused (the rows would count it twice), unless best_val:
    then that seed's unit with the highest validation weighted F1 counts (the first on a tie)."""
    by_seed: dict[int, tuple[dict, str]] = {}  # seed -> (its unit, the row it is from); first-seen order
    for v in variants:
        for u in json.loads((root / v / "metrics.json").read_text())["units"]:
            kept = by_seed.get(u["seed"])
            if kept and not best_val:
                raise ValueError(f"seed {u['seed']} is in more than one of {variants}")
            if not kept or u["val"]["weighted_f1"] > kept[0]["val"]["weighted_f1"]:
                by_seed[u["seed"]] = (u, v)
    units = [u for u, _ in by_seed.values()]
    out = {"seeds": list(by_seed), "rows": [v for _, v in by_seed.values()],
           "epoch_kept": [u["best_epoch"] + 1 for u in units]}
    for split in ("test", "val"):
        out[split] = {}
        for k in ("weighted_f1", "accuracy"):
            x = np.array([100 * u[split][k] for u in units])
            out[split][k] = (x.round(1).tolist(), float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the ablation's folder (<out>/<name>)")
    ap.add_argument("variants", nargs="+", help="the rows whose seeds to pool")
    ap.add_argument("--best-val", action="store_true", help="a seed in several rows: its best on validation counts")
    a = ap.parse_args()
    p = pooled(a.root, a.variants, a.best_val)
    print(f"{' + '.join(a.variants)}: seeds {p['seeds']}, from {p['rows']}, epoch kept (of its row) {p['epoch_kept']}")
    for split in ("test", "val"):
        for k, (each, mean, std) in p[split].items():
            print(f"  {split} {k}: {mean:.1f} ± {std:.1f}  (each seed: {', '.join(f'{v:.1f}' for v in each)})")


if __name__ == "__main__":
    main()
