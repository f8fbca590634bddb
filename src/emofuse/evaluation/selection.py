"""How often a Top-N model kept each of its candidates: counted from the `selected` column of a
run's predictions (test, and validation), written beside them as selection.csv and selection.md.

A candidate is one input ("audio:egemaps") or one frame segment of it ("audio:mfcc#2"); its
modality is the part before ":" (or "#"). A sample whose modality is absent keeps none of that
modality's candidates, so a modality's shares add up to less than top_n x 100% when it is absent
in some samples."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

SPLITS = {"test": "predictions.csv", "val": "predictions_val.csv"}  # split -> predictions file of a run
FIELDS = ["candidate", "modality", "split", "kept", "samples", "share"]


def candidate_modality(name: str) -> str:
    return name.split("#")[0].split(":")[0]


def short_name(name: str) -> str:
    """"audio:egemaps" -> "egemaps"; a single-input modality ("text") keeps its name."""
    return name.split(":", 1)[1] if ":" in name else name


def read_kept(path: str | Path) -> list[list[str]] | None:
    """Each sample's kept candidates from a predictions CSV; None when it has no `selected` column."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "selected" not in (reader.fieldnames or []):
            return None
        return [[c for c in (row["selected"] or "").split(";") if c] for row in reader]


def count_kept(kept: list[list[str]], candidates: list[str] | None = None) -> list[dict]:
    """-> one row per candidate: candidate, modality, kept (samples that kept it), samples, share.
    `candidates` lists the model's candidates in order, so those never kept still get a row of 0."""
    n = len(kept)
    counts = Counter(c for row in kept for c in set(row))
    names = list(candidates or []) + sorted(set(counts) - set(candidates or []))
    return [{"candidate": c, "modality": candidate_modality(c), "kept": counts[c], "samples": n,
             "share": counts[c] / n if n else 0.0} for c in names]


def selection_rows(run_dir: str | Path, candidates: list[str] | None = None) -> list[dict]:
    """Counts over every split whose predictions the run wrote with a `selected` column."""
    rows = []
    for split, file in SPLITS.items():
        path = Path(run_dir) / file
        kept = read_kept(path) if path.is_file() else None
        if kept is not None:
            rows += [r | {"split": split} for r in count_kept(kept, candidates)]
    return rows


def write_selection(run_dir: str | Path, candidates: list[str] | None = None) -> Path | None:
    """Write <run_dir>/selection.csv and selection.md; returns the CSV's path, or None (and writes
    nothing) when the run's predictions have no `selected` column (a model without Top-N)."""
    run_dir = Path(run_dir)
    rows = selection_rows(run_dir, candidates)
    if not rows:
        return None
    out = run_dir / "selection.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({**r, "share": f"{r['share']:.4f}"} for r in rows)
    (run_dir / "selection.md").write_text(render_selection(rows, run_dir.name))
    return out


def render_selection(rows: list[dict], title: str = "") -> str:
    splits = list(dict.fromkeys(r["split"] for r in rows))
    by = {(r["candidate"], r["split"]): r for r in rows}
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    samples = ", ".join(f"{s} {next(r['samples'] for r in rows if r['split'] == s)}" for s in splits)
    lines = [f"# Top-N selection{': ' + title if title else ''}", "",
             f"How many samples kept each candidate, and their share of the split's samples ({samples}). "
             "A sample whose modality is absent keeps none of its candidates.", "",
             "| Candidate | Modality | " + " | ".join(f"{s} kept | {s} %" for s in splits) + " |",
             "|---|---|" + "---:|---:|" * len(splits)]
    for c in names:
        cells = []
        for s in splits:
            r = by.get((c, s))
            cells += [str(r["kept"]), f"{100 * r['share']:.1f}"] if r else ["", ""]
        lines.append(f"| {c} | {candidate_modality(c)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_selection(run_dir: str | Path) -> list[dict] | None:
    """The rows of <run_dir>/selection.csv (kept, samples as int; share as float), or None."""
    path = Path(run_dir) / "selection.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return [r | {"kept": int(r["kept"]), "samples": int(r["samples"]), "share": float(r["share"])}
                for r in csv.DictReader(f)]


def kept_shares(rows: list[dict], split: str = "test") -> dict[str, str]:
    """modality -> "egemaps 62%, mfcc 38%": one split's shares, in the model's candidate order."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["split"] == split:
            out.setdefault(r["modality"], []).append(f"{short_name(r['candidate'])} {100 * r['share']:.0f}%")
    return {m: ", ".join(v) for m, v in out.items()}
