"""Real-data benchmarks (`emofuse bench NAME --data DIR --out DIR`): each prepares a corpus,
extracts features with the offline built-in encoders (or any registered encoder by flag), trains
the project's models through the one training loop, optionally fits a logistic-regression baseline
on the same features in the same run, and writes metrics.json (model -> accuracy, uar, weighted_f1,
macro_f1 with seeded bootstrap 95% intervals), report.md, per-class scores and confusion matrices.

    meld-text   MELD's official split, text only, with and without dialogue context
    ravdess     RAVDESS speech, speaker-independent (by actor), 8 classes and 7 without calm
    fer2013     FER2013 faces through the video pipeline's face path
    goemotions  GoEmotions text, Ekman 7-class (single-label rows) and the 28-label multi-label task
    paired      a tri-modal set paired by class from MELD text, RAVDESS speech and FER2013 faces
    speech-xcorpus  speech across corpora: leave one of RAVDESS, nEMO and URDU out, 7 shared classes

One function per benchmark (in its own module) builds the tasks; `driver` runs them."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from emofuse.bench.driver import BenchOptions

# name -> "module:function"; imported on use so that `emofuse bench --help` stays fast
BENCHMARKS: dict[str, str] = {
    "meld-text": "emofuse.bench.meld_text:bench_meld_text",
    "ravdess": "emofuse.bench.ravdess:bench_ravdess",
    "fer2013": "emofuse.bench.fer2013:bench_fer2013",
    "goemotions": "emofuse.bench.goemotions:bench_goemotions",
    "paired": "emofuse.bench.paired:bench_paired",
    "ckplus": "emofuse.bench.ckplus:bench_ckplus",
    "speech-xcorpus": "emofuse.bench.speech_xcorpus:bench_speech_xcorpus",
}


def get_benchmark(name: str) -> Callable:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    module, func = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_bench(name: str, opts: BenchOptions, **options) -> dict:
    """Run one benchmark; returns the metrics.json mapping. `options` are the benchmark's own
    (e.g. context=3 for meld-text, eval_sources for paired)."""
    from emofuse.bench.driver import run_task
    from emofuse.bench.report import write_bench
    from emofuse.training.run import _quiet_lightning

    _quiet_lightning()
    opts.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build = get_benchmark(name)
    if opts.extra_eval_data and not getattr(build, "many_eval_data", False):
        raise ValueError(f"--eval-data given {len(opts.eval_folders)} times; bench {name} takes one folder")
    spec = build(opts, **options)  # prepares the manifests; returns tasks and report text
    timings = {"prepare": time.perf_counter() - t0}
    outs = []
    for task in spec.tasks:
        t = time.perf_counter()
        outs.append(run_task(task, opts))
        timings[task.name] = time.perf_counter() - t
    if spec.after is not None:  # e.g. the paired benchmark's MER-style table
        spec.closing.extend(spec.after(spec.tasks, outs))
    timings["total"] = time.perf_counter() - t0
    return write_bench(name, spec.tasks, outs, opts, spec.intro, timings, spec.closing)


__all__ = ["BENCHMARKS", "BenchOptions", "get_benchmark", "run_bench"]
