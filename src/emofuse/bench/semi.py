"""semi: learning from unlabelled rows by pseudo-labelling (train.pseudo_label), measured against the
same model on the labelled rows alone and on every label. Three seeds per row (train.seeds); each row's
epochs, and each pseudo-labelled run's round, chosen on validation.

  meld-<p>pct      MELD text, frozen MiniLM sentence vectors, an MLP: <p> % of the training utterances keep
                   their labels (stratified, seeded); the rest are unlabelled (their labels kept apart as
                   hidden_label, to score the pseudo-labels, never trained on). Dev validates, test as always.
  meld-full        the same model on every training label: the ceiling (-o ceiling=false leaves it out).
                   With -o meld_model=finetune, the model is MiniLM fine-tuned end to end on the utterances
                   (finetune_text, bench meld-text's recipe with FINETUNE_EPOCHS epochs, as a small labelled
                   set needs more passes); its pseudo-labels weigh 1.0 (-o weight=1), as raw-text batches
                   carry no row weights.
  speech-nemo      speech (Whisper-base + eGeMAPS, standardised per speaker): RAVDESS labelled (its train
                   speakers train, its val speakers validate); nEMO's train and val speakers unlabelled
                   (hidden labels); nEMO's test speakers test. Nothing of nEMO's labels chooses anything.
  speech-nemo-full the same with nEMO's training speakers' labels: the ceiling.
  speech-urdu(-full) the same with URDU (Urdu talk shows, four classes) in nEMO's place (-o settings=speech-urdu):
                   a second unlabelled corpus, to confirm on other speakers a setting chosen on nEMO.

Rows: supervised-only (the unlabelled rows left out), pseudo-labelled with a confidence threshold, and
with each predicted class's most confident fraction (one round, pseudo-labels weighted 0.5 in the loss;
the teacher is the three seeds' mean); -o pseudo_rows=all keeps every unlabelled row, and -o soft=true
gives the kept rows the teacher's probabilities instead of its top class (distillation); -o align=labelled
or em re-weights the teacher's probabilities per class first (train.pseudo_label.align); -o classes=corpus
lets a pseudo-label name only the unlabelled corpus's published classes (train.pseudo_label.classes: nEMO
has no disgust; from its adapter's release record, not from its hidden labels). The summary
gives the 3-seed means, the margins against the issue's targets (MELD +2 weighted F1, speech +3) and the
kept pseudo-labels' accuracy per class."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from emofuse.bench import BENCHMARKS, BenchConfig
from emofuse.bench.driver import BenchOptions, BenchSpec, ModelRun, Target, Task, final_manifest, prepared, resolve_root
from emofuse.corpora.base import Manifest

SUPERVISED, FULL = "supervised-only", "supervised (every label)"
TARGETS = {"meld": 0.02, "speech": 0.03}  # the issue's: the pseudo-labelled student over supervised-only


class Options(BenchConfig):
    settings: str = Field("meld,speech", description="which settings to run: meld, speech (nEMO unlabelled), speech-urdu "
                                                     "(URDU unlabelled), comma-separated")
    labelled: float = Field(0.1, gt=0.0, lt=1.0, description="MELD: the fraction of training utterances that keep their label")
    seeds: int = Field(3, ge=1, description="seeds per row (train.seeds 0..n-1); figures are their means")
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="the threshold row's confidence threshold")
    top_fraction: float = Field(0.5, gt=0.0, le=1.0, description="the top-fraction row's share of each predicted class")
    weight: float = Field(0.5, gt=0.0, description="a pseudo-labelled row's weight in the loss")
    rounds: int = Field(1, ge=1, description="teacher -> pseudo-labels -> student rounds")
    meld_model: str = Field("mlp", description="MELD's model: mlp (frozen MiniLM sentence vectors, an MLP) or finetune "
                                               "(MiniLM fine-tuned end to end; needs weight=1)")
    pseudo_rows: str = Field("threshold,top", description="the pseudo-labelled rows to run (comma-separated): threshold, "
                                                          "top, all (every unlabelled row kept)")
    soft: bool = Field(False, description="pseudo-labelled rows keep the teacher's probabilities and learn by "
                                          "cross-entropy against them (train.pseudo_label.soft)")
    ceiling: bool = Field(True, description="also the every-label rows (meld-full, speech-nemo-full)")
    align: str = Field("none", description="the teacher's probabilities re-weighted per class before choosing "
                                           "(train.pseudo_label.align): none, labelled, em, or several "
                                           "comma-separated (one set of pseudo-labelled rows each)")
    classes: str = Field("all", description="the classes a pseudo-label may name (train.pseudo_label.classes): all (the "
                                            "label set's), corpus (the unlabelled corpus's published classes: nEMO has "
                                            "no disgust; MELD has every class, so its rows are the same), or both "
                                            "comma-separated (one set of pseudo-labelled rows each)")


# MELD fine-tuned (meld_model=finetune): bench meld-text's finetune_text recipe, but up to this many epochs,
# the epoch still chosen on dev: a tenth of MELD is 31 steps an epoch at batch 32, where the full set's 3 epochs
# are 936 steps
FINETUNE_EPOCHS = 6


def _hide(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """These rows unlabelled, their labels kept apart in hidden_label."""
    df = df.copy()
    if "hidden_label" not in df:
        df["hidden_label"] = ""
    df.loc[rows, "hidden_label"] = df.loc[rows, "label"]
    df.loc[rows, ["label", "soft_label"]] = ""
    df.loc[rows, "split"] = "unlabeled"
    return df


PSEUDO_ROWS = ("threshold", "top", "all")


def _rows(model: str, features: dict, params: dict, data: dict, seeds: list[int], o: Options,
          corpus: tuple[str, list[str]] | None = None) -> list[ModelRun]:
    """The rows of a setting; `corpus`: the unlabelled corpus's name and published classes, for -o classes=corpus
    (None: it has every class, and no rows of their own are made)."""
    base = {"seeds": seeds}
    pl = {"weight": o.weight, "rounds": o.rounds, "soft": o.soft}
    soft = ", soft" if o.soft else ""
    wanted = _pseudo_rows(o.pseudo_rows)
    rows = [ModelRun(SUPERVISED, model, features, params, data=data, train=base)]
    kinds = {"threshold": (f"threshold {o.threshold:g}", {"threshold": o.threshold}),
             "top": (f"top {o.top_fraction:g} per class", {"top_fraction": o.top_fraction}),
             "all": ("every row", {"top_fraction": 1.0})}
    wanted_sets = _class_sets(o.classes)
    sets = [("", [])] if "all" in wanted_sets or corpus is None else []  # a corpus with every class: the same rows
    if "corpus" in wanted_sets and corpus is not None:
        sets.append((f", {corpus[0]}'s classes", list(corpus[1])))
    aligned = {"none": "", "labelled": ", aligned to the labelled shares", "em": ", aligned by EM"}
    for (named, classes), way, kind in product(sets, _aligns(o.align), [k for k in PSEUDO_ROWS if k in wanted]):
        what, how = kinds[kind]
        rows.append(ModelRun(f"pseudo-labelled ({what}{soft}{aligned[way]}{named})", model, features, params,
                             data=data, train=base | {"pseudo_label": pl | how | {"align": way, "classes": classes}}))
    return rows


ALIGNS = ("none", "labelled", "em")


def _choices(option: str, spec: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated option's values, each one of `allowed` (at least one)."""
    wanted = [r.strip() for r in spec.split(",") if r.strip()]
    if not wanted or set(wanted) - set(allowed):
        raise ValueError(f"{option}: one or more of {', '.join(allowed)} (comma-separated), not {spec!r}")
    return wanted


def _aligns(spec: str) -> list[str]:
    return _choices("align", spec, ALIGNS)


def _class_sets(spec: str) -> list[str]:
    return _choices("classes", spec, ("all", "corpus"))


def _pseudo_rows(spec: str) -> list[str]:
    return _choices("pseudo_rows", spec, PSEUDO_ROWS)


def _meld_model(o: Options, text: str) -> tuple[str, dict, dict, dict, dict, str]:
    """MELD's model: (name, features, params, data, train, what it is in words)."""
    if o.meld_model == "mlp":
        return ("unimodal", {"text": text}, {"hidden": 256, "dropout": 0.3}, {"batch_size": 64},
                {"lr": 1e-3, "max_epochs": 40, "patience": 6, "mse_weight": 0.0},
                f"frozen {text} sentence vectors, an MLP")
    from emofuse.bench.meld_text import finetune_run

    run = finetune_run(encoder=text)
    train = {k: v for k, v in run.train.items() if k != "seeds"} | {"max_epochs": FINETUNE_EPOCHS, "patience": FINETUNE_EPOCHS}
    return (run.model, dict(run.features), dict(run.params), dict(run.data), train,
            f"{text} fine-tuned end to end (finetune_text), up to {FINETUNE_EPOCHS} epochs, the epoch chosen on dev")


def _meld_tasks(opts: BenchOptions, o: Options, seeds: list[int]) -> list[Task]:
    from sklearn.model_selection import train_test_split

    out = Path(opts.out)
    m = prepared("meld", resolve_root(opts.data, "meld"), out / "prepared" / "meld.csv", opts)
    text = opts.encoders.get("text", "minilm")
    model, features, params, data, train_cfg, what = _meld_model(o, text)
    df = m.df.reset_index(drop=True)
    train = np.flatnonzero(df["split"].to_numpy() == "train")
    _, hidden = train_test_split(train, train_size=o.labelled, random_state=opts.seed, stratify=df["label"].to_numpy()[train])
    semi = Manifest(m.corpus, m.label_set, _hide(df, np.sort(hidden)), dict(m.meta, labelled_fraction=o.labelled))
    target = Target("weighted_f1", None, f"pseudo-labelled ≥ supervised-only + {100 * TARGETS['meld']:.0f} weighted F1 "
                    "(3-seed means)")
    pct = f"{100 * o.labelled:g}"
    specs = [] if model == "finetune_text" else [text]  # fine-tuning reads the raw text: nothing to extract
    tasks = [
        Task(f"meld-{pct}pct", final_manifest(semi, out / f"meld-{pct}pct" / "manifest.csv", opts), specs,
             _rows(model, features, params, data, seeds, o), train=train_cfg, targets=[target],
             notes=[f"{len(train) - len(hidden)} of MELD's {len(train)} training utterances keep their label; "
                    f"{len(hidden)} are unlabelled (their labels hidden, used only to score the pseudo-labels). "
                    f"Model: {what}."]),
    ]
    if o.ceiling:
        tasks.append(Task("meld-full", final_manifest(m, out / "meld-full" / "manifest.csv", opts), specs,
                          [ModelRun(FULL, model, features, params, data=data, train={"seeds": seeds})], train=train_cfg,
                          notes=["Every training label: the ceiling."]))
    return tasks


def _speech_tasks(opts: BenchOptions, o: Options, seeds: list[int], unlabelled: str = "nemo") -> list[Task]:
    """RAVDESS labelled; the `unlabelled` corpus's (nemo, or urdu) train and val speakers unlabelled, its test
    speakers test."""
    from emofuse.bench.speech_xcorpus import CORPUS, DEFAULT_AUDIO, ROOTS, SPEECH7, feature_name, in_space
    from emofuse.registry import CORPORA

    out = Path(opts.out)
    parts = {}
    for name in ("ravdess", unlabelled):
        kw = {"vocal_channel": "speech"} if name == "ravdess" else {}
        m = prepared(name, resolve_root(opts.data, *ROOTS[name]), out / "prepared" / f"{name}.csv", opts, **kw)
        parts[name], _ = in_space(m, name)
    ravdess = parts["ravdess"].assign(split=parts["ravdess"]["split"].replace({"test": "train"}))  # its test speakers train
    other = parts[unlabelled].reset_index(drop=True)
    heard = np.flatnonzero(other["split"].to_numpy() != "test")  # its train and val speakers: unlabelled
    semi = pd.concat([ravdess, _hide(other, heard)], ignore_index=True)
    full = pd.concat([ravdess, other.assign(split=other["split"].replace({"val": "train"}))], ignore_index=True)
    audio = opts.encoders.get("audio", DEFAULT_AUDIO)
    specs = [s for s in audio.split("+") if s.strip()]
    encs = [feature_name(s) for s in specs]
    features = {"audio": encs if len(encs) > 1 else encs[0]}
    model = "ensemble" if len(encs) > 1 else "unimodal"
    mlp, data = {"hidden": 256, "dropout": 0.3}, {"standardise": "per_speaker", "batch_size": 64}
    train_cfg = {"lr": 1e-3, "max_epochs": 100, "patience": 15, "mse_weight": 0.0}
    published = [c for c in SPEECH7.classes if c in {SPEECH7.normalise(k) for k in CORPORA.get(unlabelled).release["classes"]}]
    shown = {"nemo": "nEMO", "urdu": "URDU"}[unlabelled]
    rows = _rows(model, features, mlp, data, seeds, o, corpus=(shown, published))
    target = Target("weighted_f1", None, f"pseudo-labelled ≥ RAVDESS-only + {100 * TARGETS['speech']:.0f} weighted F1 on "
                    f"held-out {shown} speakers (3-seed means)")
    meta = {"corpora": [unlabelled, "ravdess"]}
    task = f"speech-{unlabelled}"
    tasks = [
        Task(task, final_manifest(Manifest(CORPUS, SPEECH7, semi, meta), out / task / "manifest.csv", opts),
             specs, rows, train=train_cfg, targets=[target],
             notes=[f"RAVDESS labelled ({len(ravdess)} clips; its val speakers validate); {shown}: {len(heard)} clips of its "
                    f"train and val speakers unlabelled, {len(other) - len(heard)} of its test speakers test."]),
    ]
    if o.ceiling:
        tasks.append(Task(f"{task}-full", final_manifest(Manifest(CORPUS, SPEECH7, full, meta),
                                                         out / f"{task}-full" / "manifest.csv", opts),
                          specs, [ModelRun(FULL, model, features, mlp, data=data, train={"seeds": seeds})], train=train_cfg,
                          notes=[f"{shown}'s training speakers' labels too: the ceiling."]))
    return tasks


def _mean(entry: dict) -> float:
    return entry["seeds"]["weighted_f1"][0] if "seeds" in entry else entry["weighted_f1"]


def restricted_f1(run_dir: Path, classes: list[str]) -> float:
    """A run's test weighted F1 (mean over its seeds) with its probabilities of classes outside `classes` set
    to 0: the supervised model given the same class inventory a pseudo-label's `classes` gives, at test."""
    from sklearn.metrics import f1_score

    from emofuse.training.pseudo import restrict

    files = sorted(run_dir.glob("seed*/predictions.csv")) or [run_dir / "predictions.csv"]
    scores = []
    for f in files:
        df = pd.read_csv(f, dtype={"id": str}, keep_default_na=False)
        names = [c.removeprefix("p_") for c in df.columns if c.startswith("p_")]
        probs = restrict(df[[f"p_{c}" for c in names]].to_numpy(np.float64), names, classes)
        scores.append(f1_score(df["true"].astype(str), np.asarray(names, dtype=object)[probs.argmax(1)], average="weighted"))
    return float(np.mean(scores))


def _summary(tasks: list[Task], outs: list[dict]) -> list[str]:
    by_name = {t.name: (t, o) for t, o in zip(tasks, outs)}
    lines = ["## Pseudo-labelling against the supervised rows (3-seed means of test weighted F1)", "",
             "| setting | supervised-only | pseudo-labelled row | student (round 1) | round chosen on val | "
             "every label | margin (chosen) | target | met |", "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    detail, inventory = [], []
    for name, (task, out) in by_name.items():
        if name.endswith("-full"):
            continue
        setting = "meld" if name.startswith("meld") else "speech"
        full = by_name.get("meld-full" if setting == "meld" else f"{name}-full")
        ceiling = f"{100 * _mean(full[1]['results'][FULL]):.1f}" if full and FULL in full[1]["results"] else "–"
        res = out["results"]
        if SUPERVISED not in res:
            continue
        sup = _mean(res[SUPERVISED])
        for row, entry in res.items():
            if not row.startswith("pseudo"):
                continue
            summary = json.loads((Path(task.manifest).parent / entry["run_dir"] / "pseudo_label.json").read_text())
            student = summary["rounds"][1]["test"]["weighted_f1"]
            margin = _mean(entry) - sup
            lines.append(f"| {name} | {100 * sup:.1f} | {row} | {100 * student:.1f} | {summary['chosen_round']} | {ceiling} | "
                         f"{100 * margin:+.1f} | +{100 * TARGETS[setting]:.0f} | {'yes' if margin >= TARGETS[setting] else 'no'} |")
            if summary.get("classes"):  # the same class inventory given to the supervised model, at test
                base = restricted_f1(Path(task.manifest).parent / res[SUPERVISED]["run_dir"], summary["classes"])
                inventory.append(f"| {name} | {row} | {100 * _mean(entry):.1f} | {100 * base:.1f} | "
                                 f"{100 * (_mean(entry) - base):+.1f} |")
            rec = summary["rounds"][1]["pseudo_labels"]
            acc = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
            detail += [f"**{name}, {row}**: the teacher (round 0, its seeds' mean) kept {rec['kept']} of {rec['candidates']} "
                       f"unlabelled rows, {acc(rec['accuracy'])} of them right (the teacher on every candidate: "
                       f"{acc(rec['teacher_accuracy_all'])}).", ""]
            if "align" in rec:  # the class shares the teacher's probabilities were moved to
                shares = lambda d: ", ".join(f"{c} {100 * v:.1f}" for c, v in d.items())  # noqa: E731
                detail += [f"Aligned ({rec['align']['how']}) to the shares (%) {shares(rec['align']['aligned_to'])}; the "
                           f"labelled rows': {shares(rec['align']['labelled_shares'])}.", ""]
            detail += ["| predicted class | kept | right |", "|---|---:|---:|"]
            detail += [f"| {c} | {v['kept']} | {acc(v['accuracy'])} |" for c, v in rec["per_class"].items()] + [""]
    lines += ["", "The student is round 1's model; the pseudo-labelled row is the round its validation figure chose "
              "(round 0 is the supervised teacher itself). Margin: the chosen round's 3-seed mean minus supervised-only's.", ""]
    if inventory:  # a row that knows the corpus's classes, against the supervised model told them too
        lines += ["Rows whose pseudo-labels name only the unlabelled corpus's classes use what supervised-only is not "
                  "told. The strongest simple baseline with the same knowledge: supervised-only's predictions with the "
                  "other classes' probabilities set to 0 at test (3-seed means of test weighted F1):", "",
                  "| setting | pseudo-labelled row | row | supervised-only, restricted at test | margin over it |",
                  "|---|---|---:|---:|---:|", *inventory, ""]
    return lines + detail


@BENCHMARKS.register("semi", options=Options)
def bench_semi(opts: BenchOptions, settings: str = "meld,speech", labelled: float = 0.1, seeds: int = 3,
               threshold: float = 0.9, top_fraction: float = 0.5, weight: float = 0.5, rounds: int = 1,
               meld_model: str = "mlp", pseudo_rows: str = "threshold,top", ceiling: bool = True,
               soft: bool = False, align: str = "none", classes: str = "all") -> BenchSpec:
    """Pseudo-labelling measured: MELD with a fraction of its labels, speech with nEMO unlabelled."""
    o = Options(settings=settings, labelled=labelled, seeds=seeds, threshold=threshold, top_fraction=top_fraction,
                weight=weight, rounds=rounds, meld_model=meld_model, pseudo_rows=pseudo_rows, ceiling=ceiling, soft=soft,
                align=align, classes=classes)
    _pseudo_rows(pseudo_rows)
    _aligns(align)
    _class_sets(classes)
    if meld_model not in ("mlp", "finetune"):
        raise ValueError(f"meld_model: mlp or finetune, not {meld_model!r}")
    if meld_model == "finetune" and weight != 1.0:
        raise ValueError(f"meld_model=finetune reads the raw text, whose batches carry no row weights: "
                         f"pass -o weight=1 (not {weight:g})")
    chosen = _choices("settings", settings, ("meld", "speech", "speech-urdu"))
    seed_list = list(range(seeds))
    tasks = (_meld_tasks(opts, o, seed_list) if "meld" in chosen else []) + \
            (_speech_tasks(opts, o, seed_list) if "speech" in chosen else []) + \
            (_speech_tasks(opts, o, seed_list, unlabelled="urdu") if "speech-urdu" in chosen else [])
    intro = [__doc__.split("\n\n")[0].replace("\n", " "),
             "", f"Seeds per row: {seeds}; pseudo-labels weighted {weight} in the loss; {rounds} round(s); "
                 f"MELD's model: {meld_model}"
                 + ("; soft pseudo-labels (the teacher's probabilities, cross-entropy against them)." if soft else ".")]
    return BenchSpec(tasks, intro, after=_summary)
