"""emofuse-base, the default model: built by one seeded command from the real corpora,

    emofuse build-model --data ../shared/data --out runs/emofuse-base [--seed 0]

and shipped in the package (src/emofuse/assets/emofuse-base), so that `emofuse predict clip.mp4`,
`emofuse serve` and the page answer without --model.

It is a product of three calibrated experts (models/experts.py), seven classes (labels.EMOTION7):

    speech  whisper-base (layer 2 mean+std) and eGeMAPS, a linear member each, trained on RAVDESS
            (actors 01-12), nEMO (Polish) and URDU together, each corpus split by speaker as its
            adapter splits it; calibrated on their validation speakers
    text    a text network fine-tuned here (emofuse-text: MiniLM-L6 and a linear classifier, trained
            end to end by finetune_text, its token embedding table too, of which the package ships
            only the rows training moved: features/encoders/text_net.py) on MELD's utterances, with
            training seeds seed .. seed + 2 and the network best on MELD dev kept (TEXT_SEEDS);
            GoEmotions' Ekman split (single-label comments) is only tested on (TEXT_MIX = 0: MELD dev
            preferred MELD alone, the words the model reads being transcripts of speech); read as
            the class probabilities it gives; calibrated on MELD dev
    face    the face networks trained here (emofuse-face: bench fer2013 -o face_net=true, training
            seeds 0, 1 and 2 on the same folds, each trained further with its weights averaged), read
            as the mean of the class probabilities they give
            (no training), its temperature fitted on FER2013's
            held-out validation tenth, which the networks never saw. The bundled FER2013 CNN is not
            a member: it was trained on all of FER2013's training images, so weights fitted on any
            of them give it everything (bench fer2013's ensemble: the network's weight 0.0), and on
            faces neither saw (CK+, half of its subjects validating) the network alone was chosen
            (validation accuracy 72.2 against 72.0 for the two, test 72.4 against 69.7)

Each expert is trained through the one loop (one `experts` run per expert) and calibrated on its
own validation split; the experts' weights and temperatures in the product are then fitted on the
validation split of the class-paired set (`bench paired`: a RAVDESS clip, a MELD utterance and a
FER2013 face of one class), never on its test, which is where the fused model and each expert alone
are then scored. The run folder (<out>/run) is exported as the bundle (<out>/emofuse-base), with its
metrics (metrics.json) and model card (model_card.md, the figures filled in from this build).

Every step is seeded and runs on the CPU in one process: a second build with the same seed writes
the same weights, byte for byte. The feature cache (--cache) may be shared with the benchmarks: the
corpora are named as theirs are (speech-xcorpus, fer2013, paired), so their features are reused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.bench.driver import BenchOptions, final_manifest, prepared, resolve_root
from emofuse.corpora.base import FACE_IMAGES, Manifest
from emofuse.labels import EMOTION7

NAME = "emofuse-base"
VERSION = "1.0"
SPEECH = ["whisper-base", "egemaps"]
TEXT = "emofuse-text"
TEXT_BASE = "minilm"
# the text network's recipe: bench meld-text's finetune_text (utterance only, mean pooling, batches of 32
# grouped by length, 3 epochs, lr 5e-5 with a linear schedule after 10 % warm-up, no class weights), the
# token embedding table trained too (the package ships MiniLM's layers in float16 and only the table's rows
# that training moved, as int8 changes: features/encoders/text_net.py), on MELD alone (TEXT_MIX), once per
# seed of TEXT_SEEDS, the network best on MELD dev kept. MELD dev chose each of these over the build's
# earlier recipe (table frozen, as many GoEmotions rows as MELD's) for every seed tried:
# benchmarks/text_mix.py, docs/benchmarks.md
TEXT_NET = {"encoder": TEXT_BASE, "max_length": 128, "pooling": "mean", "freeze_input_embeddings": False}
TEXT_MIX = 0.0  # GoEmotions rows per MELD row in the text network's train and val (its test split is kept whole)
TEXT_SEEDS = 3  # training seeds seed, seed + 1, ...: the one best on the validation split (MELD dev) is kept
TEXT_TRAIN = {"max_epochs": 3, "patience": 2, "lr": 5e-5, "weight_decay": 0.01, "lr_schedule": "linear",
              "warmup": 0.1, "gradient_clip": 1.0, "mse_weight": 0.0, "class_weights": "none",
              "monitor": "val_weighted_f1", "logger": "none", "progress": False}
FACE = ["emofuse-face"]
FER_SIZE = 48  # FER2013's images are 48x48 grey, the face networks' input
# the face networks give FER2013's class order (angry, disgust, fear, happy, sad, surprise, neutral):
# the column of each EMOTION7 class (neutral, happy, sad, angry, fearful, disgust, surprised)
FER_COLUMNS = [6, 3, 4, 0, 2, 1, 5]
EXPERTS = {
    "audio": [{"input": f"audio:{e}"} for e in SPEECH],
    "text": [{"input": "text", "kind": "probs", "columns": list(range(len(EMOTION7)))}],
    "video": [{"input": f"video:{e}", "kind": "probs", "columns": FER_COLUMNS} for e in FACE],
}
FEATURES = {"audio": SPEECH, "text": TEXT, "video": FACE}
STANDARDISE = {"video": "none", "text": "none"}  # the face and text inputs are probabilities, read as they are
# Class weights: none. Balanced CE weights were tried (on a build with a stand-in face network): the
# text expert alone rose on the paired validation split (weighted F1 21.8 -> 30.3) but the fused model
# fell (85.9 -> 83.9), and the fused model on that split is what chooses.
TRAIN = {"max_epochs": 40, "patience": 6, "lr": 3e-3, "weight_decay": 1e-2, "mse_weight": 0.0,
         "monitor": "val_weighted_f1", "logger": "none", "progress": False}


def _in_7(m: Manifest, corpus: str, prefix: str | None = None) -> pd.DataFrame:
    """A manifest's labelled rows in the 7-class space (classes outside it dropped: RAVDESS's calm),
    ids (and speakers) prefixed by their corpus when they are pooled with another's."""
    df = m.df[(m.df["split"] != "unlabeled") & m.df["label"].map(EMOTION7.is_known)].copy()
    df["label"] = df["label"].map(EMOTION7.normalise)
    if prefix:
        df["id"] = prefix + ":" + df["id"].astype(str)
        df["speaker"] = np.where(df["speaker"].astype(str) != "", prefix + ":" + df["speaker"].astype(str), "")
    return df


def _say(opts: BenchOptions, line: str) -> None:
    if opts.progress:
        print(line, flush=True)


def _speech(opts: BenchOptions) -> Path:
    from emofuse.bench.speech_xcorpus import CORPUS, ROOTS, in_space

    parts = []
    for name in ("ravdess", "nemo", "urdu"):
        kw = {"vocal_channel": "speech"} if name == "ravdess" else {}
        m = prepared(name, resolve_root(opts.data, *ROOTS[name]), opts.out / "prepared" / f"{name}.csv", opts, **kw)
        df, _ = in_space(m, name)  # ids "ravdess:..." as bench speech-xcorpus names them: one feature cache
        parts.append(df.drop(columns=["corpus_group"]))
    m = Manifest(CORPUS, EMOTION7, pd.concat(parts, ignore_index=True), {"corpora": ["ravdess", "nemo", "urdu"]})
    return final_manifest(m, opts.out / "speech" / "manifest.csv", opts)


def _text(opts: BenchOptions, goemotions_per_meld: float = 1.0) -> Path:
    """MELD and GoEmotions' Ekman split in the 7-class space: all of MELD, GoEmotions' whole test split,
    and, in train and val, `goemotions_per_meld` GoEmotions rows per MELD row of that split (drawn by
    the seed; 0: MELD alone in train and val)."""
    meld = prepared("meld", resolve_root(opts.data, "meld"), opts.out / "prepared" / "meld.csv", opts, text_only=True)
    goe = prepared("goemotions", resolve_root(opts.data, "goemotions"), opts.out / "prepared" / "goemotions.csv", opts,
                   variant="ekman")
    meld_df, goe_df = _in_7(meld, "meld", "meld"), _in_7(goe, "goemotions", "goemotions")
    parts = [meld_df, goe_df[goe_df["split"] == "test"]]
    if goemotions_per_meld < 0:
        raise ValueError(f"goemotions_per_meld must be >= 0, got {goemotions_per_meld}")
    for split in ("train", "val"):  # GoEmotions has four times more rows than MELD
        rows = goe_df[goe_df["split"] == split]
        n = int(round(goemotions_per_meld * int((meld_df["split"] == split).sum())))
        parts.append(rows.sample(n=min(len(rows), n), random_state=opts.seed))
    df = pd.concat(parts, ignore_index=True)
    df["dialogue"] = ""  # utterances alone: the default model has no dialogue at prediction time
    return final_manifest(Manifest("emofuse-text", EMOTION7, df, {"corpora": ["meld", "goemotions-ekman"]}),
                          opts.out / "text" / "manifest.csv", opts)


def _face(opts: BenchOptions) -> Path:
    m = prepared("fer2013", resolve_root(opts.data, "fer2013_train", "fer2013"), opts.out / "prepared" / "fer2013.csv",
                 opts, n_folds=10)  # the folds bench fer2013 trained the face network on: its validation is clean
    # decoded at FER2013's own 48 px, as bench fer2013 reads it: FACE_IMAGES' 64 px would enlarge each image
    # and the networks would shrink it back to 48 (validation 69.1 that way against 70.1 at 48, the test fold
    # 68.4 against 68.1: benchmarks/face_tta_shift.py --decode-size, docs/benchmarks.md)
    meta = {**m.meta, "decoding": {**FACE_IMAGES, "face_size": FER_SIZE}}
    return final_manifest(Manifest("fer2013", EMOTION7, _in_7(m, "fer2013"), meta), opts.out / "face" / "manifest.csv", opts)


def _paired(opts: BenchOptions) -> Path:
    """bench paired's rows (same sources, pairing and seed), validation and test only."""
    from emofuse.bench.paired import PAIRED7, SOURCES, source_of, pair

    sources = {name: source_of(name, opts.data, None, opts.out, opts) for name in SOURCES}
    df, _ = pair(sources, 3, opts.seed)  # bench paired's default pairing: the same validation and test rows
    df = df[df["split"].isin(["val", "test"])].reset_index(drop=True)
    assert list(PAIRED7.classes) == list(EMOTION7.classes)
    m = Manifest("paired", EMOTION7, df, {"decoding": dict(FACE_IMAGES), "seed": opts.seed, "train_pairs": 3})
    path = opts.out / "paired" / "manifest.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)  # no --limit: the validation and test rows are bench paired's own
    return path


def _text_net(manifest: Path, folder: Path, opts: BenchOptions, train: dict | None = None,
              net: dict | None = None, name: str = "text-net") -> tuple[Path, dict]:
    """The text network: finetune_text (TEXT_NET updated by `net`, TEXT_TRAIN updated by `train`) through the
    one loop on the text manifest (run <opts.out>/experts/<name>), its kept weights saved as a text network
    folder (float16; of the embedding table, only the rows training moved)."""
    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.features.encoders.text_net import save_text_net
    from emofuse.inference.bundle import load_bundle
    from emofuse.training.run import train_run

    cfg = RunConfig(name=name, data=DataConfig(manifest=str(manifest), features={"text": "raw"}, batch_size=32,
                                                     raw={"group_by_length": True}),
                    model=ModelConfig(name="finetune_text", params=TEXT_NET | (net or {})),
                    train=TrainConfig(**({"seeds": [opts.seed]} | TEXT_TRAIN | (train or {}))), out=str(opts.out / "experts"))
    t = time.perf_counter()
    m = train_run(cfg)
    model = load_bundle(opts.out / "experts" / name).model  # the weights kept on validation
    if folder.exists():
        shutil.rmtree(folder)
    save_text_net(model.backbone, model.head[1], folder, base=TEXT_BASE, pooling=TEXT_NET["pooling"],
                  max_length=TEXT_NET["max_length"], classes=list(EMOTION7.classes))
    _say(opts, f"  text network: validation weighted F1 {100 * m['val']['weighted_f1']:.1f}, test "
               f"{100 * m['test']['weighted_f1']:.1f} ({time.perf_counter() - t:.0f} s) -> {folder}")
    return folder, m


def _by_corpus(predictions: Path) -> dict[str, dict]:
    """An expert's test metrics per corpus (its ids are "<corpus>:<id>" where corpora are pooled)."""
    from emofuse.scoring.metrics import classification_metrics

    df = pd.read_csv(predictions, dtype={"id": str}, keep_default_na=False)
    corpus = df["id"].str.split(":").str[0].where(df["id"].str.contains(":"), "")
    index = {c: i for i, c in enumerate(EMOTION7.classes)}
    return {c: classification_metrics(g["true"].map(index).to_numpy(), g["predicted"].map(index).to_numpy(), len(EMOTION7))
            | {"n": len(g)} for c, g in df.groupby(corpus) if c}


def _expert_run(name: str, manifest: Path, features: dict, experts: dict, opts: BenchOptions, **data) -> dict:
    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.training.run import train_run

    cfg = RunConfig(name=name, data=DataConfig(manifest=str(manifest), cache=str(opts.cache_dir), features=features,
                                               batch_size=256, **data),
                    model=ModelConfig(name="experts", params={"experts": experts}),
                    train=TrainConfig(**TRAIN, seeds=[opts.seed]), out=str(opts.out / "experts"))
    t = time.perf_counter()
    m = train_run(cfg)
    _say(opts, f"  expert {name}: validation weighted F1 {100 * m['val']['weighted_f1']:.1f}, test "
               f"{100 * m['test']['weighted_f1']:.1f} ({time.perf_counter() - t:.0f} s)")
    return m


def build_base_model(data: str | Path, out: str | Path, *, seed: int = 0, cache: str | Path | None = None,
                     face_net: str | Path | list[str | Path] | None = None, limit: int | None = None,
                     progress: bool = True) -> dict:
    """Build emofuse-base into `out` (see the module docstring). face_net: finetune_face runs (or their
    encoder folders, RUN/encoder), one or several whose probabilities are averaged, for the face expert
    (default: the networks the package ships).
    limit: at most this many rows per split of each expert's corpora (a quick slice; the paired
    validation and test rows are never cut). Returns the build's metrics."""
    from emofuse.features.extract import extract
    from emofuse.features.encoders.face_net import SHIPPED_NETS

    t0 = time.perf_counter()
    out = Path(out)
    opts = BenchOptions(data=Path(data), out=out / "work", cache=Path(cache) if cache else out / "cache",
                        limit=limit, seed=seed, progress=progress)
    folders = []
    for f in ([face_net] if isinstance(face_net, (str, Path)) else list(face_net or [])) or list(SHIPPED_NETS):
        folder = Path(f)
        if folder.name != "encoder" and (folder / "encoder" / "config.json").is_file():
            folder = folder / "encoder"  # a finetune_face run folder: its network
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no face network at {folder}: train one with `emofuse bench fer2013 -o face_net=true` "
                                    "and give its run folder with --face-net")
        folders.append(folder.resolve())
    face_specs = [f"emofuse-face@folder={'+'.join(str(f) for f in folders)}"]
    timings: dict[str, float] = {}
    metrics: dict = {"name": NAME, "version": VERSION, "seed": seed, "classes": list(EMOTION7.classes),
                     "face_net": [str(f) for f in folders], "experts": {}}

    def text_specs(path: Path) -> list[str]:  # the text network is fine-tuned on the text manifest first
        tried = {}
        for s in range(seed, seed + TEXT_SEEDS):
            _, m = _text_net(path, out / "text-nets" / f"seed{s}", opts, train={"seeds": [s]}, name=f"text-net-seed{s}")
            tried[s] = {"val": m["val"], "test": m["test"]}
        best = max(tried, key=lambda s: (tried[s]["val"]["weighted_f1"], -s))  # a tie: the lower seed
        net = out / "text-net"
        if net.exists():
            shutil.rmtree(net)
        shutil.copytree(out / "text-nets" / f"seed{best}", net)
        vals = ", ".join(f"seed {s} {100 * t['val']['weighted_f1']:.1f}" for s, t in tried.items())
        _say(opts, f"  text network: seed {best} kept (validation weighted F1 {vals}) -> {net}")
        metrics["text_net"] = {"folder": str(net), "seed": best, **tried[best], "seeds": {str(s): t for s, t in tried.items()},
                               "goemotions_per_meld": TEXT_MIX, "table_trained": not TEXT_NET["freeze_input_embeddings"]}
        return [f"{TEXT}@folder={net.resolve()}"]

    steps = [("speech", _speech, lambda _: SPEECH, {"audio": SPEECH}, {"audio": EXPERTS["audio"]}, {}),
             ("text", lambda o: _text(o, goemotions_per_meld=TEXT_MIX), text_specs, {"text": TEXT}, {"text": EXPERTS["text"]}, {"standardise": STANDARDISE}),
             ("face", _face, lambda _: face_specs, {"video": FACE}, {"video": EXPERTS["video"]}, {"standardise": STANDARDISE})]
    runs, specs = {}, {}
    for name, make, specs_of, features, experts, data_extra in steps:
        t = time.perf_counter()
        path = make(opts)
        _say(opts, f"{name}: {path}")
        specs[name] = specs_of(path)
        extract(Manifest.load(path), specs[name], opts.cache_dir, progress=progress)  # decoding: the manifest's own
        m = _expert_run(f"expert-{name}", path, features, experts, opts, **data_extra)
        runs[name] = opts.out / "experts" / f"expert-{name}"
        made = Manifest.load(path)
        metrics["experts"][name] = {"corpora": made.meta.get("corpora", [made.corpus]), "val": m["val"], "test": m["test"],
                                    "test_by_corpus": _by_corpus(runs[name] / "predictions.csv"),
                                    "rows": made.df["split"].value_counts().to_dict()}
        timings[name] = time.perf_counter() - t

    t = time.perf_counter()
    paired = _paired(opts)
    extract(Manifest.load(paired), [s for v in specs.values() for s in v], opts.cache_dir, progress=progress)
    fused = _compose(runs, paired, opts, metrics)
    timings["fusion"] = time.perf_counter() - t
    metrics["timings_s"] = {k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - t0, 1)}
    bundle = _write(out, fused, paired, metrics, opts)
    metrics["bundle"] = str(bundle)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.copyfile(bundle / "model_card.md", out / "model_card.md")
    _say(opts, f"{NAME}: {bundle} ({metrics['timings_s']['total']:.0f} s)")
    return metrics


def _compose(runs: dict[str, Path], paired: Path, opts: BenchOptions, metrics: dict):
    """The three experts in one model, their weights and temperatures in the product fitted on the
    paired validation rows; scored on the paired test rows, fused and each expert alone."""
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader

    from emofuse.data.dataset import FeatureDataset, collate
    from emofuse.scoring.metrics import classification_metrics
    from emofuse.models.build import build_model

    manifest = Manifest.load(paired)
    data = FeatureDataset.from_manifest(manifest, opts.cache_dir, FEATURES)
    stats, state = {}, {}
    for run in runs.values():
        saved = load_file(str(run / "standardiser.safetensors"))
        stats |= {k.removesuffix(".mean"): (v.numpy(), saved[k.removesuffix(".mean") + ".std"].numpy())
                  for k, v in saved.items() if k.endswith(".mean")}
        state |= load_file(str(run / "model.safetensors"))
    torch.manual_seed(opts.seed)
    model = build_model("experts", {"experts": EXPERTS, "fit": "modalities"}, data.in_dims(), len(EMOTION7))
    mine = model.state_dict()
    if set(state) != set(mine):
        raise RuntimeError(f"the experts' weights do not make the fused model: {sorted(set(state) ^ set(mine))}")
    model.load_state_dict(state)
    data = data.standardised(stats)
    split = manifest.df["split"].to_numpy()
    val, test = data.subset(np.flatnonzero(split == "val")), data.subset(np.flatnonzero(split == "test"))
    fitted = model.fit_validation(DataLoader(val, batch_size=256, shuffle=False, collate_fn=collate))
    model.eval()

    def scores(ds, keep: set[str] | None = None) -> dict:
        batch = collate([ds[i] for i in range(len(ds))])
        if keep is not None:  # the other experts' inputs absent: this expert alone
            for k in ds.features:
                if k.split(":")[0] not in keep:
                    batch[f"{k}_mask"] = torch.zeros_like(batch[f"{k}_mask"])
        with torch.no_grad():
            pred = model(batch)["logits"].argmax(-1).numpy()
        return classification_metrics(batch["label"].numpy(), pred, len(EMOTION7))

    metrics["paired"] = {"rows": {"val": len(val), "test": len(test)}, "fitted_on_val": fitted,
                         "val": scores(val), "test": scores(test),
                         "experts_test": {m: scores(test, {m}) for m in EXPERTS},
                         "experts_val": {m: scores(val, {m}) for m in EXPERTS},
                         # the ablation: each expert dropped from the product (as a clip without it drops it)
                         "without_test": {m: scores(test, set(EXPERTS) - {m}) for m in EXPERTS},
                         "without_val": {m: scores(val, set(EXPERTS) - {m}) for m in EXPERTS}}
    best = max(metrics["paired"]["experts_val"], key=lambda m: metrics["paired"]["experts_val"][m]["weighted_f1"])
    metrics["paired"]["best_expert_on_val"] = best
    metrics["paired"]["gain_over_best_expert"] = (metrics["paired"]["test"]["weighted_f1"]
                                                  - metrics["paired"]["experts_test"][best]["weighted_f1"])
    _say(opts, f"fused on paired test: weighted F1 {100 * metrics['paired']['test']['weighted_f1']:.1f} "
               f"(best expert on validation, {best}: {100 * metrics['paired']['experts_test'][best]['weighted_f1']:.1f})")
    return model, stats


def _write(out: Path, fused, paired: Path, metrics: dict, opts: BenchOptions) -> Path:
    """The fused model as a run folder (<out>/run), exported as the bundle (<out>/emofuse-base)."""
    import torch
    from safetensors.torch import save_file

    from emofuse.config import DataConfig, ModelConfig, RunConfig, dump_config
    from emofuse.data.dataset import FeatureDataset
    from emofuse.inference.bundle import export_bundle
    from emofuse.training.run import input_records, write_inputs

    model, stats = fused
    run = out / "run"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    cfg = RunConfig(name=NAME, data=DataConfig(manifest=str(paired), cache=str(opts.cache_dir), features=FEATURES,
                                               standardise=STANDARDISE),
                    model=ModelConfig(name="experts", params={"experts": EXPERTS, "fit": "modalities"}), out=str(out))
    dump_config(cfg, run / "config.yaml")
    (run / "labels.json").write_text(json.dumps(EMOTION7.to_dict(), indent=2))
    # the inputs as the fused model was fitted on them (the paired rows' features, with their decoding, which
    # predict then uses for clips), not as each expert's corpus was decoded (FER2013's faces at 48 px)
    records = input_records(FeatureDataset.from_manifest(Manifest.load(paired), opts.cache_dir, FEATURES))
    for v in records.values():
        for shipped in ("emofuse-face", TEXT):
            if v["encoder"].startswith(shipped):
                v["encoder"] = shipped  # the shipped network's name: the fingerprint says which weights
    write_inputs(run, records)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(run / "model.safetensors"))
    save_file({f"{k}.{part}": torch.from_numpy(np.ascontiguousarray(a)) for k, (mean, std) in sorted(stats.items())
               for part, a in (("mean", mean), ("std", std))}, str(run / "standardiser.safetensors"))
    p = metrics["paired"]
    (run / "metrics.json").write_text(json.dumps({"name": NAME, "version": VERSION, "model": "experts", "corpus": "paired",
                                                  "synthetic": False,
                                                  "test": p["test"], "val": p["val"]}, indent=2))
    bundle = out / NAME
    if bundle.exists():
        shutil.rmtree(bundle)
    export_bundle(run, bundle)
    (bundle / "model_card.md").write_text(model_card(metrics))
    return bundle


def model_card(metrics: dict) -> str:
    """The model card with this build's figures (docs/model_card.md is a copy of the shipped one)."""
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    ex = metrics["experts"]
    p = metrics["paired"]
    rows = "\n".join(f"| {name} | {', '.join(e['corpora'])} | {pct(e['val']['weighted_f1'])} | {pct(e['test']['weighted_f1'])} "
                     f"| {pct(e['test']['accuracy'])} |" for name, e in ex.items())
    by_corpus = "\n".join(f"| {name} | {c} | {m['n']} | {pct(m['weighted_f1'])} | {pct(m['accuracy'])} |"
                          for name, e in ex.items() for c, m in e.get("test_by_corpus", {}).items())
    def fused_row(name: str, val: dict, test: dict) -> str:
        return f"| {name} | {pct(val['weighted_f1'])} | {pct(test['weighted_f1'])} | {pct(test['accuracy'])} |"

    fused_rows = "\n".join([fused_row("fused (all three)", p["val"], p["test"])]
                           + [fused_row(f"fused without {m}", p["without_val"][m], p["without_test"][m]) for m in p["without_test"]]
                           + [fused_row(f"{m} alone", p["experts_val"][m], p["experts_test"][m]) for m in p["experts_test"]])
    weights = p["fitted_on_val"].get("fused", {}).get("fusion_weights", {})
    nets = metrics["face_net"] if isinstance(metrics["face_net"], list) else [metrics["face_net"]]
    faces, they, s = (("the face network", "it", "s") if len(nets) == 1 else
                      (f"{len(nets)} face networks (one recipe, training seeds apart, the same folds; their "
                       "probabilities averaged)", "they", ""))
    tn = metrics["text_net"]
    mix = tn["goemotions_per_meld"]
    text_data = ("MELD's utterances (GoEmotions only tested on)" if mix == 0 else
                 f"MELD and GoEmotions ({mix:g} GoEmotions rows per MELD row)")
    goe_use = " (tested on only)" if mix == 0 else ""
    words = "MELD's sitcom dialogue" if mix == 0 else "MELD's sitcom dialogue, Reddit comments"
    text_seeds = (f"trained with {len(tn['seeds'])} seeds, the one best on its validation split (seed {tn['seed']}) kept"
                  if len(tn["seeds"]) > 1 else "one training seed")
    table = ("of the token embedding table, trained too, only the rows training moved, as int8 changes to the "
             "MiniLM wheel's table" if tn["table_trained"] else
             "the token embedding table, frozen while training, is the MiniLM wheel's")
    return f"""# Model card: {metrics['name']} {metrics['version']}

The model `emofuse predict`, `emofuse serve` and the page use when no `--model` is given. Seven classes:
{', '.join(metrics['classes'])}. Built by `emofuse build-model --data ../shared/data --out DIR --seed {metrics['seed']}`
in {metrics['timings_s']['total'] / 60:.1f} minutes on this build's machine (steps, seconds, where features its cache already held
were read, not computed again: {json.dumps(metrics['timings_s'])}).

## What it is
A product of three calibrated experts (`models/experts.py`). A modality a clip lacks drops out of the product.
- **speech**: Whisper-base encoder (layer 2, mean and standard deviation) and eGeMAPS, a linear member each.
- **text**: a text network fine-tuned here (`emofuse-text`): MiniLM-L6 and a linear classifier, trained end
  to end on {text_data}, read as the class probabilities it gives; {text_seeds}. The package ships its layers
  and classifier in float16; {table}. Without a transcript, `predict` and `serve` transcribe the speech with
  Whisper-base (offline), and leave out the words of speech it hears as another language than English
  (`--asr-foreign drop`: measured in docs/benchmarks.md).
- **face**: {faces} trained here on FER2013 (`emofuse-face`), read as the class probabilities {they}
  give{s}. The bundled FER2013 CNN is not a member: on faces neither network saw (CK+) the network alone did
  better than the two together, and the CNN's own training images (all of FER2013's) cannot fit its weight.

Each expert is calibrated (temperatures, member weights) on its own validation split. The experts' weights
in the product ({', '.join(f'{k} {v:.2f}' for k, v in weights.items())}) and the output temperature are fitted
on the validation split of `bench paired` ({p['rows']['val']} class-paired samples), never on its test.

## Data and licences
| expert | trained on | terms |
|---|---|---|
| speech | RAVDESS speech, actors 01-12 | CC BY-NC-SA 4.0 |
| speech | nEMO | CC BY-NC-SA 4.0 |
| speech | URDU | research use only |
| text | MELD | GPL-3.0 repository; research use |
| text | GoEmotions, Ekman split{goe_use} | CC BY 4.0 |
| face | FER2013 training images (the face network) | research and evaluation only |

The encoders: Whisper-base (MIT), MiniLM-L6 (Apache-2.0), openSMILE's eGeMAPS (audEERING's research
licence), and the face network trained here on FER2013. Several
corpora allow **non-commercial research only**. The weights learned from them carry that restriction in
practice: use this model for research, not in a product, unless you rebuild it on data you may use
commercially (`emofuse build-model` takes the corpora it is given).

## Figures (this build; each expert on test data it never saw)
| expert | corpora | validation wF1 | test wF1 | test accuracy |
|---|---|---:|---:|---:|
{rows}

The face expert's validation and test rows are held-out FER2013 training images, which its face networks
never saw.

Each corpus's own test rows (speakers, dialogues or images none of the experts trained on):

| expert | corpus | test rows | test wF1 | test accuracy |
|---|---|---:|---:|---:|
{by_corpus}

On `bench paired`'s test ({p['rows']['test']} samples; a RAVDESS clip, a MELD utterance and a FER2013 face of
one class, three different people). "Without" drops one expert from the product, with the weights and
temperatures fitted for all three, as a clip that lacks that modality drops it:

| model | validation wF1 | test wF1 | test accuracy |
|---|---:|---:|---:|
{fused_rows}

Best expert on validation: {p['best_expert_on_val']}; the fused model's test gain over it:
{100 * p['gain_over_best_expert']:+.1f} points of weighted F1.

## What it was never tested on, and known limits
- Speech is acted (RAVDESS, nEMO) or talk shows (URDU); English, Polish and Urdu only.
- Words are English ({words}).
- Faces are FER2013's 48x48 grey crops: frontal, mostly posed or web images.
- Never tested here on real audio-visual clips of people talking: the class-paired set pairs three different
  people, so it measures how the experts combine evidence, not how the model reads one person.
"""
