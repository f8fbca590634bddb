"""The default model's text networks side by side, alone and averaged (several networks as one encoder, as
`emofuse-text@folder=A+B` reads them), in float16 and in int8 (text_net.py's groups of 64): weighted F1 on the
text manifest's pooled validation (what the build's loop monitors), MELD dev and test, GoEmotions val and test.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/text_seeds.py --manifest runs/textx/mix-1/text/manifest.csv \\
        --nets src/emofuse/assets/text-net runs/textx/mix-1-seed1/text-net

Networks saved in float16 are written again in int8 from their stored weights (under --out) for the int8 rows;
a network saved in int8 is read as it is. Nothing is trained here.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402


def as_int8(folder: Path, out: Path) -> Path:
    """A float16 network written again with int8 weights (its stored values quantised)."""
    import json

    from emofuse.features.encoders.text_net import TextNetEncoder, save_text_net

    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("dtype") == "int8":
        return folder
    enc = TextNetEncoder(folder)
    return save_text_net(enc.backbone, enc.head, out, base=cfg["base"], pooling=cfg["pooling"],
                         max_length=cfg["max_length"], classes=cfg["classes"], dtype="int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--nets", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/text-seeds"))
    a = ap.parse_args()
    from emofuse.features.encoders.text_net import TextNetEncoder

    m = pd.read_csv(a.manifest, keep_default_na=False, dtype=str)
    m = m[m["split"].isin(["val", "test"])].reset_index(drop=True)
    corpus = m["id"].str.split(":").str[0]
    int8 = [as_int8(f, a.out / f"int8-{i}") for i, f in enumerate(a.nets)]
    rows = [(f"network {i} ({f})", [f]) for i, f in enumerate(a.nets)]
    rows += [(f"networks 0-{len(a.nets) - 1} averaged", list(a.nets))] if len(a.nets) > 1 else []
    rows += [(f"network {i}, int8", [f]) for i, f in enumerate(int8)]
    rows += [(f"networks 0-{len(a.nets) - 1} averaged, int8", int8)] if len(a.nets) > 1 else []
    cols = [("pooled val", (m["split"] == "val")), ("MELD dev", (m["split"] == "val") & (corpus == "meld")),
            ("MELD test", (m["split"] == "test") & (corpus == "meld")),
            ("GoEmotions val", (m["split"] == "val") & (corpus == "goemotions")),
            ("GoEmotions test", (m["split"] == "test") & (corpus == "goemotions"))]
    print("| text network | " + " | ".join(c for c, _ in cols) + " | bytes | seconds |")
    print("|---|" + "---:|" * (len(cols) + 2))
    for name, folders in rows:
        t = time.perf_counter()
        enc = TextNetEncoder(folders)
        y = m["label"].map({c: i for i, c in enumerate(enc.classes)}).to_numpy()
        guess = enc.vectors(m["text"].tolist())[:, :len(enc.classes)].argmax(1)
        size = sum(p.stat().st_size for f in folders for p in Path(f).glob("model.safetensors.part-*"))
        cells = [f"{100 * f1_score(y[r.to_numpy()], guess[r.to_numpy()], average='weighted'):.1f}" for _, r in cols]
        print(f"| {name} | " + " | ".join(cells) + f" | {size:,} | {time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
