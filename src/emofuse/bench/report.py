"""The benchmark's files: metrics.json (model -> four metrics with 95% intervals), report.md,
per_class.csv and results.json per task."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emofuse.bench.driver import choose
from emofuse.scoring.metrics import METRIC_NAMES

LABELS = {"accuracy": "accuracy", "uar": "UAR", "weighted_f1": "weighted F1", "macro_f1": "macro F1"}


def _cell(entry: dict, k: str) -> str:
    lo, hi = entry[f"{k}_ci95"]
    return f"{100 * entry[k]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _inputs(entry: dict) -> str:
    if entry.get("inputs"):
        return entry["inputs"]
    feats = entry.get("features") or {}
    return "; ".join(f"{k}: {'+'.join(v) if isinstance(v, list) else v}" for k, v in feats.items())


def _ece(entry: dict) -> str:
    """'0.123 → 0.071': test ECE as predicted, then after the temperature fitted on validation."""
    cal = entry.get("calibration") or {}
    if cal.get("ece") is None:
        return ""
    after = cal.get("ece_calibrated")
    return f"{cal['ece']:.3f}" + ("" if after is None else f" → {after:.3f}")


def results_table(results: dict[str, dict], best: str | None, metric: str = "weighted_f1") -> str:
    """One row per model: test metrics with intervals, the test ECE (as predicted → after a
    temperature fitted on validation), the validation score the choice of the project's model
    rests on (bold: the chosen one), and the wall time."""
    head = ("| model | kind | inputs | " + " | ".join(LABELS[k] for k in METRIC_NAMES)
            + f" | ECE | val {LABELS[metric]} | time (s) |")
    lines = [head, "|---|---|---|" + "---:|" * (len(METRIC_NAMES) + 3)]
    for name, e in results.items():
        label = f"**{name}**" if name == best else name
        t = e.get("wall_time_s")
        val = f"{100 * e['val'][metric]:.1f}" if "val" in e else ""
        lines.append(f"| {label} | {e['kind']} | {_inputs(e)} | " + " | ".join(_cell(e, k) for k in METRIC_NAMES)
                     + f" | {_ece(e)} | {val} | {'' if t is None else f'{t:.0f}'} |")
    return "\n".join(lines)


def versus_product_lines(results: dict[str, dict]) -> list[str]:
    """Every fusion against the plain product of its own unimodal members (weighted F1, test, with
    the paired-bootstrap 95% interval of the difference), and a verdict."""
    rows = [(n, e) for n, e in results.items() if e.get("versus_product")]
    if not rows:
        return []
    lines = ["Each fusion against the product of its own unimodal members' probabilities (test weighted F1; "
             "difference = fusion − product with its paired-bootstrap 95% interval):", "",
             "| fusion | product row | fusion | product | difference | beats the product |", "|---|---|---:|---:|---:|---|"]
    for n, e in rows:
        v = e["versus_product"]
        prod = results[v["row"]]["weighted_f1"]
        lo, hi = v["ci95"]
        if v["diff"] > 0:
            verdict = "yes" + ("" if lo > 0 else " (within noise: the interval includes 0)")
        else:
            verdict = "**no**" + (" (within noise: the interval includes 0)" if hi > 0 else "")
        lines.append(f"| {n} | {v['row']} | {100 * e['weighted_f1']:.1f} | {100 * prod:.1f} | "
                     f"{100 * v['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {verdict} |")
    return lines + [""]


def per_class_md(rows: list[dict]) -> str:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['class']} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['f1']:.1f} | {r['support']} |"
            for r in rows]
    return "\n".join(out)


def target_rows(tasks: list, outs: list[dict]) -> list[dict]:
    """Per target: the strongest baseline and the project's model (chosen on validation) side by
    side, and whether the target holds: the project's model beats every baseline of this run and
    reaches the figure (or the reference row, or the fusion gain). An unmeasurable target gets no
    verdict, only its reason."""
    rows = []
    for task, out in zip(tasks, outs):
        res = out["results"]
        for target in task.targets:
            k = target.metric

            def pick(kind: str, names):
                return {n: e for n, e in res.items() if e["kind"] == kind and (names is None or n in names)}

            project, bases = pick("project", target.project_rows), pick("baseline", target.baseline_rows)
            best = choose(project, k)
            base_name = max(bases, key=lambda n: bases[n][k]) if bases else None  # the strongest on test
            base = bases.get(base_name)
            beats = None if not bases or best is None else all(res[best][k] > b[k] for b in bases.values())
            gain_text = None
            if target.unmeasurable:
                reaches = None
            elif target.gain is not None:  # fusion over the best single modality, each chosen on validation
                uni = {n: e for n, e in project.items() if e.get("model") == "unimodal"}
                fus = {n: e for n, e in project.items() if e.get("model") != "unimodal"}
                bu, bf = choose(uni, k), choose(fus, k)
                reaches = None if not (bu and bf) else fus[bf][k] - uni[bu][k] >= target.gain
                if bu and bf:
                    gain_text = (f"{bf} {100 * fus[bf][k]:.1f} vs {bu} {100 * uni[bu][k]:.1f}: "
                                 f"{100 * (fus[bf][k] - uni[bu][k]):+.1f} points")
            elif target.over_baseline is not None:  # the chosen project model over the strongest baseline
                reaches = None if base is None or best is None else res[best][k] - base[k] >= target.over_baseline
            elif target.versus is not None:
                ref = res.get(target.versus)
                reaches = None if ref is None or best is None else res[best][k] >= ref[k]
            elif target.value is None:  # nothing to reach but the baselines
                reaches = beats
            else:
                reaches = best is not None and res[best][k] >= target.value
            rows.append({
                "task": task.name, "metric": k, "target": target.text, "best": best, "baseline_name": base_name,
                "project": res[best][k] if best else None, "project_ci95": res[best][f"{k}_ci95"] if best else None,
                "baseline": base[k] if base else None, "baseline_ci95": base[f"{k}_ci95"] if base else None,
                "beats_baseline": beats, "reaches_target": reaches, "fusion_gain": gain_text,
                "unmeasurable": target.unmeasurable,
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
            cal = e.get("calibration") or {}
            metrics[key] |= {k: cal[k] for k in ("ece", "ece_calibrated") if cal.get(k) is not None}
            rows += [{"model": model, **r} for r in e["per_class"]]
        pd.DataFrame(rows).to_csv(task_dir / "per_class.csv", index=False)
        (task_dir / "results.json").write_text(json.dumps(out, indent=2, default=float))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))

    targets = target_rows(tasks, outs)
    lines = [f"# emofuse bench {name}", "", *intro, ""]
    if targets:
        lines += ["## Baseline and project side by side (this run)", "",
                  "The project's model is the one with the best validation score (test never chooses); the "
                  "baseline shown is the strongest on test, which favours the baseline.", "",
                  "| task | metric | strongest linear baseline | project model (chosen on validation) | target (issue) | beats every baseline | target met |",
                  "|---|---|---:|---|---|---|---|"]
        for r in targets:
            base = "–" if r["baseline"] is None else (f"{r['baseline_name']}: {100 * r['baseline']:.1f} "
                                                      f"[{100 * r['baseline_ci95'][0]:.1f}, {100 * r['baseline_ci95'][1]:.1f}]")
            proj = "–" if r["project"] is None else (f"{r['best']}: {100 * r['project']:.1f} "
                                                     f"[{100 * r['project_ci95'][0]:.1f}, {100 * r['project_ci95'][1]:.1f}]")
            yn = {True: "yes", False: "**no**", None: "–"}
            verdict = f"not measurable here: {r['unmeasurable']}" if r["unmeasurable"] else yn[r["reaches_target"]]
            lines.append(f"| {r['task']} | {LABELS[r['metric']]} | {base} | {proj} | {r['target']} | "
                         f"{yn[r['beats_baseline']]} | {verdict} |")
        lines.append("")
        lines += [f"Fusion over the best single modality ({r['task']}): {r['fusion_gain']}." for r in targets
                  if r.get("fusion_gain")] + [""]
    for task, out in zip(tasks, outs):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(out["split_counts"].items()))
        lines += [f"## {task.name}", "", f"Rows: {counts}; classes: {', '.join(out['classes'])}.", ""]
        lines += [*task.notes, ""] if task.notes else []
        lines += ["Test-set figures in percent, with seeded bootstrap 95% intervals "
                  f"({opts.bootstrap} resamples of the {out['n_test']} test samples).", "",
                  results_table(out["results"], out["best"], task.metric), "",
                  "ECE: expected calibration error on test (15 equal-width confidence bins), as the model predicts → "
                  "after one temperature fitted on validation (which never changes a prediction); late fusion rows "
                  "already carry temperatures fitted on validation. Reliability diagrams: `<task>/runs/<model>/reliability.png`.",
                  "", *versus_product_lines(out["results"])]
        shown_rows = [out["best"]] + [n for n, e in out["results"].items() if e["kind"] == "baseline"]
        for shown in shown_rows:
            if shown:
                lines += [f"Per class, {shown}:", "", per_class_md(out["results"][shown]["per_class"]), ""]
        if out["best"]:
            lines += [f"![confusion matrix of {out['best']}]({task.name}/confusion.png)", ""]
            run_dir = out["results"][out["best"]].get("run_dir")
            if run_dir and (out_dir / task.name / run_dir / "reliability.png").is_file():
                lines += [f"![reliability diagram of {out['best']}]({task.name}/{run_dir}/reliability.png)", ""]
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
