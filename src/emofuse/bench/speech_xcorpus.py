"""speech-xcorpus: speech emotion across corpora, leave one corpus out, in one 7-class space.

Corpora: RAVDESS speech (English, acted; calm dropped, as bench ravdess's 7-class task does),
nEMO (Polish, acted; no disgust) and URDU (Urdu, natural; four classes), labels in labels.SPEECH7
(neutral, happy, sad, angry, fearful, disgust, surprised). A corpus lacking a class has no rows of
it: nothing is invented, and a model trained without a class simply never sees it.

Tasks (one per protocol, each a manifest of the one corpus "speech-xcorpus", so features are
extracted once per clip and shared):

    loco-<corpus>  train on the other corpora (their train and test speakers), validate on their
                   held-out val speakers (each adapter's seeded speaker split), test on every clip
                   of <corpus>. Nothing of the left-out corpus is trained on or chosen with.
    eval-<folder>  per --eval-data (repeatable): all corpora train and validate as above, every
                   clip of the folder (labels.csv: path,label,speaker) is test. Labels outside the
                   7-class space are counted in the report and never scored.
    all            every corpus split by speaker as its adapter splits it (train / val / test):
                   the within-corpus reference, and the model to keep (trained on all corpora,
                   chosen on validation), for `emofuse evaluate` and `emofuse predict --model`.
    select-<L>-<H> with -o select=corpus: the same protocol inside loco-<L>'s training corpora, <H>
                   left out (every clip of <H> is its test). A second way to choose loco-<L>'s row,
                   by the mean of these scores: validation that is itself across corpora, as the
                   task is, where held-out speakers of the training corpora reward what only holds
                   within a corpus (per-speaker standardisation, on URDU). Nothing of <L> is read.

Metrics are over the classes present in each test corpus (weighted F1 weights by support; UAR and
macro F1 average the classes that occur); predicting a class the test corpus lacks counts as an
error. Inputs: --encoder audio=A+B (default whisper-base+egemaps), standardised label-free by
groups, each with its own statistics (data.standardise: per_speaker over the manifest's speaker
column): per speaker, and per corpus (a second manifest of the same rows whose speaker column is the
corpus), rows of both side by side in one task, so that validation chooses between them; and one
train-standardised row and baseline, to check on validation that either helps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from emofuse.bench import BENCHMARKS, BenchConfig
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
)
from emofuse.corpora.base import Manifest
from emofuse.labels import SPEECH7

CORPUS = "speech-xcorpus"  # the tasks' manifests: one corpus name, so the feature cache is shared
ROOTS = {"ravdess": ("ravdess_speech", "ravdess"), "nemo": ("nemo",), "urdu": ("urdu",)}
DEFAULT_AUDIO = "whisper-base+egemaps"
# A speaker with fewer clips than this is standardised with the statistics of its corpus's other
# few-clip speakers (URDU has 15 speakers of 2-6 clips): the dataset's own fallback for such speakers
# pools every corpus, which would normalise a 2-clip Urdu speaker by mostly Polish statistics.
MIN_SPEAKER_CLIPS = 10
TARGET_MARGIN = 0.03
TARGET_TEXT = (f"beat the strongest linear baseline on every left-out corpus, mean margin ≥ {100 * TARGET_MARGIN:.0f} "
               "weighted-F1 points (issue 23)")


NORMALISE = ("both", "speaker", "corpus")
SELECT = ("val", "corpus")
PER_CORPUS = ", per corpus"  # in the names of the rows standardised per corpus


class Options(BenchConfig):
    corpora: str | list[str] = Field("ravdess,nemo,urdu", description="the corpora to use (at least two)")
    check_counts: bool = Field(True, description="nEMO and URDU must hold their release's counts (false for a "
                                                 "subset or a synthetic copy)")
    within: bool = Field(True, description="also run the `all` task, whose chosen run is the model kept for later use")
    normalise: str = Field("both", description="the groups rows are standardised by (label-free): speaker, corpus, "
                                               "or both (every row in both forms, validation chooses)")
    select: str = Field("val", description="val: each task's project row is its best on validation; corpus: also "
                                           "the select-<L>-<H> tasks, which choose loco-<L>'s row too (three corpora)")


@BENCHMARKS.register("speech-xcorpus", options=Options, many_eval_data=True)  # --eval-data given more than once
def bench_speech_xcorpus(opts: BenchOptions, corpora: str | list[str] = "ravdess,nemo,urdu",
                         check_counts: bool = True, within: bool = True, normalise: str = "both",
                         select: str = "val") -> BenchSpec:
    """corpora: those to use (at least two). check_counts: nEMO and URDU must hold their release's
    counts (false for a subset or a synthetic copy). within: also run the `all` task, whose chosen
    run is the model kept for later use. normalise: the groups the standardised rows standardise
    by, each with its own statistics (label-free): speaker, corpus (all clips of one corpus and
    split together: removes the corpus's recording and language offset but keeps the differences
    between its speakers, which in URDU go with the class), or both (default): every row and
    baseline in both forms, the per-corpus ones named "..., per corpus", and validation chooses.
    select: val (the project row of each task is the best on its validation rows), or corpus: also
    the select-<L>-<H> tasks (see the module's docstring), and loco-<L>'s row chosen by them too,
    reported beside the first choice (needs three corpora)."""
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISE)}, not {normalise!r}")
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}, not {select!r}")
    names = corpora.split(",") if isinstance(corpora, str) else list(corpora)
    unknown = sorted(set(names) - set(ROOTS))
    if unknown or len(names) < 2:
        raise ValueError(f"corpora: at least two of {', '.join(ROOTS)}, not {names}")
    if select == "corpus" and len(names) < 3:
        raise ValueError("select=corpus leaves a training corpus out of each loco task's training corpora: "
                         f"it needs three corpora, not {names}")
    out = Path(opts.out)
    parts: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for name in names:
        root = resolve_root(opts.data, *ROOTS[name])
        kw = {"vocal_channel": "speech"} if name == "ravdess" else {"check_counts": check_counts}
        m = prepared(name, root, out / "prepared" / f"{name}.csv", opts, **kw)
        parts[name], note = in_space(m, name)
        notes.append(note)
    evals = []
    for i, folder in enumerate(opts.eval_folders):
        tag = _unique_tag(Path(folder).name or f"eval{i}", [t for t, *_ in evals] + names)
        df, unknown_labels = _eval_rows(Path(folder), tag, out, opts)
        evals.append((tag, df, unknown_labels))

    audio = opts.encoders.get("audio", DEFAULT_AUDIO)
    specs = [s for s in audio.split("+") if s.strip()]
    encs = [feature_name(s) for s in specs]
    train = {"lr": 1e-3, "max_epochs": 100, "patience": 15, "mse_weight": 0.0}
    tasks = []

    def task(name: str, df: pd.DataFrame, target: Target | None, task_notes: list[str], baselines: bool = True) -> Task:
        df = df.reset_index(drop=True)
        meta = {"corpora": sorted(set(df["id"].str.split(":").str[0]))}
        by_speaker, by_corpus = df, df.assign(speaker=df["corpus_group"])
        if normalise == "corpus":
            by_speaker = by_corpus
        path = final_manifest(Manifest(CORPUS, SPEECH7, by_speaker, meta), out / name / "manifest.csv", opts)
        corpus_path = None
        if normalise == "both":  # the same rows (the same --limit draw), grouped by corpus
            corpus_path = final_manifest(Manifest(CORPUS, SPEECH7, by_corpus, meta),
                                         out / name / "manifest-per-corpus.csv", opts)
        runs, linear = _rows(encs, normalise, corpus_path)
        return Task(name, path, specs, runs, baselines=linear if baselines else [], train=train,
                    targets=[target] if target else [], notes=task_notes)

    loco = Target("weighted_f1", None, TARGET_TEXT)
    for name in names:
        others = pd.concat([_as_training(parts[o]) for o in names if o != name], ignore_index=True)
        test = parts[name].assign(split="test", fold=-1)
        tasks.append(task(f"loco-{name}", pd.concat([others, test], ignore_index=True), loco,
                          [f"Left out: {name} (every clip is test); trained on {', '.join(o for o in names if o != name)}: "
                           "their train and test speakers train, their val speakers validate."]))
    if select == "corpus":
        for name in names:
            inner = [o for o in names if o != name]
            for held in inner:
                rest = [o for o in inner if o != held]
                others = pd.concat([_as_training(parts[o]) for o in rest], ignore_index=True)
                test = parts[held].assign(split="test", fold=-1)
                tasks.append(task(f"select-{name}-{held}", pd.concat([others, test], ignore_index=True), None,
                                  [f"Choosing loco-{name}'s row (select=corpus): {held} left out of its training "
                                   f"corpora (every clip is test here); trained on {', '.join(rest)}. No baselines."],
                                  baselines=False))
    everyone = pd.concat([_as_training(parts[o]) for o in names], ignore_index=True)
    reference = Target("weighted_f1", None, "beat the linear baselines (reference task, no figure set)")
    for tag, df, unknown_labels in evals:
        counts = "; ".join(f"{k}: {v}" for k, v in unknown_labels.most_common()) or "none"
        tasks.append(task(f"eval-{tag}", pd.concat([everyone, df], ignore_index=True), reference,
                          [f"--eval-data {tag}: every clip is test, never trained on; trained on {', '.join(names)}. "
                           f"Labels outside the 7-class space (not scored): {counts}."]))
    if within:
        tasks.append(task("all", pd.concat([parts[o] for o in names], ignore_index=True), reference,
                          ["Every corpus split by speaker as its adapter splits it: a within-corpus reference "
                           "(test speakers unseen, corpora seen), and the model kept for later use."]))
    encs_text = " + ".join(encs)
    intro = [
        f"Speech emotion across corpora ({', '.join(names)}), leave one corpus out, 7 classes "
        f"({', '.join(SPEECH7.classes)}); inputs: {encs_text}.",
        *notes,
        "Metrics are over the classes present in each test corpus: weighted F1 weights each class by its "
        "test support, UAR and macro F1 average the classes that occur; predicting a class the test corpus "
        "lacks is an error. Validation (held-out speakers of the training corpora) chooses every epoch, C "
        "and the project's row; the left-out corpus chooses nothing.",
        _normalise_text(normalise),
    ]
    intro = [x for line in intro for x in (line, "")][:-1]  # paragraphs, not one run-on paragraph in markdown
    return BenchSpec(tasks, intro, after=lambda ts, outs: _summary(ts, outs, names, opts))


def _normalise_text(normalise: str) -> str:
    """The report's line on how inputs are standardised."""
    corpus = "each corpus's inputs are standardised by that corpus's own statistics, per adapter split (label-free)"
    speaker = ("each speaker's inputs are standardised by its own statistics (label-free), speakers with fewer "
               f"than {MIN_SPEAKER_CLIPS} clips by their corpus's few-clip speakers pooled")
    text = {"speaker": speaker, "corpus": corpus,
            "both": f"rows named '{PER_CORPUS.removeprefix(', ')}': {corpus}; the others: {speaker}"}[normalise]
    return (text[0].upper() + text[1:] + "; rows marked train-standardised skip this. Validation chooses among all "
            "of them (the inputs column says 'per speaker' for either kind of group).")


def _rows(encs: list[str], normalise: str = "speaker", corpus_manifest: Path | None = None
          ) -> tuple[list[ModelRun], list[Baseline]]:
    """The project's rows and the linear baselines on the same features, once per normalisation
    (normalise=both: the per-corpus ones read `corpus_manifest` and are named "..., per corpus")."""
    forms = [("", None)] if normalise != "both" else [("", None), (PER_CORPUS, corpus_manifest)]
    per_speaker = {"standardise": "per_speaker", "batch_size": 64}
    mlp = {"hidden": 256, "dropout": 0.3}
    both = "+".join(encs)
    runs, baselines = [], []
    for tag, manifest in forms:
        runs += [ModelRun(f"unimodal({e}{tag})", "unimodal", {"audio": e}, mlp, data=per_speaker, manifest=manifest)
                 for e in encs]
        baselines += [Baseline(f"baseline-linear({e}{tag})", {"audio": e}, "per_speaker", manifest=manifest) for e in encs]
        if len(encs) > 1:
            runs.append(ModelRun(f"ensemble({both}{tag})", "ensemble", {"audio": list(encs)}, mlp, data=per_speaker,
                                 manifest=manifest))
            # the first input's member linear: on whisper-base the linear baseline matches the MLP across
            # corpora, and a linear member has fewer ways to learn a training corpus's own cues
            runs.append(ModelRun(f"ensemble({both}{tag}, {encs[0]} linear)", "ensemble", {"audio": list(encs)},
                                 {**mlp, "linear": [encs[0]]}, data=per_speaker, manifest=manifest))
            # nEMO is ~80% of the training clips when RAVDESS or URDU is left out, and its class mix is
            # not theirs: class-balanced CE so the training prior is not one corpus's
            runs.append(ModelRun(f"ensemble({both}{tag}, balanced classes)", "ensemble", {"audio": list(encs)}, mlp,
                                 data=per_speaker, train={"class_weights": "balanced"}, manifest=manifest))
            baselines.append(Baseline(f"baseline-linear({both}{tag})", {"audio": list(encs)}, "per_speaker",
                                      manifest=manifest))
    runs.append(ModelRun(f"unimodal({encs[0]}, train-standardised)", "unimodal", {"audio": encs[0]}, mlp,
                         data={"batch_size": 64}))
    feats = {"audio": list(encs) if len(encs) > 1 else encs[0]}
    baselines.append(Baseline(f"baseline-linear({both}, train-standardised)", feats, "train"))
    return runs, baselines


def feature_name(spec: str) -> str:
    """The cache name of an encoder spec ("mfcc@stats=mean_std" -> "mfcc-mean_std"), as training reads it."""
    spec = spec.strip()
    if spec.startswith("hf:") or "@" in spec:
        from emofuse.features.encoders.hf import build_encoder

        return build_encoder(spec).name
    return spec


def in_space(m: Manifest, corpus: str) -> tuple[pd.DataFrame, str]:
    """A corpus's rows in the 7-class space, ids and speakers prefixed by the corpus, and a line
    that says what was dropped."""
    df = m.df[m.df["split"] != "unlabeled"].copy()
    dropped = Counter(lab for lab in df["label"] if not SPEECH7.is_known(lab))  # RAVDESS's calm
    df = df[df["label"].map(SPEECH7.is_known)].copy()
    df["label"] = df["label"].map(SPEECH7.normalise)
    df = _prefixed(df, corpus)
    classes = Counter(df["label"])
    absent = [c for c in SPEECH7.classes if not classes.get(c)]
    note = (f"{corpus}: {len(df)} clips of {df['speaker'].nunique()} speaker normalisation groups"
            + (f", {sum(dropped.values())} dropped ({', '.join(f'{k} {v}' for k, v in dropped.items())})" if dropped else "")
            + (f"; no {', '.join(absent)} clips" if absent else "")
            + f"; rejected at prepare: {m.meta.get('rows_rejected', 0)}.")
    return df, note


def _prefixed(df: pd.DataFrame, corpus: str) -> pd.DataFrame:
    """Ids and speakers named by their corpus, so neither can collide across corpora; a speaker with
    fewer than MIN_SPEAKER_CLIPS clips joins the group of such speakers of its corpus and split (see
    the constant; by split, so that a group never holds both training and validation speakers).
    Column corpus_group: the per-corpus normalisation group (every speaker of a corpus and split)."""
    df = df.copy()
    n = df["speaker"].map(df["speaker"].value_counts())
    few = corpus + ":few-clip speakers (" + df["split"].astype(str) + ")"
    df["corpus_group"] = corpus + ":all speakers (" + df["split"].astype(str) + ")"
    df["speaker"] = np.where((df["speaker"] == "") | (n < MIN_SPEAKER_CLIPS), few, corpus + ":" + df["speaker"].astype(str))
    df["id"] = corpus + ":" + df["id"].astype(str)
    return df


def _as_training(df: pd.DataFrame) -> pd.DataFrame:
    """A training corpus's rows: its val speakers validate, all the others (test speakers too) train."""
    return df.assign(split=np.where(df["split"] == "val", "val", "train"))


def _eval_rows(folder: Path, tag: str, out: Path, opts: BenchOptions) -> tuple[pd.DataFrame, Counter]:
    """An --eval-data folder's labelled rows (all test), and the count of each label outside the space."""
    from emofuse.corpora.base import read_table

    table = folder / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"--eval-data {folder}: no labels.csv (columns path,label,speaker)")
    raw, _ = read_table(table, required=("path", "label", "speaker"))
    unknown = Counter(lab.strip().lower() for lab in raw["label"] if lab.strip() and not SPEECH7.is_known(lab))
    m = prepared("csv", table, out / "prepared" / f"eval-{tag}.csv", opts, label_set=SPEECH7.name, audio_col="path",
                 speaker_col="speaker", id_col="path", all_test=True)
    df = m.df[m.df["split"] == "test"].assign(fold=-1)
    return _prefixed(df, f"eval-{tag}"), unknown


def _verdict(margins: list[float]) -> str:
    met = all(m > 0 for m in margins) and np.mean(margins) >= TARGET_MARGIN
    return (f"mean margin {100 * np.mean(margins):+.1f} points, beats on {sum(m > 0 for m in margins)} of "
            f"{len(margins)} left-out corpora: {'met' if met else '**not met**'}")


def inner_scores(left: str, inner: dict[str, dict]) -> dict[str, float]:
    """Each project row's mean test weighted F1 over the select-<left>-<H> tasks (rows they all have)."""
    outs = [o for n, o in inner.items() if n.startswith(f"select-{left}-")]
    rows = [r for r, e in outs[0]["results"].items() if e["kind"] == "project"] if outs else []
    return {r: float(np.mean([o["results"][r]["weighted_f1"] for o in outs]))
            for r in rows if all(r in o["results"] for o in outs)}


def _inner_choice(loco: list, inner: dict[str, dict]) -> list[str]:
    """The row each loco task would take when chosen across corpora inside its training corpora
    (select=corpus), against the same strongest baseline, and the target for that choice."""
    lines = ["", "## Chosen across the training corpora (select=corpus)", "",
             "Each loco-<L> row scored by leaving each of <L>'s training corpora out in turn (tasks select-<L>-<H>: "
             "trained on the others, every clip of <H> tested); the row with the best mean is chosen. <L> is never read.",
             "", "| left out | chosen across training corpora | its select score | test wF1 | strongest baseline (on test) "
             "| test wF1 | margin |", "|---|---|---:|---:|---|---:|---:|"]
    margins = []
    for t, o in loco:
        left = t.name.removeprefix("loco-")
        scores = inner_scores(left, inner)
        res = o["results"]
        bases = {n: e for n, e in res.items() if e["kind"] == "baseline"}
        scores = {r: v for r, v in scores.items() if r in res}
        if not scores or not bases:
            continue
        best = max(scores, key=scores.get)
        top = max(bases, key=lambda n: bases[n]["weighted_f1"])
        margin = res[best]["weighted_f1"] - bases[top]["weighted_f1"]
        margins.append(margin)
        lines.append(f"| {left} | {best} | {100 * scores[best]:.1f} | {100 * res[best]['weighted_f1']:.1f} | {top} | "
                     f"{100 * bases[top]['weighted_f1']:.1f} | {100 * margin:+.1f} |")
    if margins:
        lines += ["", f"Target ({TARGET_TEXT}), the row chosen across the training corpora: {_verdict(margins)}."]
    return lines


def _unique_tag(name: str, taken: list[str]) -> str:
    tag, i = name, 2
    while tag in taken:
        tag, i = f"{name}{i}", i + 1
    return tag


def _summary(tasks: list[Task], outs: list[dict], names: list[str], opts: BenchOptions) -> list[str]:
    """The cross-corpus table (every row's test weighted F1 per task, and its validation figure),
    the chosen row against the strongest baseline per left-out corpus, the target, and the kept model."""
    inner = {t.name: o for t, o in zip(tasks, outs) if t.name.startswith("select-")}
    kept_tasks = [(t, o) for t, o in zip(tasks, outs) if not t.name.startswith("select-")]
    tasks, outs = [t for t, _ in kept_tasks], [o for _, o in kept_tasks]
    rows = list(dict.fromkeys(r for out in outs for r in out["results"]))
    head = "| model | kind | " + " | ".join(t.name for t in tasks) + " | mean (loco) |"
    lines = ["## Across corpora (test weighted F1; val in parentheses)", "", head,
             "|---|---|" + "---:|" * (len(tasks) + 1)]
    loco = [(t, o) for t, o in zip(tasks, outs) if t.name.startswith("loco-")]
    for r in rows:
        kind = next(o["results"][r]["kind"] for o in outs if r in o["results"])
        if kind == "reference":
            continue
        cells, scores = [], []
        for t, o in zip(tasks, outs):
            e = o["results"].get(r)
            if e is None:
                cells.append("")
                continue
            v = e["val"]["weighted_f1"] if e.get("val") else (e.get("fitted") or {}).get("val_weighted_f1")
            val = "" if v is None else f" ({100 * v:.1f})"
            cell = f"{100 * e['weighted_f1']:.1f}{val}"
            cells.append(f"**{cell}**" if r == o["best"] else cell)
            if t.name.startswith("loco-"):
                scores.append(e["weighted_f1"])
        mean = f"{100 * np.mean(scores):.1f}" if len(scores) == len(loco) and scores else ""
        lines.append(f"| {r} | {kind} | " + " | ".join(cells) + f" | {mean} |")
    lines += ["", "Bold: the project row chosen on validation in that task.", ""]
    margins = []
    lines += ["| left out | chosen on validation | test wF1 | strongest baseline (on test) | test wF1 | margin "
              "| baseline chosen on validation | test wF1 | margin |",
              "|---|---|---:|---|---:|---:|---|---:|---:|"]
    for t, o in loco:
        res, best = o["results"], o["best"]
        bases = {n: e for n, e in res.items() if e["kind"] == "baseline"}
        if best is None or not bases:
            continue
        top = max(bases, key=lambda n: bases[n]["weighted_f1"])
        margin = res[best]["weighted_f1"] - bases[top]["weighted_f1"]
        margins.append(margin)
        # the baseline a user would pick as the project row is picked: an informative second comparison,
        # never the target's (which takes the strongest on test)
        fair = max(bases, key=lambda n: bases[n]["fitted"]["val_weighted_f1"])
        fair_margin = res[best]["weighted_f1"] - bases[fair]["weighted_f1"]
        lines.append(f"| {t.name.removeprefix('loco-')} | {best} | {100 * res[best]['weighted_f1']:.1f} | {top} | "
                     f"{100 * bases[top]['weighted_f1']:.1f} | {100 * margin:+.1f} | {fair} | "
                     f"{100 * bases[fair]['weighted_f1']:.1f} | {100 * fair_margin:+.1f} |")
    if margins:
        lines += ["", f"Target ({TARGET_TEXT}), the row chosen on validation: {_verdict(margins)}. "
                      "The baseline compared is the strongest on test, which favours it."]
    if inner:
        lines += _inner_choice(loco, inner)
    kept = next(((t, o) for t, o in zip(tasks, outs) if t.name == "all"), None)
    if kept is None:
        kept = next(((t, o) for t, o in zip(tasks, outs) if t.name.startswith("eval-")), None)
    if kept is not None and kept[1]["best"]:
        t, o = kept
        path = (Path(opts.out) / t.name / o["results"][o["best"]]["run_dir"]).resolve()
        (Path(opts.out) / "chosen_model.txt").write_text(f"{path}\n")
        lines += ["", f"Kept model (task {t.name}, chosen on validation: {o['best']}, trained on "
                      f"{', '.join(names)}): `{path}`; use it with `emofuse evaluate '{path}' --data MANIFEST --out DIR` "
                      f"or `emofuse predict CLIP --model '{path}'` (its path is also in chosen_model.txt)."]
    return lines
