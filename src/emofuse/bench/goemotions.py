"""goemotions: GoEmotions Reddit comments, text only, official split. Two tasks:

  goemotions-ekman  Ekman's 6 emotions + neutral, single-label: the comments with exactly one label
  goemotions-28     the 27 emotions + neutral, multi-label: every comment, a multi-hot target,
                    binary cross-entropy (train.multi_label) and one decision threshold fitted on
                    validation; macro F1 over the 28 labels is the field's headline figure (the
                    paper's fine-tuned BERT: 46)

Both read the same comments, so their features are extracted once (the cache is keyed by comment id)."""

from __future__ import annotations

from emofuse.bench import BENCHMARKS
from emofuse.bench.driver import (
    Baseline,
    BenchOptions,
    BenchSpec,
    ModelRun,
    Target,
    Task,
    final_manifest,
    prepared,
    resolve_root,
    with_eval_rows,
)


@BENCHMARKS.register("goemotions")
def bench_goemotions(opts: BenchOptions) -> BenchSpec:
    out = opts.out
    root = resolve_root(opts.data, "goemotions")
    text = opts.encoders.get("text", "minilm")
    mlp = {"hidden": 256, "dropout": 0.3}
    runs = [
        ModelRun("unimodal", "unimodal", {"text": text}, mlp, data={"batch_size": 256}),
        # attention pooling over the frozen token states instead of their plain mean
        ModelRun("unimodal(tokens)", "unimodal", {"text": text}, mlp | {"pooling": "attention"},
                 data={"batch_size": 256, "sequence": {"text": True}}),
    ]
    tasks = []
    for name, variant, multi, metric in (("goemotions-ekman", "ekman", False, "weighted_f1"),
                                         ("goemotions-28", "original", True, "macro_f1")):
        manifest = prepared("goemotions", root, out / "prepared" / f"{variant}.csv", opts,
                            variant=variant, multi_label=multi)
        if opts.eval_data:
            ev = prepared("goemotions", resolve_root(opts.eval_data, "goemotions"), out / "prepared" / f"eval-{variant}.csv",
                          opts, variant=variant, multi_label=multi, check_counts=False)
            manifest = with_eval_rows(manifest, ev)
        path = final_manifest(manifest, out / name / "manifest.csv", opts)
        excluded = manifest.meta.get("rows_excluded", 0)
        notes = ([f"Single-label task: the {excluded} comments with more than one Ekman label are left out "
                  "(counted in prepared/ekman.rejects.csv)."] if not multi else
                 ["Multi-label task: accuracy is the exact-match (subset) accuracy, UAR the mean recall over labels, "
                  "weighted/macro F1 over the 28 labels; micro F1 is in metrics.json. The decision threshold on "
                  "the per-label sigmoids (one for all labels) is chosen on validation."])
        tasks.append(Task(
            name, path, [text], runs,
            baselines=[Baseline("baseline-linear", {"text": text})],
            multi_label=multi, extract={"batch_size": 256},  # length-sorted batches: little padding
            train={"lr": 1e-3, "max_epochs": 40, "patience": 6, "mse_weight": 0.0},
            targets=[Target(metric, None, "beat the linear baseline on the same features")],
            notes=notes, monitor=f"val_{metric}",
        ))
    intro = ["GoEmotions (Reddit comments), official split: Ekman 7-class single-label, and the 28-label multi-label task."]
    return BenchSpec(tasks, intro)
