"""Ablations by one command: named variants of one run config, each trained over the same seeds,
in one table of test and validation scores (mean ± std over seeds) and wall time.

    name: demo-llama-ablation
    base: configs/demo_llama_topn.yaml       # a run config (path, or the config itself inline)
    set: [train.max_epochs=30]               # applied to every variant (as `emofuse train --set`)
    seeds: [0, 1, 2]
    variants:                                # variant -> its overrides (keys as --set takes them)
      query: [model.params.readout=query]
      skip-only: [model.params.readout=skip]
      early: ["model={name: early, params: {hidden: 128}}"]

Writes <out>/<name>/: ablation.yaml (the resolved config), <variant>/ (a normal run directory per
variant, its seeds as units), ablation.json, table.md and ablation.png (each variant's test and
validation weighted F1, mean ± std and each seed). Nothing is selected here: every variant is
reported, and test scores are for reading, not for choosing (a sweep chooses on validation)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from emofuse.config import RunConfig, StrictConfig, apply_overrides, dump_config, load_base, validate
from emofuse.evaluation.report import save_ablation_png
from emofuse.training.tracking import parent_run


class AblationConfig(StrictConfig):
    name: str
    base: str | dict  # the run config every variant starts from: a YAML path, or the config inline
    set: list[str] = Field(default_factory=list)  # overrides for every variant
    variants: dict[str, list[str]]  # variant name -> its overrides, in order
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    command: str = ""  # the command that produced the table, printed above it
    out: str = "runs/ablations"

    @model_validator(mode="after")
    def _check(self) -> "AblationConfig":
        if not self.variants:
            raise ValueError("an ablation needs at least one variant")
        for v in self.variants:
            if not v or "/" in v or v.startswith("."):
                raise ValueError(f"variant name {v!r} must be a plain folder name")
        for v in self.variants:  # every variant must validate before anything trains
            self.variant_config(v)
        return self

    def base_dict(self) -> dict:
        return load_base(self.base)

    def variant_config(self, variant: str) -> RunConfig:
        folder = Path(self.out) / self.name
        overrides = [*self.set, *self.variants[variant], f"name={variant}", f"out={folder}",
                     f"train.seeds={json.dumps(list(self.seeds))}"]
        return validate(RunConfig, apply_overrides(self.base_dict(), overrides))


def _row(variant: str, overrides: list[str], metrics: dict, wall: float) -> dict:
    units = metrics["units"]
    # the best validation epoch, or with train.cross_validation speaker the budget the folds chose
    best = [u["selection"]["epochs"] if "selection" in u else u["best_epoch"] + 1
            for u in units if "selection" in u or u.get("best_epoch", -1) >= 0]
    return {
        "variant": variant, "overrides": overrides, "model": metrics["model"], "seeds": [u["seed"] for u in units],
        "test": {k: metrics["test"][k] for k in ("weighted_f1", "weighted_f1_std", "accuracy", "accuracy_std")},
        "val": {k: metrics["val"][k] for k in ("weighted_f1", "weighted_f1_std", "accuracy", "accuracy_std")},
        # each seed's own test figure (the picture's dots)
        "per_seed": {"test": [u["test"]["weighted_f1"] for u in units if "test" in u]},
        "epoch_kept": float(np.mean(best)) if best else None,
        "epochs_run": float(np.mean([u["epochs_run"] for u in units])),
        "fit_s_per_seed": float(np.mean([u["fit_time_s"] for u in units])),
        "wall_s": wall,
    }


@parent_run("ablation", lambda cfg: Path(cfg.out) / cfg.name)  # MLflow / W&B: the variants as one run's children
def run_ablation(cfg: AblationConfig, only: list[str] | None = None, progress: bool = True) -> dict:
    """Train every variant (or those in `only`) over cfg.seeds; returns ablation.json's content.
    Variants not in `only` keep their rows from <out>/<name>/ablation.json, those the config does not name
    (a variant added from the command line) too; `only` trains its variants again. Without `only`, a
    variant whose run already finished with exactly its config and features (training.finished.finished_run)
    is kept, not trained again, so an ablation stopped part-way resumes where it stopped. ablation.json,
    table.md and ablation.png are written again after every variant."""
    from emofuse.training.finished import finished_run
    from emofuse.training.run import train_run

    if unknown := sorted(set(only or []) - set(cfg.variants)):
        raise ValueError(f"unknown variant(s) {unknown}; this ablation has: {', '.join(cfg.variants)}")
    out = Path(cfg.out) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "ablation.yaml")
    previous = {}
    if (out / "ablation.json").is_file():
        previous = {r["variant"]: r for r in json.loads((out / "ablation.json").read_text())["rows"]}
    done = {}  # variant -> row, in the order trained; written in the config's order
    result = {"name": cfg.name, "command": cfg.command, "seeds": cfg.seeds, "rows": []}

    def write() -> None:
        result["rows"] = [done[v] if v in done else previous[v] for v in cfg.variants if v in done or v in previous]
        # rows of variants this config does not name (added once from the command line: --set "variants.X=[...]")
        # stay, after the config's own
        result["rows"] += [r for v, r in previous.items() if v not in cfg.variants]
        (out / "ablation.json").write_text(json.dumps(result, indent=2))
        (out / "table.md").write_text(ablation_table(result) + "\n")
        save_ablation_png(result["rows"], out / "ablation.png", title=cfg.name)

    for variant, overrides in cfg.variants.items():
        if only and variant not in only:
            continue
        run = cfg.variant_config(variant)
        if not only and (kept := finished_run(run)) is not None:  # finished before: its row, or one from its metrics
            old = previous.get(variant)
            done[variant] = old if old and old.get("overrides") == list(overrides) else \
                _row(variant, overrides, kept, kept["wall_time_s"])
            if progress:
                print(f"[{variant}] finished before with this config: kept", flush=True)
            write()
            continue
        t0 = time.perf_counter()
        metrics = train_run(run, one_process_as="an ablation")
        row = _row(variant, overrides, metrics, time.perf_counter() - t0)
        done[variant] = row
        write()
        if progress:
            several = len(cfg.seeds) > 1
            print(f"[{variant}] val weighted F1 {_pm(row['val'], 'weighted_f1', several)}, test weighted F1 "
                  f"{_pm(row['test'], 'weighted_f1', several)}, accuracy {_pm(row['test'], 'accuracy', several)} "
                  f"({row['wall_s']:.0f} s)", flush=True)
    write()
    return result


def _pm(d: dict, k: str, several: bool) -> str:
    """A score in %, with ± its std over seeds; no "±" for one seed: there is no spread to show."""
    return f"{100 * d[k]:.1f}" + (f" ± {100 * d[k + '_std']:.1f}" if several else "")


def ablation_table(result: dict) -> str:
    """Each row over its own seeds: `--only` with `--set seeds=[0]` adds a one-seed row beside rows of three,
    and the ± and the seeds column say which is which."""
    lines = []
    if result.get("command"):
        lines += [f"`{result['command']}`", ""]
    lines += ["| variant | model | seeds | test wF1 | test acc | val wF1 | val acc | epoch kept | epochs run "
              "| s / epoch | fit s / seed | wall s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        several = len(r["seeds"]) > 1
        kept = "–" if r["epoch_kept"] is None else f"{r['epoch_kept']:.1f}"
        run = r.get("epochs_run") or 0
        s_epoch = r["fit_s_per_seed"] / run if run else None
        per_epoch = "–" if s_epoch is None else f"{s_epoch:.1f}" if s_epoch < 10 else f"{s_epoch:.0f}"
        lines.append(f"| {r['variant']} | {r['model']} | {', '.join(map(str, r['seeds']))} "
                     f"| {_pm(r['test'], 'weighted_f1', several)} | {_pm(r['test'], 'accuracy', several)} "
                     f"| {_pm(r['val'], 'weighted_f1', several)} | {_pm(r['val'], 'accuracy', several)} | {kept} "
                     f"| {run:.1f} | {per_epoch} | {r['fit_s_per_seed']:.0f} | {r['wall_s']:.0f} |")
    lines += ["", "Mean ± std over each row's seeds (sample std; a row of one seed has no ±); scores in %; epoch kept: "
              "the best validation epoch (1-based; with train.cross_validation speaker, the refit's budget chosen by "
              "the speaker folds, and val: out-of-fold over the training speakers), mean over seeds; s / epoch: fit "
              "time over epochs run (validation included); wall s: the variant's whole run, every seed. Variants are "
              "not selected on these test scores."]
    return "\n".join(lines)
