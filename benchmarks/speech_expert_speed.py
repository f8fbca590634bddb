"""Would speed-perturbed training copies (0.9 and 1.1, as bench ravdess's rows use them) help the default model's
speech expert on speakers it never heard? The expert is trained as `emofuse build-model` trains it
(bench/emofuse_base.py: the speech manifest of RAVDESS actors 01-12, nEMO and URDU, whisper-base and eGeMAPS, a
linear member each, calibrated on the validation speakers), once on the manifest as it is and once with a copy
of each training clip per rate. Validation (the corpora's validation speakers) decides; test is each corpus's
test speakers.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/speech_expert_speed.py --data ../shared/data --out runs/speech-speed \\
        --cache runs/semi-cache

The copies' audio goes to <cache>/augmented/speech-speed (written once); their features to the cache under the
corpus speech-xcorpus, beside the originals'.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/speech-speed"))
    ap.add_argument("--cache", type=Path, default=Path("runs/semi-cache"))
    ap.add_argument("--rates", default="0.9,1.1")
    a = ap.parse_args()
    from emofuse.bench.driver import BenchOptions
    from emofuse.bench.emofuse_base import EXPERTS, SPEECH, _by_corpus, _expert_run, _speech
    from emofuse.corpora.augment import parse_rates, speed_perturbed
    from emofuse.corpora.base import Manifest
    from emofuse.features.extract import extract

    opts = BenchOptions(data=a.data, out=a.out, cache=a.cache, seed=0, progress=True)
    plain = _speech(opts)
    m = Manifest.load(plain)
    t = time.perf_counter()
    aug = speed_perturbed(m, parse_rates(a.rates), a.cache / "augmented" / "speech-speed", splits=("train",), progress=True)
    aug_path = a.out / "speech" / "manifest_speed.csv"
    aug.save(aug_path)
    print(f"copies: {int(aug.meta['n_augmented'])} ({time.perf_counter() - t:.0f} s)", flush=True)
    t = time.perf_counter()
    extract(aug, SPEECH, opts.cache_dir, progress=True)
    print(f"features ({time.perf_counter() - t:.0f} s)", flush=True)
    rows = []
    for name, path in (("expert-speech", plain), ("expert-speech-speed", aug_path)):
        t = time.perf_counter()
        metrics = _expert_run(name, path, {"audio": SPEECH}, {"audio": EXPERTS["audio"]}, opts)
        by = _by_corpus(a.out / "experts" / name / "predictions.csv")
        rows.append((name, metrics, by, time.perf_counter() - t))
    (a.out / "speech_speed.json").write_text(json.dumps(
        [{"run": n, "val": m["val"], "test": m["test"], "test_by_corpus": b, "seconds": s} for n, m, b, s in rows],
        indent=2, default=float))
    corpora = sorted(rows[0][2])
    print("| speech expert | val wF1 | test wF1 | " + " | ".join(f"{c} test wF1" for c in corpora) + " | seconds |")
    print("|---|---:|---:|" + "---:|" * len(corpora) + "---:|")
    for name, m, by, s in rows:
        cells = " | ".join(f"{100 * by[c]['weighted_f1']:.1f}" for c in corpora)
        print(f"| {name} | {100 * m['val']['weighted_f1']:.1f} | {100 * m['test']['weighted_f1']:.1f} | {cells} | {s:.0f} |")


if __name__ == "__main__":
    main()
