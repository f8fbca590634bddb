"""The benchmark's files: metrics.json (model -> four metrics with 95% intervals), report.md,
per_class.csv and results.json per task."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emofuse.evaluation.metrics import METRIC_NAMES

LABELS = {"accuracy": "accuracy", "uar": "UAR", "weighted_f1": "weighted F1", "macro_f1": "macro F1"}


def _cell(entry: dict, k: str) -> str:
    lo, hi = entry[f"{k}_ci95"]
    return f"{100 * entry[k]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _inputs(entry: dict) -> str:
    if entry.get("inputs"):
        return entry["inputs"]
    feats = entry.get("features") or {}
    return "; ".join(f"{k}: {'+'.join(v) if isinstance(v, list) else v}" for k, v in feats.items())


def results_table(results: dict[str, dict], best: str | None) -> str:
    head = "| model | kind | inputs | " + " | ".join(LABELS[k] for k in METRIC_NAMES) + " | time (s) |"
    lines = [head, "|---|---|---|" + "---:|" * (len(METRIC_NAMES) + 1)]
    for name, e in results.items():
        label = f"**{name}**" if name == best else name
        t = e.get("wall_time_s")
        lines.append(f"| {label} | {e['kind']} | {_inputs(e)} | " + " | ".join(_cell(e, k) for k in METRIC_NAMES)
                     + f" | {'' if t is None else f'{t:.0f}'} |")
    return "\n".join(lines)


def per_class_md(rows: list[dict]) -> str:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['class']} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['f1']:.1f} | {r['support']} |"
            for r in rows]
    return "\n".join(out)


def target_rows(tasks: list, outs: list[dict]) -> list[dict]:
    """Per task with a target: the baseline and the best project model side by side, and whether
    the target holds (the project's best beats the baseline of this run, and reaches the figure)."""
    rows = []
    for task, out in zip(tasks, outs):
        if task.target is None:
            continue
        k = task.target.metric
        res = out["results"]
        best = out["best"]
        bases = {n: e for n, e in res.items() if e["kind"] == "baseline"}
        base_name = max(bases, key=lambda n: bases[n][k]) if bases else None  # the strongest baseline
        base = bases.get(base_name)
        beats = base is not None and best is not None and all(res[best][k] > b[k] for b in bases.values())
        if task.target.gain is not None:  # fusion over the best single modality
            uni = {n: e for n, e in res.items() if e["kind"] == "project" and e.get("model") == "unimodal"}
            fus = {n: e for n, e in res.items() if e["kind"] == "project" and e.get("model") != "unimodal"}
            bu = max(uni, key=lambda n: uni[n][k]) if uni else None
            bf = max(fus, key=lambda n: fus[n][k]) if fus else None
            reaches = None if not (bu and bf) else fus[bf][k] - uni[bu][k] >= task.target.gain
            gain_text = None if not (bu and bf) else (
                f"{bf} {100 * fus[bf][k]:.1f} vs {bu} {100 * uni[bu][k]:.1f}: {100 * (fus[bf][k] - uni[bu][k]):+.1f} points")
        elif task.target.versus is not None:
            ref = res.get(task.target.versus)
            reaches = None if ref is None or best is None else res[best][k] >= ref[k]
        else:
            # with no figure to reach, the target is to beat the baselines
            reaches = (beats if base else None) if task.target.value is None else (
                best is not None and res[best][k] >= task.target.value)
        rows.append({
            "task": task.name, "metric": k, "target": task.target.text, "best": best, "baseline_name": base_name,
            "project": res[best][k] if best else None, "project_ci95": res[best][f"{k}_ci95"] if best else None,
            "baseline": base[k] if base else None, "baseline_ci95": base[f"{k}_ci95"] if base else None,
            "beats_baseline": beats if base else None, "reaches_target": reaches,
            "fusion_gain": gain_text if task.target.gain is not None else None,
        })
    return rows


def write_bench(name: str, tasks: list, outs: list[dict], opts, intro: list[str], timings: dict[str, float],
                closing: list[str] = ()) -> dict:
    out_dir = Path(opts.out)
    multi = len(tasks) > 1
    metrics: dict[str, dict] = {}
    for task, out in zip(tasks, outs):
        task_dir = out_dir / task.name
        rows = []
        for model, e in out["results"].items():
            key = f"{task.name}/{model}" if multi else model
            metrics[key] = {k: e[k] for k in METRIC_NAMES} | {f"{k}_ci95": e[f"{k}_ci95"] for k in METRIC_NAMES}
            metrics[key] |= {k: e[k] for k in ("micro_f1",) if k in e} | {"n_test": e["n_test"], "kind": e["kind"]}
            rows += [{"model": model, **r} for r in e["per_class"]]
        pd.DataFrame(rows).to_csv(task_dir / "per_class.csv", index=False)
        (task_dir / "results.json").write_text(json.dumps(out, indent=2, default=float))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))

    targets = target_rows(tasks, outs)
    lines = [f"# emofuse bench {name}", "", *intro, ""]
    if targets:
        lines += ["## Baseline and project side by side (this run)", "",
                  "| task | metric | strongest linear baseline | best project model | target (issue) | beats every baseline | target met |",
                  "|---|---|---:|---|---|---|---|"]
        for r in targets:
            base = "–" if r["baseline"] is None else (f"{r['baseline_name']}: {100 * r['baseline']:.1f} "
                                                      f"[{100 * r['baseline_ci95'][0]:.1f}, {100 * r['baseline_ci95'][1]:.1f}]")
            proj = "–" if r["project"] is None else (f"{r['best']}: {100 * r['project']:.1f} "
                                                     f"[{100 * r['project_ci95'][0]:.1f}, {100 * r['project_ci95'][1]:.1f}]")
            yn = {True: "yes", False: "**no**", None: "(no baseline run)"}
            lines.append(f"| {r['task']} | {LABELS[r['metric']]} | {base} | {proj} | {r['target']} | "
                         f"{yn[r['beats_baseline']]} | {yn[r['reaches_target']]} |")
        lines.append("")
        lines += [f"Fusion over the best single modality ({r['task']}): {r['fusion_gain']}." for r in targets
                  if r.get("fusion_gain")] + [""]
    for task, out in zip(tasks, outs):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(out["split_counts"].items()))
        lines += [f"## {task.name}", "", f"Rows: {counts}; classes: {', '.join(out['classes'])}.", ""]
        lines += [*task.notes, ""] if task.notes else []
        lines += ["Test-set figures in percent, with seeded bootstrap 95% intervals "
                  f"({opts.bootstrap} resamples of the {out['n_test']} test samples).", "",
                  results_table(out["results"], out["best"]), ""]
        shown_rows = [out["best"]] + [n for n, e in out["results"].items() if e["kind"] == "baseline"]
        for shown in shown_rows:
            if shown:
                lines += [f"Per class, {shown}:", "", per_class_md(out["results"][shown]["per_class"]), ""]
        if out["best"]:
            lines += [f"![confusion matrix of {out['best']}]({task.name}/confusion.png)", ""]
        lines += ["Time: " + " · ".join(f"{k} {v:.0f} s" for k, v in out["timings"].items()), ""]
    lines += ["## Time", "", " · ".join(f"{k} {v:.0f} s" for k, v in timings.items()), ""]
    if closing:
        lines += [*closing, ""]
    lines += ["Per-class scores of every model: `<task>/per_class.csv`; everything scored: `<task>/results.json`; "
              "each model's run folder (config, weights, predictions with sample ids): `<task>/runs/`."]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "bench.json").write_text(json.dumps({"benchmark": name, "timings_s": timings, "targets": targets,
                                                    "options": {k: str(v) for k, v in vars(opts).items()}}, indent=2))
    return metrics
