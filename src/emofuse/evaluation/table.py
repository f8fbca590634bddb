"""The results table the MER2025 system reports: Fusion, Top, Audio, Text, Video, and for each
epoch budget the wall time, weighted F1, accuracy and the epoch whose weights were kept.

Runs that do not form a grid (each row trained at one budget, budgets differing between rows, as
in the paired benchmark) get one column group instead, with each row's budget and kept epoch.
Variants of one cell at one budget (other settings, same inputs) get a Run column, a row each.
Top-N models that keep their candidates per sample get a Mode column and, below the table, how
often each candidate was kept (selection.csv of each run, see evaluation/selection.py)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import yaml

from emofuse.evaluation.selection import kept_shares, load_selection

ORDER = {"audio": "A", "video": "V", "text": "T"}
MODE_NAMES = {"ranked": "ranked", "per_sample": "per sample"}


def _model_top_n(model: str, params: dict) -> int | None:
    """The run's kept candidates per modality, or None for a model without Top-N selection."""
    if "top_n" in params:
        return int(params["top_n"])
    from emofuse.registry import MODELS, UnknownNameError

    try:
        field = MODELS.get(model).Config.model_fields.get("top_n")
    except UnknownNameError:
        return None
    return None if field is None else int(field.default)


def _mode(cfg: dict, as_lists: dict[str, list[str]]) -> tuple[str, int | None]:
    """("per_sample", top_n) when the model keeps fewer candidates of a modality than it is fed
    (inputs "<modality>:<encoder>", frame segments each a candidate), else ("ranked", None)."""
    params = cfg["model"].get("params") or {}
    segments = params.get("segments", 0)

    def n_candidates(m: str, encs: list[str]) -> int:
        keys = [m] if isinstance(cfg["data"]["features"][m], str) else [f"{m}:{e}" for e in encs]
        return sum(max(segments.get(k, 0) if isinstance(segments, dict) else segments, 1) for k in keys)

    fed = max(n_candidates(m, e) for m, e in as_lists.items())
    if fed <= 1:
        return "ranked", None
    top_n = _model_top_n(cfg["model"]["name"], params)
    return ("per_sample", top_n) if top_n is not None and top_n < fed else ("ranked", None)


def _kept_epochs(units: list[dict]) -> str:
    """The epoch (1-based) whose weights each unit kept: one number, or the range over seeds/folds."""
    def span(xs: list[int]) -> str:
        return str(xs[0]) if xs[0] == xs[-1] else f"{xs[0]}–{xs[-1]}"

    best = sorted(u["best_epoch"] + 1 for u in units if u.get("best_epoch", -1) >= 0)
    if best:
        return span(best)
    # a refit after speaker-grouped cross-validation trains the epochs the folds chose, no validation
    refit = sorted(u["epochs_run"] for u in units if (u.get("selection") or {}).get("mode") == "speaker_cv")
    return f"{span(refit)} (CV)" if refit else "–"


def _load(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    feats = cfg["data"]["features"]
    as_lists = {k: ([v] if isinstance(v, str) else list(v)) for k, v in feats.items()}
    fusion = "".join(ORDER[k] for k in ("audio", "video", "text") if k in as_lists)
    mode, top_n = _mode(cfg, as_lists)
    return {
        "name": run.name,
        "run": run,
        "fusion": fusion,
        # per sample: the N kept of all that is fed; ranked: the N fed, all kept
        "top": top_n if mode == "per_sample" else max(len(v) for v in as_lists.values()),
        "mode": mode,
        "encoders": as_lists,
        "epochs": cfg["train"]["max_epochs"],
        "kept_epoch": _kept_epochs(m.get("units", [])),
        "time": m["wall_time_s"],
        "f1": m["test"]["weighted_f1"],
        "acc": m["test"]["accuracy"],
        "synthetic": m.get("synthetic", False),
        "model": m.get("model", ""),
    }


def render_table(runs: list[Path], unimodal: list[Path] = ()) -> str:
    rows = [_load(Path(r)) for r in runs]
    epochs = sorted({r["epochs"] for r in rows})
    # a Model column only when the runs are of several fusion models (a grid has one), a Mode
    # column only when some run keeps its Top-N per sample
    by_model = len({r["model"] for r in rows}) > 1
    by_mode = any(r["mode"] == "per_sample" for r in rows)

    def key_of(r: dict, run: bool) -> tuple:
        return (r["name"] if run else "", r["model"] if by_model else "", MODE_NAMES[r["mode"]] if by_mode else "",
                r["fusion"], r["top"], json.dumps(r["encoders"], sort_keys=True))

    # Two runs of one cell at one budget are variants (e.g. the paired bench's late-AVT and late-AVT-mean):
    # each gets its own row, named by a Run column, instead of the later one overwriting the other.
    by_run = len({(key_of(r, False), r["epochs"]) for r in rows}) < len(rows)
    cells: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        cells[key_of(r, by_run)][r["epochs"]] = r
    # A grid trains each row at several budgets: one column group per budget. Rows that were each
    # trained at one budget, different between rows, would leave every group mostly empty: one
    # group then, with each row's budget.
    grid = len(epochs) == 1 or any(len(by_ep) > 1 for by_ep in cells.values())
    lead = (("| Run " if by_run else "") + ("| Model " if by_model else "") + "| Fusion | Top "
            + ("| Mode " if by_mode else "") + "| Audio | Text | Video | ")
    lead_sep = ("|---" if by_run else "") + ("|---" if by_model else "") + "|---|---:" + ("|---" if by_mode else "") + "|---|---|---|"
    if grid:
        head = lead + " | ".join(f"{e} ep time (s) | {e} ep F1 | {e} ep Acc | {e} ep best" for e in epochs) + " |"
        sep = lead_sep + "---:|---:|---:|---:|" * len(epochs)
    else:
        head = lead + "Epochs | Best ep | time (s) | F1 | Acc |"
        sep = lead_sep + "---:|---:|---:|---:|---:|"
    lines = []
    if any(r["synthetic"] for r in rows):
        lines += ["Corpus: **synthetic** demo corpus (figures show the pipeline works, not human-emotion accuracy).", ""]
    lines += [head, sep]
    for (run, model, mode, fusion, top, enc_json), by_ep in cells.items():
        enc = json.loads(enc_json)
        row = ([run] if by_run else []) + ([model] if by_model else []) + [fusion, str(top)] + ([mode] if by_mode else []) + [
            ", ".join(enc.get(m, [])) or "–" for m in ("audio", "text", "video")]
        if grid:
            for e in epochs:
                r = by_ep.get(e)
                row += ([f"{r['time']:.0f}", f"{100 * r['f1']:.2f}", f"{100 * r['acc']:.2f}", r["kept_epoch"]]
                        if r else ["", "", "", ""])
        else:
            (r,) = by_ep.values()
            row += [str(r["epochs"]), r["kept_epoch"], f"{r['time']:.0f}", f"{100 * r['f1']:.2f}", f"{100 * r['acc']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Best ep: the epoch whose weights were kept (best on validation; early stopping can end a run "
              "before its budget), a range over seeds or folds; (CV): the epochs a refit trained, chosen by "
              "speaker-grouped cross-validation."]
    lines += _selection_lines(rows)
    if unimodal:
        lines += ["", "Unimodal baselines (encoder ranking, ranked on validation weighted F1):", "",
                  "| Modality | Encoder | val F1 | test F1 | test Acc | time (s) | Epochs | Best ep |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for u in unimodal:
            m = json.loads((Path(u) / "metrics.json").read_text())
            cfg_path = Path(u) / "config.yaml"
            budget = yaml.safe_load(cfg_path.read_text())["train"]["max_epochs"] if cfg_path.is_file() else "–"
            (mod, enc), = ((k, v) for k, v in m["features"].items())
            lines.append(f"| {mod} | {enc} | {100 * m['val']['weighted_f1']:.2f} | {100 * m['test']['weighted_f1']:.2f} "
                         f"| {100 * m['test']['accuracy']:.2f} | {m['wall_time_s']:.0f} | {budget} "
                         f"| {_kept_epochs(m.get('units', []))} |")
    return "\n".join(lines) + "\n"


def _selection_lines(rows: list[dict]) -> list[str]:
    """What each Top-N run kept: a note for ranked runs (all), shares per candidate for per-sample runs."""
    selections = [load_selection(r["run"]) for r in rows]
    lines = []
    if any(r["mode"] == "ranked" and sel for r, sel in zip(rows, selections)):
        lines += ["", "Mode ranked (Top-N runs fed no more candidates per modality than they keep: in a grid, the "
                      "N best-ranked encoders): every candidate is kept, in 100% of the samples where its modality "
                      "is present."]
    per_sample = [(r, sel) for r, sel in zip(rows, selections) if r["mode"] == "per_sample"]
    if per_sample:
        mods = [m for m in ("audio", "text", "video") if any(m in r["encoders"] for r, _ in per_sample)]
        lines += ["", "Mode per sample: every ranked encoder is fed and the model's scorer keeps the Top N per "
                      "sample. Kept: share of test samples whose Top-N kept each candidate (a sample whose "
                      "modality is absent keeps none of it):", "",
                  "| Run | " + " | ".join(m.capitalize() for m in mods) + " |", "|---|" + "---|" * len(mods)]
        for r, sel in per_sample:
            shares = kept_shares(sel) if sel else {}
            lines.append(f"| {r['name']} | " + " | ".join(shares.get(m, "–" if sel else "not recorded")
                                                         for m in mods) + " |")
    return lines


def write_table(runs: list[Path], out: str | Path, unimodal: list[Path] = (), note: str = "") -> Path:
    """render_table to `out`, with `note` (how the table was made) below it."""
    out = Path(out)
    text = render_table(runs, unimodal)
    out.write_text(text + (f"\n{note}\n" if note else ""))
    return out
