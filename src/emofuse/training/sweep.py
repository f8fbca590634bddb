"""Hyper-parameter sweeps over any keys of a run config: a grid (every combination) or Optuna
(TPE over choices and ranges, when optuna is installed). Every trial is a normal run directory;
the best trial is chosen on the validation metric only, then trained again over several seeds and
only then evaluated for the record on test.

    name: demo-sweep
    base: configs/demo_late.yaml          # a run config (path, or the config itself inline)
    set: [train.max_epochs=30]            # applied to every trial (as `emofuse train --set`)
    grid:                                 # key -> values; keys as --set takes them
      data.batch_size: [16, 32]
      train.lr: [1.0e-3, 3.0e-4]
      train.weight_decay: [0.0, 0.01]
    final_seeds: [0, 1, 2]

Writes <out>/<name>/: trials/t00, t01, ... (run directories), sweep.json, table.md (one row per
trial: the swept values, the training and validation loss at the kept epoch, validation accuracy,
weighted F1, precision and recall; the selected trial marked) and best/ (the re-run over seeds)."""

from __future__ import annotations

import itertools
import json
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from emofuse.config import RunConfig, StrictConfig, apply_overrides, dump_config, load_base, load_config, validate
from emofuse.training.tracking import parent_run

ValMetric = Literal["val_accuracy", "val_weighted_f1", "val_uar", "val_macro_f1", "val_loss"]
# how the table heads the usual keys
PRETTY = {"data.batch_size": "batch size", "train.lr": "learning rate", "train.weight_decay": "weight decay",
          "train.max_epochs": "epochs", "model.params.dropout": "dropout", "model.params.hidden": "hidden",
          "train.class_weights": "class weights"}
SETTINGS = ("data.batch_size", "train.lr", "train.weight_decay")  # columns of every sweep table


class RangeConfig(StrictConfig):
    """A numeric range for Optuna."""

    low: float
    high: float
    log: bool = False  # sample on a log scale (learning rates)
    integer: bool = False


class SweepConfig(StrictConfig):
    name: str
    base: str | dict  # the run config every trial starts from: a YAML path, or the config inline
    set: list[str] = Field(default_factory=list)  # overrides for every trial, as `emofuse train --set`
    method: Literal["grid", "optuna"] = "grid"
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # grid: all combinations; optuna: choices
    ranges: dict[str, RangeConfig] = Field(default_factory=dict)  # optuna only
    n_trials: int = 20  # optuna only
    select: ValMetric | None = None  # the validation metric that picks the best trial; default train.monitor
    final_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])  # the best trial is re-run over these
    seed: int = 0  # optuna's sampler
    out: str = "runs/sweeps"

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if not self.grid and not self.ranges:
            raise ValueError("a sweep needs keys to vary: give grid (and, with method optuna, ranges)")
        if self.ranges and self.method != "optuna":
            raise ValueError("ranges need method: optuna (a grid takes lists of values)")
        for k, v in self.grid.items():
            if not isinstance(v, list) or not v:
                raise ValueError(f"grid.{k}: give a non-empty list of values")
        self.base_config()  # the base and every override must validate before anything trains
        for values in self.grid_values()[:1] if self.method == "grid" else []:
            self.trial_config("check", values, Path(self.out))
        return self

    def base_dict(self) -> dict:
        return load_base(self.base)

    def base_config(self) -> RunConfig:
        return validate(RunConfig, apply_overrides(self.base_dict(), self.set))

    def grid_values(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def trial_config(self, name: str, values: dict[str, Any], folder: Path, seeds: list[int] | None = None) -> RunConfig:
        """The base config with the sweep's fixed overrides, then this trial's values."""
        base = self.base_config()
        overrides = [*self.set, *(f"{k}={_yaml(v)}" for k, v in values.items()),
                     f"name={name}", f"out={_yaml(str(folder))}",
                     # each trial trains once; the selected one is re-run over final_seeds
                     f"train.seeds={_yaml(seeds if seeds is not None else base.train.seeds[:1])}"]
        return validate(RunConfig, apply_overrides(self.base_dict(), overrides))


def _yaml(v: Any) -> str:
    """A value as --set parses it back (PyYAML writes floats so that they read back as floats)."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _trial_row(run_dir: Path, values: dict[str, Any]) -> dict:
    """What the table shows for one trial, from its run directory."""
    from sklearn.metrics import precision_recall_fscore_support

    from emofuse.training.late_runs import load_predictions

    m = json.loads((run_dir / "metrics.json").read_text())
    run_cfg = load_config(RunConfig, run_dir / "config.yaml")
    unit = m["units"][0]
    rec = unit.get("at_best_epoch") or {}
    val = load_predictions(run_dir, "val")
    val = val[val["true"] != ""]
    p, r, _, _ = precision_recall_fscore_support(val["true"], val["predicted"], average="weighted", zero_division=0)
    return {
        "trial": run_dir.name, "values": values, "run": str(run_dir),
        # the seed's tables always show these, swept or not
        "settings": {k: attrgetter(k)(run_cfg) for k in SETTINGS},
        "best_epoch": unit.get("best_epoch"), "epochs_run": unit.get("epochs_run"),
        "train_loss": rec.get("train_loss"), "val_loss": rec.get("val_loss"),
        "val_accuracy": m["val"]["accuracy"], "val_weighted_f1": m["val"]["weighted_f1"],
        "val_uar": m["val"]["uar"], "val_macro_f1": m["val"]["macro_f1"],
        "val_precision": float(p), "val_recall": float(r),
        "fit_time_s": unit.get("fit_time_s"),
    }


@parent_run("sweep", lambda cfg: Path(cfg.out) / cfg.name)  # MLflow / W&B: the trials as one run's children
def run_sweep(cfg: SweepConfig, progress: bool = True) -> dict:
    """Run every trial, select on validation, re-run the best over final_seeds; returns sweep.json's content."""
    from emofuse.training.run import train_run

    out = Path(cfg.out) / cfg.name
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "sweep.yaml")
    base = cfg.base_config()
    select = cfg.select or base.train.monitor
    sign = -1.0 if select == "val_loss" else 1.0  # maximise sign * metric
    rows: list[dict] = []

    def trial(values: dict[str, Any]) -> float:
        name = f"t{len(rows):02d}"
        rc = cfg.trial_config(name, values, trials_dir)
        train_run(rc, one_process_as="a sweep")
        row = _trial_row(trials_dir / name, values)
        rows.append(row)
        if progress:
            print(f"[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items())
                  + f": {select} {row[select]:.4f}")
        return row[select]

    if cfg.method == "grid":
        for values in cfg.grid_values():
            trial(values)
    else:
        _optuna(cfg, trial, "minimize" if sign < 0 else "maximize")

    best_i = max(range(len(rows)), key=lambda i: (sign * rows[i][select], -i))  # ties: the earlier trial
    best = rows[best_i]
    if list(cfg.final_seeds) == list(base.train.seeds[:1]):
        # the re-run would train the best trial again with the same seed: keep the trial instead
        # (an hour saved when each trial fine-tunes an encoder)
        final_dir = Path(best["run"])
        final = json.loads((final_dir / "metrics.json").read_text())
        if progress:
            print(f"best on {select}: {best['trial']} ({best['values']}); final_seeds are its own seed: not re-run")
    else:
        final_cfg = cfg.trial_config("best", best["values"], out, seeds=cfg.final_seeds)
        final_dir = out / "best"
        if progress:
            print(f"best on {select}: {best['trial']} ({best['values']}); re-running over seeds {cfg.final_seeds}")
        final = train_run(final_cfg, one_process_as="a sweep")
    result = {
        "name": cfg.name, "method": cfg.method, "select": select, "keys": list(cfg.grid) + list(cfg.ranges),
        "trials": rows, "best": best["trial"], "best_values": best["values"],
        "final": {"run": str(final_dir), "seeds": cfg.final_seeds, "test": final["test"], "val": final["val"]},
    }
    (out / "sweep.json").write_text(json.dumps(result, indent=2))
    (out / "table.md").write_text(sweep_table(result) + "\n")
    return result


def _optuna(cfg: SweepConfig, trial, direction: str) -> None:
    try:
        import optuna
    except ImportError:
        raise ImportError("method: optuna needs the optuna package (pip install optuna); "
                          "method: grid needs nothing more") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(t) -> float:
        values = {k: t.suggest_categorical(k, v) for k, v in cfg.grid.items()}
        for k, r in cfg.ranges.items():
            values[k] = (t.suggest_int(k, int(r.low), int(r.high), log=r.log) if r.integer
                         else t.suggest_float(k, r.low, r.high, log=r.log))
        return trial(values)

    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=cfg.n_trials)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def sweep_table(result: dict) -> str:
    """Markdown: one row per trial (swept values, losses at the kept epoch, validation scores in %)."""
    keys = list(result["keys"]) + [k for k in SETTINGS if k not in result["keys"]]
    head = ["trial", *(PRETTY.get(k, k) for k in keys), "train loss", "val loss", "accuracy", "F1", "precision",
            "recall", "epoch kept", "fit time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in result["trials"]:
        mark = " ★" if r["trial"] == result["best"] else ""
        loss = [f"{r[k]:.3f}" if r[k] is not None else "–" for k in ("train_loss", "val_loss")]
        scores = [f"{100 * r[k]:.1f}" for k in ("val_accuracy", "val_weighted_f1", "val_precision", "val_recall")]
        values = {**r.get("settings", {}), **r["values"]}
        extra = ["–" if r.get("best_epoch") is None else str(r["best_epoch"] + 1),
                 "–" if r.get("fit_time_s") is None else f"{r['fit_time_s']:.0f}"]
        lines.append("| " + " | ".join([r["trial"] + mark, *(_fmt(values.get(k, "–")) for k in keys), *loss, *scores,
                                        *extra]) + " |")
    t = result["final"]["test"]
    several = len(result["final"]["seeds"]) > 1

    def score(k: str) -> str:
        return f"{100 * t[k]:.1f}" + (f" ± {100 * t[k + '_std']:.1f}" if several else "")

    lines += [
        "",
        f"Validation split; F1, precision and recall are class-weighted averages; losses at the epoch kept by "
        f"early stopping. ★ = selected on {result['select']} (validation only).",
        (f"The selected trial re-run over seeds {', '.join(map(str, result['final']['seeds']))}: "
         if Path(result["final"]["run"]).name != result["best"] else
         f"The selected trial (seed {result['final']['seeds'][0]}, its own run, not repeated): ")
        + f"test weighted F1 {score('weighted_f1')}, accuracy {score('accuracy')} ({result['final']['run']}).",
    ]
    return "\n".join(lines)
