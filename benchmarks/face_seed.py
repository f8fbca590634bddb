"""Train the FER2013 face network (bench fer2013's finetune_face row) with another training seed on the same
folds as seed 0: the same as `emofuse bench fer2013 --seed N --split-seed 0 --model finetune_face -o face_net=true`
(without --split-seed the bench's split seed is its first training seed, so the folds would move).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_seed.py 1 [--data ../shared/data] [--cache runs/base-cache]

Writes runs/face-seed<N> (the bench's report, its finetune_face run under fer2013/runs/finetune_face), to be
compared and averaged with benchmarks/face_seed_ensemble.py. About 90 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed", type=int)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("runs/base-cache"))
    ap.add_argument("--out", type=Path, default=None, help="default runs/face-seed<N>")
    a = ap.parse_args()
    from emofuse.bench import run_bench
    from emofuse.bench.driver import BenchOptions

    opts = BenchOptions(data=a.data, out=a.out or Path(f"runs/face-seed{a.seed}"), cache=a.cache, seeds=[a.seed], seed=0,
                        models=["finetune_face"], progress=True)
    m = run_bench("fer2013", opts, face_net=True)
    print({k: round(100 * v["accuracy"], 1) for k, v in m.items()})


if __name__ == "__main__":
    main()
