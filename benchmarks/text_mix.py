"""The default model's text network trained on MELD with more or fewer GoEmotions rows, side by side: one
row per mix (GoEmotions rows per MELD row in train and val; 0 is MELD alone), each trained as
`emofuse build-model` trains it (bench/emofuse_base.py: TEXT_NET, TEXT_TRAIN, the seed), with its
weighted F1 on MELD dev and test and on GoEmotions val and test, and its time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/text_mix.py --data ../shared/data --out runs/text-mix --mix 0 0.5 1

The mix is chosen on MELD dev: the default model reads transcripts of speech, which MELD is and GoEmotions
(Reddit comments) is not. A mix's run folder is <out>/mix-<r>/experts/text-net; an existing one is read,
not trained again (--retrain to train it anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def scores(run: Path) -> dict[str, float]:
    """Weighted F1 per corpus on the run's validation and test predictions (build-model's own split by corpus),
    and on the pooled validation split ("val"), which the loop monitors."""
    from emofuse.bench.emofuse_base import _by_corpus

    pooled = json.loads((run / "metrics.json").read_text())["val"]["weighted_f1"]
    return {"val": 100 * pooled} | {f"{corpus} {split}": 100 * m["weighted_f1"]
                                    for split, name in (("val", "predictions_val.csv"), ("test", "predictions.csv"))
                                    for corpus, m in _by_corpus(run / name).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mix", type=float, nargs="+", default=[0.0, 0.5, 1.0], metavar="R")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--swa-epochs", type=int, default=0, metavar="N",
                    help="keep the mean of the last N epochs' weights (train.swa_epochs) instead of the best epoch's")
    ap.add_argument("--train-seed", type=int, default=None, metavar="S",
                    help="the network's training seed (default: --seed, which also draws the GoEmotions rows); "
                         "its run goes to <out>/mix-<r>-seed<S>")
    table = ap.add_mutually_exclusive_group()
    table.add_argument("--train-embeddings", dest="frozen", action="store_false", default=None,
                       help="train the token embedding table too (freeze_input_embeddings: false; the build's way)")
    table.add_argument("--frozen-embeddings", dest="frozen", action="store_true",
                       help="keep the token embedding table frozen (the build's way before the thirteenth session)")
    a = ap.parse_args()
    from emofuse.bench.driver import BenchOptions
    from emofuse.bench.emofuse_base import TEXT_NET, _text, _text_net

    frozen = TEXT_NET["freeze_input_embeddings"] if a.frozen is None else a.frozen  # default: as the build trains it

    rows = []
    for r in a.mix:
        suffix = "" if a.train_seed is None else f"-seed{a.train_seed}"
        opts = BenchOptions(data=a.data, out=a.out / f"mix-{r:g}{suffix}", seed=a.seed, progress=True)
        run = opts.out / "experts" / "text-net"
        t = time.perf_counter()
        if a.retrain or not (run / "predictions.csv").is_file():
            manifest = _text(opts, goemotions_per_meld=r)
            seeds = {} if a.train_seed is None else {"seeds": [a.train_seed]}
            _text_net(manifest, opts.out / "text-net", opts, train={"swa_epochs": a.swa_epochs} | seeds,
                      net={"freeze_input_embeddings": frozen})
            seconds = time.perf_counter() - t
            (opts.out / "seconds.json").write_text(json.dumps({"seconds": seconds}))
        else:
            seconds = json.loads((opts.out / "seconds.json").read_text())["seconds"] if (opts.out / "seconds.json").is_file() else float("nan")
        rows.append((r, scores(run), seconds))
    print(f"seed {a.seed} (GoEmotions rows), training seed {a.seed if a.train_seed is None else a.train_seed}; swa_epochs {a.swa_epochs}; embeddings {'frozen' if frozen else 'trained'}; weighted F1; the mix chosen on MELD dev is marked")
    print("| GoEmotions rows per MELD row | pooled val | MELD dev | MELD test | GoEmotions val | GoEmotions test | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    best = max(rows, key=lambda x: x[1]["meld val"])[0]
    for r, s, seconds in rows:
        cell = lambda k: f"{s[k]:.1f}" if k in s else "–"  # noqa: E731
        mark = "**" if r == best else ""
        print(f"| {mark}{r:g}{mark} | {cell('val')} | {cell('meld val')} | {cell('meld test')} | {cell('goemotions val')} | "
              f"{cell('goemotions test')} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
