"""The results table the MER2025 system reports: Fusion, Top, Audio, Text, Video, and for each
epoch budget the wall time, weighted F1 and accuracy."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import yaml

ORDER = {"audio": "A", "video": "V", "text": "T"}


def _load(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    feats = cfg["data"]["features"]
    as_lists = {k: ([v] if isinstance(v, str) else list(v)) for k, v in feats.items()}
    fusion = "".join(ORDER[k] for k in ("audio", "video", "text") if k in as_lists)
    return {
        "fusion": fusion,
        "top": max(len(v) for v in as_lists.values()),
        "encoders": as_lists,
        "epochs": cfg["train"]["max_epochs"],
        "time": m["wall_time_s"],
        "f1": m["test"]["weighted_f1"],
        "acc": m["test"]["accuracy"],
        "synthetic": m.get("synthetic", False),
        "model": m.get("model", ""),
    }


def render_table(runs: list[Path], unimodal: list[Path] = ()) -> str:
    rows = [_load(Path(r)) for r in runs]
    epochs = sorted({r["epochs"] for r in rows})
    # a Model column only when the runs are of several fusion models (a grid has one)
    by_model = len({r["model"] for r in rows}) > 1
    cells: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        cells[(r["model"] if by_model else "", r["fusion"], r["top"], json.dumps(r["encoders"], sort_keys=True))][r["epochs"]] = r
    head = ("| Model " if by_model else "") + "| Fusion | Top | Audio | Text | Video | " + " | ".join(
        f"{e} ep time (s) | {e} ep F1 | {e} ep Acc" for e in epochs) + " |"
    sep = ("|---" if by_model else "") + "|---|---:|---|---|---|" + "---:|---:|---:|" * len(epochs)
    lines = []
    if any(r["synthetic"] for r in rows):
        lines += ["Corpus: **synthetic** demo corpus (figures show the pipeline works, not human-emotion accuracy).", ""]
    lines += [head, sep]
    for (model, fusion, top, enc_json), by_ep in cells.items():
        enc = json.loads(enc_json)
        row = ([model] if by_model else []) + [fusion, str(top)] + [
            ", ".join(enc.get(m, [])) or "–" for m in ("audio", "text", "video")]
        for e in epochs:
            r = by_ep.get(e)
            row += [f"{r['time']:.0f}", f"{100 * r['f1']:.2f}", f"{100 * r['acc']:.2f}"] if r else ["", "", ""]
        lines.append("| " + " | ".join(row) + " |")
    if unimodal:
        lines += ["", "Unimodal baselines (encoder ranking, ranked on validation weighted F1):", "",
                  "| Modality | Encoder | val F1 | test F1 | test Acc | time (s) |", "|---|---|---:|---:|---:|---:|"]
        for u in unimodal:
            m = json.loads((Path(u) / "metrics.json").read_text())
            (mod, enc), = ((k, v) for k, v in m["features"].items())
            lines.append(f"| {mod} | {enc} | {100 * m['val']['weighted_f1']:.2f} | {100 * m['test']['weighted_f1']:.2f} "
                         f"| {100 * m['test']['accuracy']:.2f} | {m['wall_time_s']:.0f} |")
    return "\n".join(lines) + "\n"


def write_table(runs: list[Path], out: str | Path, unimodal: list[Path] = ()) -> Path:
    out = Path(out)
    out.write_text(render_table(runs, unimodal))
    return out
