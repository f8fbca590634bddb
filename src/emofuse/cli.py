"""The `emofuse` command. Each verb maps onto one package folder: prepare -> corpora,
extract -> features, train -> training, report -> evaluation, demo -> pipeline; predict, serve
and evaluate (a trained run scored on another corpus) -> inference."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

class _Group(typer.core.TyperGroup):
    """Known failures (a busy, full or read-only folder, a missing file, bad input) end with one
    line naming the path and what to do, and exit 1; the traceback only with --debug (or
    EMOFUSE_DEBUG=1). Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx):
        import os

        try:
            return super().invoke(ctx)
        except Exception as e:
            if _DEBUG["on"] or os.environ.get("EMOFUSE_DEBUG") or not _known(e):
                raise
            err.print(f"[bold red]error:[/] {_one_line(e)}", soft_wrap=True)
            err.print("(run again with --debug for the traceback)", style="dim")
            raise typer.Exit(1) from None


def _known(e: Exception) -> bool:
    from emofuse.features.cache import CacheError
    from emofuse.media.errors import MediaError

    return isinstance(e, (OSError, CacheError, MediaError, ValueError))


def _one_line(e: Exception) -> str:
    import errno

    if isinstance(e, OSError) and e.errno is not None:
        where = e.filename or "the output folder"
        hint = {
            errno.ENOSPC: "no space left on the device: free some, or write elsewhere (--cache / --out); "
                          "what was already written is kept and a rerun goes on from it",
            errno.EROFS: "the folder is read-only: write elsewhere (--cache / --out)",
            errno.EACCES: "permission denied: write elsewhere (--cache / --out), or fix the folder's permissions",
            errno.EPERM: "operation not permitted: write elsewhere, or fix the folder's permissions",
            errno.ENOENT: "no such file or folder",
            errno.EDQUOT: "disk quota exceeded: free some space, or write elsewhere",
        }.get(e.errno, e.strerror or str(e))
        return f"{where}: {hint}"
    return " ".join(str(e).split()) or type(e).__name__


_DEBUG = {"on": False}
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, cls=_Group)
console = Console()
err = Console(stderr=True)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error.")) -> None:
    _DEBUG["on"] = debug


def _fail(msg: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


@app.command()
def prepare(
    corpus: str = typer.Argument(..., help="Corpus adapter name (see `emofuse list corpora`)."),
    root: Path = typer.Option(..., "--root", help="The corpus folder, in its distributed layout."),
    out: Path = typer.Option(..., "--out", help="Manifest CSV to write (metadata goes beside it)."),
    on_error: str = typer.Option("raise", "--on-error", help="raise: stop on bad rows; skip: write them to <out>.rejects.csv and go on."),
    seed: int = typer.Option(0, help="Seed of the stratified folds."),
    n_folds: int = typer.Option(5, help="Number of cross-validation folds."),
    option: list[str] = typer.Option([], "--option", "-o", help="Adapter option key=value (repeatable)."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="csv: accept media paths outside the table's folder."),
    speed_perturb: Optional[str] = typer.Option(None, "--speed-perturb", help="Also add speed-perturbed copies of the training clips at these rates, e.g. 0.9,1.1 (rows that only ever train; their wavs go to <out>-speed/)."),
    speed_perturb_splits: str = typer.Option("train", "--speed-perturb-splits", help="Whose clips get copies: train, or all (for train.cross_validation, where any fold may train)."),
) -> None:
    """Read a corpus and write one checked manifest (one row per utterance)."""
    import warnings

    import yaml
    from rich.markup import escape

    from emofuse.corpora.base import PrepareError, prepare as _prepare
    from emofuse.corpora.csv import SplitWarning
    from emofuse.registry import UnknownNameError

    rates = _rates(speed_perturb, speed_perturb_splits) if speed_perturb else []  # refused before anything is written
    opts = {}
    for o in option:
        if "=" not in o:
            _fail(f"--option {o!r} is not key=value")
        k, v = o.split("=", 1)
        opts[k] = yaml.safe_load(v)
    if allow_outside_root:
        if corpus != "csv":
            _fail("--allow-outside-root is for the csv adapter (users' own tables)")
        opts["allow_outside_root"] = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SplitWarning)
            m = _prepare(corpus, root, out, on_error=on_error, seed=seed, n_folds=n_folds, **opts)
    except (PrepareError, UnknownNameError, FileNotFoundError, TypeError, ValueError) as e:
        _fail(str(e))
    for w in caught:  # how the splits were drawn (csv without a speaker column): said, not buried in a log
        if issubclass(w.category, SplitWarning):
            err.print(f"[yellow]warning:[/] {escape(str(w.message))}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    meta = m.meta
    console.print(f"[green]wrote[/] {out}: {meta['rows_kept']} rows kept, {meta['rows_rejected']} rejected "
                  f"of {meta['rows_in']}; splits {meta['split_counts']}")
    if meta["rows_rejected"]:
        console.print(f"rejected rows are listed in {m.rejects_path(out)}")
    if rates:
        _speed_copies(m, out, rates, speed_perturb_splits)


def _rates(spec: str, splits: str) -> list[float]:
    """prepare --speed-perturb's rates, checked (as --speed-perturb-splits) before anything is written."""
    from emofuse.corpora.augment import parse_rates

    if splits not in ("train", "all"):
        _fail(f"--speed-perturb-splits must be train or all, not {splits!r}")
    try:
        rates = parse_rates(spec, "--speed-perturb")
    except ValueError as e:
        _fail(str(e))
    if not rates:
        _fail(f"--speed-perturb takes rates such as 0.9,1.1, not {spec!r}")
    return rates


def _speed_copies(m, out: Path, rates: list[float], splits: str) -> None:
    """prepare --speed-perturb: the manifest rewritten with its speed-perturbed copies."""
    from emofuse.corpora.augment import speed_perturbed
    from emofuse.media.errors import MediaError

    folder = out.with_name(out.stem + "-speed")
    try:
        aug = speed_perturbed(m, rates, folder, splits=None if splits == "all" else ("train",), progress=True)
    except (ValueError, MediaError) as e:
        _fail(f"--speed-perturb: {e} (the manifest was written without copies)")
    aug.save(out)
    console.print(f"[green]added[/] {aug.meta['n_augmented']} speed-perturbed copies at {', '.join(f'{r:g}' for r in rates)} "
                  f"(training only; wavs in {folder})")


@app.command()
def extract(
    manifest: Path = typer.Option(..., "--manifest", help="Manifest CSV from `emofuse prepare`."),
    encoder: list[str] = typer.Option(..., "--encoder", "-e", help="Encoder name or hf:<id-or-folder> (repeatable)."),
    cache: Path = typer.Option(..., "--cache", help="Feature cache folder."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Items per encoder pass (default: the encoder's own; hf: 256 text / 32 audio and video on a GPU, 32 / 16 on CPU)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N for encoders with a device option (under torchrun with GPUs each rank takes cuda:LOCAL_RANK)."),
    shard_size: int = typer.Option(512, "--shard-size", help="Rows per shard written (an interruption loses at most one shard's work)."),
    flush_every: float = typer.Option(120.0, "--flush-every", help="Also write a shard every this many seconds."),
) -> None:
    """Encode every manifest row with each encoder into the feature cache (skips what is cached).
    Under torchrun (`torchrun --no-python --nproc_per_node N emofuse extract ...`) each process takes
    its share of the rows; see docs/distributed.md."""
    from emofuse.corpora.base import Manifest
    from emofuse.features.extract import extract as _extract
    from emofuse.registry import UnknownNameError

    try:
        m = Manifest.load(manifest)
        entries = _extract(m, list(encoder), cache, batch_size=batch_size, device=device, shard_size=shard_size,
                           flush_every_s=flush_every)
    except (UnknownNameError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun, rank 0 speaks for all
        return
    for e in entries:
        console.print(f"[green]cached[/] {e}")


cache_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect a feature cache.")
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(cache: Path = typer.Argument(..., help="Feature cache folder (as given to extract --cache).")) -> None:
    """Every entry of a cache: corpus, encoder, fingerprint, decoding, rows present/absent/failed, complete."""
    from emofuse.features.cache import list_entries

    if not cache.is_dir():
        _fail(f"{cache}: no such cache folder")
    t = Table(title=str(cache))
    for c in ("corpus", "encoder", "fingerprint", "decoding", "rows", "present", "absent", "failed", "complete"):
        t.add_column(c, justify="right" if c in ("rows", "present", "absent", "failed") else "left")
    n = 0
    for corpus in sorted(p for p in cache.iterdir() if p.is_dir()):
        for e in list_entries(cache, corpus.name):
            m, n = e.meta, n + 1
            dec = m.get("decoding") or {}
            shown = ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in dec.items()) if dec else "–"
            rows, present, failed = int(m.get("n", 0)), int(m.get("n_present", 0)), len(m.get("errors", []))
            t.add_row(e.corpus, e.name, e.fingerprint[:12], shown, str(rows), str(present), str(rows - present - failed),
                      str(failed), "yes" if e.complete else f"no ({rows} of {m.get('n_expected')})")
    if not n:
        _fail(f"{cache}: no cache entries (folders with meta.json)")
    console.print(t)


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config YAML (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=3e-4 (repeatable)."),
) -> None:
    """Train one run (early stopping on validation) and evaluate it on the test split."""
    from emofuse.config import ConfigError, RunConfig, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.placement import process_rank
    from emofuse.training.run import train_run

    try:
        cfg = load_config(RunConfig, config, set_)
        metrics = train_run(cfg)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))
    if process_rank(cfg.train) != 0:  # several processes train together: process 0 speaks for them
        return
    t = metrics["test"]
    console.print(f"[green]{cfg.name}[/]: test accuracy {100 * t['accuracy']:.1f}, weighted F1 {100 * t['weighted_f1']:.1f} "
                  f"-> {Path(cfg.out) / cfg.name}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run directories (each with metrics.json)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Markdown file to write; printed when omitted."),
) -> None:
    """A markdown table of test metrics over run directories."""
    from emofuse.evaluation.report import metrics_table

    results = {}
    for r in runs:
        f = r / "metrics.json"
        if not f.is_file():
            _fail(f"{r} has no metrics.json")
        m = json.loads(f.read_text())
        results[m.get("name", r.name)] = m["test"] if "test" in m else m
    md = metrics_table(results)
    if out:
        out.write_text(md + "\n")
        console.print(f"[green]wrote[/] {out}")
    else:
        console.print(md)


@app.command()
def table(
    runs: list[Path] = typer.Argument(..., help="Fusion run directories (e.g. runs/grid/runs/*)."),
    out: Path = typer.Option(Path("table.md"), "--out", help="Markdown file to write."),
    unimodal: list[Path] = typer.Option([], "--unimodal", help="Unimodal ranking run directories to list below."),
) -> None:
    """The MER2025-style results table: Fusion, Top, encoders, and time / F1 / accuracy per epoch budget."""
    from emofuse.evaluation.table import write_table

    bad = [r for r in runs if not (r / "metrics.json").is_file()]
    if bad:
        _fail(f"not run directories (no metrics.json): {', '.join(map(str, bad))}")
    console.print(f"[green]wrote[/] {write_table(runs, out, unimodal)}")


@app.command()
def grid(
    config: Path = typer.Argument(..., help="Grid config YAML (e.g. configs/demo_grid.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set epochs=[2,10] (repeatable)."),
) -> None:
    """Rank encoders per modality, train fusion set x Top-N x epochs, and write the results table."""
    from emofuse.config import ConfigError, GridConfig, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.grid import run_grid

    try:
        cfg = load_config(GridConfig, config, set_)
        path = run_grid(cfg)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))
    console.print(f"[green]table:[/] {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    n_per_class: int = typer.Option(60, help="Synthetic clips per class."),
    seed: int = typer.Option(0, help="Seed of the corpus, folds and training."),
    max_epochs: int = typer.Option(100, help="Epoch budget per model (early stopping on val accuracy)."),
) -> None:
    """The main job on the embedded SYNTHETIC demo corpus: generate, prepare, extract, train, report."""
    from emofuse.pipeline import run_demo

    console.print(f"emofuse demo -> {out} (synthetic corpus, {n_per_class} clips per class)")
    results = run_demo(out, n_per_class=n_per_class, seed=seed, max_epochs=max_epochs)
    t = Table(title="test split (synthetic demo corpus)")
    for c in ("model", "accuracy", "uar", "weighted_f1", "macro_f1"):
        t.add_column(c)
    for name, m in results.items():
        t.add_row(name, *(f"{100 * m[k]:.1f}" for k in ("accuracy", "uar", "weighted_f1", "macro_f1")))
    console.print(t)
    console.print(f"report: [bold]{out / 'report.md'}[/]  metrics: {out / 'metrics.json'}")


def _load_predictor(model: Path, trust_remote_code: bool = False):
    from rich.markup import escape

    from emofuse.inference import BundleError, Predictor

    try:
        with err.status(f"loading {model}"):
            return Predictor.load(model, trust_remote_code=trust_remote_code)
    except BundleError as e:
        _fail(escape(str(e)))


@app.command()
def predict(
    clip: Optional[Path] = typer.Argument(None, help="A video (mp4, mkv, avi, webm, mov, flv, ...) or audio file (wav, mp3, ogg, opus, m4a, flac, ...); a folder of clips; or a CSV manifest."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Run directory (runs/<name>) or folder from `emofuse export` (default: emofuse-base, the model the package ships)."),
    text: Optional[str] = typer.Option(None, "--text", help="The transcript of the clip."),
    subtitles: Optional[Path] = typer.Option(None, "--subtitles", help="Transcript from a .srt/.vtt/.txt file; for a folder, a CSV of name,text."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="An audio file (alone or with --image, instead of CLIP)."),
    image: Optional[Path] = typer.Option(None, "--image", help="A face image (with --audio, instead of CLIP)."),
    asr: Optional[bool] = typer.Option(None, "--asr/--no-asr", help="Transcribe the speech where no transcript is given (Whisper-base, offline). Default: on for the default model, off for a --model."),
    model_card: bool = typer.Option(False, "--model-card", help="Print the model card (data, licences, figures, limits) of the model and exit."),
    asr_model: str = typer.Option("whisper-base", "--asr-model", help="Speech recogniser: whisper-base (the packaged weights), a local folder or a hub id already in the HF cache."),
    asr_foreign: Optional[str] = typer.Option(None, "--asr-foreign", help="Speech whisper-base hears as not English: keep its transcript, translate it into English, or drop it (the default model's text expert reads English). Default: drop for the default model, keep for a --model."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: label, probabilities, modality weights, Top-N selections, warnings."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV for a folder or manifest, one row per clip (default: stdout)."),
    submission: Optional[Path] = typer.Option(None, "--submission", help="Also write the MER2025 submission CSV (name, discrete)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse clips with a missing or replaced modality instead of warning."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let the model's encoders run Python files from their model folders (only for folders you trust; a bundle never asks for it on its own)."),
) -> None:
    """Predict the emotion of a clip (or of every clip of a folder or manifest): with the default model (emofuse-base), or a trained one."""
    from rich.markup import escape

    from emofuse.inference import BundleError
    from emofuse.inference.default import asr_defaults, default_model
    from emofuse.inference.default import model_card as read_card

    asr, asr_foreign = asr_defaults(model is None, asr, asr_foreign)
    if model is None:
        try:
            model = default_model()
        except BundleError as e:
            _fail(escape(str(e)))
    if model_card:
        try:
            typer.echo(read_card(model))
        except FileNotFoundError as e:
            _fail(escape(str(e)))
        return

    from emofuse.inference.predict import (
        ASRUnavailable, Clip, InputError, clips_from, predict_many, read_subtitles, sidecar_transcript,
        with_transcript, write_predictions_csv, write_submission,
    )
    from emofuse.features.encoders.whisper import check_foreign

    if clip is None and audio is None and image is None:
        _fail("give a CLIP (video, audio file, folder or CSV manifest), or --audio and/or --image")
    try:
        check_foreign(asr_foreign)
    except ValueError as e:
        _fail(f"--asr-{e}")
    if clip is not None and not clip.exists():
        _fail(f"{clip}: no such file or folder")
    batch = clip is not None and (clip.is_dir() or clip.suffix.lower() == ".csv")
    if batch and (audio or image or text):
        _fail("--text, --audio and --image are for one clip; a folder or manifest brings its own")
    predictor = _load_predictor(model, trust_remote_code)
    for w in predictor.bundle.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")

    def with_asr(c: Clip) -> Clip:
        return with_transcript(c, predictor, asr_model, asr_foreign) if asr is True else c

    if not batch:
        try:
            if text is None and subtitles is not None:
                text = read_subtitles(subtitles)
            elif text is None and clip is not None:
                text = sidecar_transcript(clip)
            one = with_asr(Clip(video=clip, audio=audio, image=image, text=text))
            pred = predictor.predict(one, strict=strict)
        except (InputError, ASRUnavailable, FileNotFoundError) as e:
            _fail(escape(str(e)))
        if json_out:
            typer.echo(json.dumps(pred.to_dict(), indent=2))
            return
        _print_prediction(pred, predictor)
        if submission:
            write_submission(submission, [(one, pred, None)])
            console.print(f"[green]wrote[/] {submission}")
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        clips = clips_from(clip, subtitles)
    except (FileNotFoundError, ValueError) as e:
        _fail(escape(str(e)))
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as bar:
        task = bar.add_task("predicting", total=len(clips))
        try:
            for c in clips:
                rows.extend(predict_many(predictor, [with_asr(c)], strict=strict))
                bar.advance(task)
        except ASRUnavailable as e:
            _fail(escape(str(e)))
    if json_out:
        typer.echo(json.dumps([p.to_dict() if p else {"name": c.name, "error": e} for c, p, e in rows], indent=2))
    else:
        write_predictions_csv(out, rows, predictor.bundle.classes, predictor.bundle.weight_names)
    failed = [(c, e) for c, p, e in rows if p is None]
    if submission:
        n = write_submission(submission, rows)
        err.print(f"[green]wrote[/] {submission} ({n} clips)")
    err.print(f"{len(rows)} clips: {len(rows) - len(failed)} predicted, {len(failed)} failed"
              + (f"; predictions in {out}" if out else ""))
    for c, e in failed[:5]:
        err.print(f"  [red]{escape(str(c.name))}[/]: {escape(str(e))}")
    if failed:
        raise typer.Exit(1)


def _print_prediction(pred, predictor) -> None:
    from rich.markup import escape

    who = pred.model or {}
    console.print(f"model: [bold]{escape(str(who.get('name')))}[/]" + (f" {who['version']}" if who.get("version") else "")
                  + f" ({len(who.get('classes', []))} classes: {', '.join(who.get('classes', []))})")
    t = Table(title=f"{pred.name}: [bold]{pred.label}[/]", title_justify="left")
    t.add_column("class")
    t.add_column("probability", justify="right")
    t.add_column("")
    for c, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
        style = "bold" if c == pred.label else ""
        t.add_row(c, f"{100 * p:.1f}%", "█" * round(30 * p), style=style)
    console.print(t)
    m = Table(title="modalities", title_justify="left")
    for col in ("input", "used", "weight", "encoder", "note"):
        m.add_column(col)
    keys = list(predictor.spec.inputs)
    for k in keys:
        s = predictor.spec.inputs[k]
        i = pred.modalities.get(s.modality, {})
        w = (pred.weights or {}).get(k, (pred.weights or {}).get(s.modality))  # per input, or per modality
        m.add_row(k, "yes" if i.get("used") else "no", "" if w is None else f"{w:.3f}", s.encoder,
                  escape(i.get("note") or ""))
    console.print(m)
    heard = pred.modalities.get("text", {})
    if heard.get("transcript"):  # words the model read that nobody typed: show them, and where they came from
        console.print(f"text: {escape(heard['source'])}: \"{escape(heard['transcript'])}\"")
    if pred.selected is not None:
        console.print(f"Top-N selected: {', '.join(pred.selected) or 'none'}")
    for w in pred.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory (runs/<name>) or folder from `emofuse export`."),
    data: Path = typer.Option(..., "--data", help="Manifest CSV of the corpus to score on (`emofuse prepare`, e.g. `prepare csv`)."),
    out: Path = typer.Option(..., "--out", help="Output folder: metrics.json, predictions.csv, confusion.png, report.md, evaluate.yaml."),
    map_: list[str] = typer.Option([], "--map", help="from=to: score the data's label FROM as the run's class TO (repeatable; 'from=' leaves FROM out)."),
    split: list[str] = typer.Option([], "--split", help="Score only this split of the manifest (repeatable; default: every labelled row)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache folder (default <out>/cache)."),
    unit: Optional[str] = typer.Option(None, help="For a cross-validated or multi-seed run: which unit (e.g. fold0/seed1)."),
    batch_size: int = typer.Option(16, help="Rows per encoder and model batch."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
) -> None:
    """Score a trained run on another corpus (cross-corpus): the run's own encoders and standardisation,
    a label map, and the rows whose label the run never saw counted per label, not dropped."""
    import shlex

    from rich.markup import escape

    from emofuse.inference import BundleError
    from emofuse.inference.evaluate import EvaluateConfig, EvaluateError, evaluate_run, parse_map

    try:
        cfg = EvaluateConfig(run=str(run), data=str(data), out=str(out), map=parse_map(map_), splits=list(split),
                             cache=str(cache or ""), unit=unit, batch_size=batch_size, device=device,
                             command=shlex.join(["emofuse", *sys.argv[1:]]))
        r = evaluate_run(cfg)
    except (EvaluateError, BundleError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(escape(str(e)))
    for w in r["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    n = r["rows"]
    t = Table(title=f"{r['run_name']} on {r['corpus']}: {n['scored']} of {n['labelled']} labelled rows scored")
    for c in ("accuracy", "uar", "weighted_f1", "macro_f1"):
        t.add_column(c)
    t.add_row(*(f"{100 * r['test'][k]:.1f}" for k in ("accuracy", "uar", "weighted_f1", "macro_f1")))
    console.print(t)
    for lab, u in r["unseen_labels"].items():
        seen = ", ".join(f"{c} {k}" for c, k in u["predicted"].items())
        console.print(f"not scored: {escape(lab)} ({u['rows']} rows; predicted {seen}): not a class of the run "
                      f"({', '.join(r['classes'])}); map it with --map {escape(lab)}=CLASS")
    console.print(f"report: [bold]{out / 'report.md'}[/]  metrics: {out / 'metrics.json'}")


@app.command()
def serve(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Run directory (runs/<name>) or folder from `emofuse export` (default: emofuse-base, the model the package ships)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_mb: float = typer.Option(100.0, "--max-mb", help="Largest upload accepted, in MB."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let the model's encoders run Python files from their model folders (only for folders you trust)."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Longest media per modality accepted, in seconds (longer: 413); 0 for no limit."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds a request may take, waiting in the queue included (longer: 504)."),
    max_queue: int = typer.Option(4, "--max-queue", help="Requests that may wait behind the running one (more: 503)."),
    asr: Optional[bool] = typer.Option(None, "--asr/--no-asr", help="Transcribe the speech of uploads sent without a transcript (Whisper-base, offline). Default: on for the default model, off for a --model."),
    asr_foreign: Optional[str] = typer.Option(None, "--asr-foreign", help="Speech whisper-base hears as not English: keep, translate (into English) or drop its transcript. Default: drop for the default model, keep for a --model."),
) -> None:
    """Serve the model: HTTP API (POST /predict, GET /health, /docs) and a web page at /."""
    from rich.markup import escape

    from emofuse.inference import BundleError
    from emofuse.inference.default import asr_defaults, default_model
    from emofuse.inference.serve import create_app

    asr, asr_foreign = asr_defaults(model is None, asr, asr_foreign)
    try:
        model = model or default_model()
    except BundleError as e:
        _fail(escape(str(e)))
    try:
        with err.status(f"loading {model}"):
            api = create_app(model, max_bytes=int(max_mb * 2**20), trust_remote_code=trust_remote_code,
                             max_seconds=max_seconds or None, timeout=timeout, max_queue=max_queue, asr=asr,
                             asr_foreign=asr_foreign)
    except ValueError as e:
        _fail(escape(str(e)))
    except BundleError as e:
        _fail(escape(str(e)))
    import uvicorn

    console.print(f"emofuse serving [bold]{api.state.predictor.spec.name}[/] at http://{host}:{port}/  (API docs: /docs)")
    uvicorn.run(api, host=host, port=port, log_level="info")


@app.command("build-model")
def build_model(
    data: Path = typer.Option(..., "--data", help="The shared data folder holding ravdess_speech/, nemo/, urdu/, meld/, goemotions/, fer2013_train/."),
    out: Path = typer.Option(..., "--out", help="Output folder: the bundle (<out>/emofuse-base), metrics.json, model_card.md, the run and its work files."),
    seed: int = typer.Option(0, "--seed", help="Seed of every split, pairing and fit (the same seed gives the same weights)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache (default <out>/cache); a benchmark's cache is reused."),
    face_net: Optional[list[Path]] = typer.Option(None, "--face-net", help="A finetune_face run (or its encoder folder) for the face expert; repeat it to average several networks (default: the networks the package ships)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many rows per split of each expert's corpora: a quick slice."),
) -> None:
    """Build the default model, emofuse-base, from the real corpora: three calibrated experts (speech, text, face) fused as a product."""
    from emofuse.bench.emofuse_base import build_base_model

    try:
        m = build_base_model(data, out, seed=seed, cache=cache, face_net=face_net, limit=limit)
    except (FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))
    p = m["paired"]
    console.print(f"[green]{m['name']}[/] {m['version']}: paired test weighted F1 {100 * p['test']['weighted_f1']:.1f} "
                  f"(best expert alone {100 * p['experts_test'][p['best_expert_on_val']]['weighted_f1']:.1f}) in "
                  f"{m['timings_s']['total'] / 60:.1f} min -> {m['bundle']}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory (runs/<name>)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the bundle to."),
    unit: Optional[str] = typer.Option(None, help="For a cross-validated or multi-seed run: which unit (e.g. fold0/seed1)."),
) -> None:
    """Write a self-contained model bundle: bundle.json (labels, encoders and hashes), weights, standardiser."""
    from rich.markup import escape

    from emofuse.inference import BundleError, export_bundle

    try:
        path = export_bundle(run, out, unit=unit)
    except BundleError as e:
        _fail(escape(str(e)))
    console.print(f"[green]exported[/] {run} -> {path}")


@app.command()
def fuse(
    config: Path = typer.Argument(..., help="Late-fusion-of-runs config YAML (e.g. configs/meld_late_fusion.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set fusion.weight_step=0.1 (repeatable)."),
) -> None:
    """Train (or reuse) each modality's system, fit late-fusion weights on validation, report on test."""
    from emofuse.config import ConfigError, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.late_runs import LateRunsConfig, run_late_runs

    try:
        cfg = load_config(LateRunsConfig, config, set_)
        m = run_late_runs(cfg)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))
    print((Path(cfg.out) / cfg.name / "table.md").read_text())  # plain: rich would wrap the table
    console.print(f"[green]{cfg.name}[/]: fused test weighted F1 {100 * m['test']['weighted_f1']:.1f} "
                  f"-> {Path(cfg.out) / cfg.name}")


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="Sweep config YAML (e.g. configs/demo_sweep.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a sweep key: --set final_seeds=[0] (repeatable)."),
) -> None:
    """Hyper-parameter sweep (grid or Optuna): one run per trial, selection on validation, best re-run over seeds."""
    from emofuse.config import ConfigError, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.sweep import SweepConfig, run_sweep

    try:
        cfg = load_config(SweepConfig, config, set_)
        run_sweep(cfg)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError, ImportError) as e:
        _fail(str(e))
    print((Path(cfg.out) / cfg.name / "table.md").read_text())  # plain: rich would wrap the table


@app.command()
def ablation(
    config: Path = typer.Argument(..., help="Ablation config YAML (e.g. configs/demo_llama_ablation.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override an ablation key: --set seeds=[0] (repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only this variant (repeatable); the others keep their rows."),
) -> None:
    """Ablation: named variants of one run config, each over the same seeds, in one table (mean ± std, wall time)."""
    from emofuse.config import ConfigError, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.ablation import AblationConfig, run_ablation

    try:
        cfg = load_config(AblationConfig, config, set_)
        run_ablation(cfg, only=only or None)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError, ImportError) as e:
        _fail(str(e))
    print((Path(cfg.out) / cfg.name / "table.md").read_text())


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Run directory A (or its predictions.csv)."),
    run_b: Path = typer.Argument(..., help="Run directory B, tested on the same ids."),
    n_boot: int = typer.Option(10_000, "--n-boot", help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Seed of the resampling."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of words."),
) -> None:
    """Is B better than A? Paired bootstrap CIs of the weighted-F1 and accuracy differences, and McNemar's test."""
    from emofuse.evaluation.compare import compare_runs, describe

    try:
        cmp = compare_runs(run_a, run_b, n_boot=n_boot, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        print(describe(cmp))  # plain: rich would re-wrap the sentences at the terminal width


class _BenchCommand(typer.core.TyperCommand):
    """`bench --help` ends with every registered benchmark and its options, read from the registry
    (only there: importing the benchmarks takes a second or two, which other commands never pay)."""

    def format_help(self, ctx, formatter) -> None:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        from emofuse.bench import BENCHMARKS

        super().format_help(ctx, formatter)
        parts = []
        for name in BENCHMARKS.names():
            b = BENCHMARKS.get(name)
            grid = Table.grid(padding=(0, 2))
            grid.add_column(no_wrap=True, style="cyan")
            grid.add_column(no_wrap=True, style="dim")
            grid.add_column()
            for row in b.option_rows() or [("(no options)", "", "")]:
                grid.add_row(*(Text(c) for c in (f"  {row[0]}", *row[1:])))
            parts += [Text.assemble((name, "bold"), "  ", b.summary), grid, Text()]
        Console().print(Panel(Group(*parts[:-1]), title="Benchmarks (NAME) and their options (-o key=value)",
                              title_align="left", border_style="dim"))


@app.command(cls=_BenchCommand)
def bench(
    name: str = typer.Argument(..., help="Benchmark: one of those listed below."),
    data: Path = typer.Option(..., "--data", help="The corpus folder (or the shared data folder holding it; paired: the folder holding meld/, ravdess_speech/, fer2013_train/; speech-xcorpus: the one holding ravdess_speech/, nemo/, urdu/)."),
    out: Path = typer.Option(..., "--out", help="Output folder: metrics.json, report.md, per-task runs; the feature cache goes to <out>/cache."),
    eval_data: list[Path] = typer.Option([], "--eval-data", help="A separate folder of the same corpus: all its rows are the test set, and all of --data trains and validates (speech-xcorpus: a folder of labels.csv path,label,speaker and its audio, tested as one more left-out corpus; repeatable)."),
    baseline: str = typer.Option("none", "--baseline", help="linear: also fit logistic regression on the same features, in the same run."),
    encoder: list[str] = typer.Option([], "--encoder", "-e", help="modality=encoder over the defaults, e.g. text=hf:/models/roberta-base (repeatable)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache folder (default <out>/cache)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many rows per split (seeded, stratified): a quick slice."),
    seed: list[int] = typer.Option([0], "--seed", help="Training seed (repeatable; figures are the first seed's, with the spread over seeds)."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of the splits, pairings, subsamples and bootstrap (default: the first --seed); keep it to train another seed on the same rows."),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", help="Cap every run's epoch budget."),
    model: list[str] = typer.Option([], "--model", help="Run only these of the benchmark's models (row or model name; repeatable)."),
    extra_model: list[str] = typer.Option([], "--extra-model", help="Also train this registered model on the benchmark's first inputs (repeatable)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples of the test set for the 95% intervals."),
    resume: bool = typer.Option(False, "--resume", help="Reuse a run a previous bench left finished in --out with the same config (same code assumed: a long training, say, is not repeated after the bench was stopped or a row added)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Benchmark option key=value, the value read as YAML: each benchmark's options are listed below (repeatable)."),
    eval_source: list[str] = typer.Option([], "--eval-source", help="paired: source=folder, a source's own evaluation folder (meld, ravdess, fer2013; repeatable)."),
) -> None:
    """Real-data benchmark: prepare, extract, train the project's models (and a linear baseline), report with bootstrap intervals."""
    from emofuse.bench import BENCHMARKS, parse_options, run_bench
    from emofuse.bench.driver import BenchOptions
    from emofuse.registry import UnknownNameError

    try:
        BENCHMARKS.get(name)
    except UnknownNameError as e:
        _fail(str(e))
    pairs = {}
    for what, items in (("--encoder", encoder), ("--option", option), ("--eval-source", eval_source)):
        for o in items:
            if "=" not in o:
                _fail(f"{what} {o!r} is not key=value")
        pairs[what] = dict(o.split("=", 1) for o in items)
    opts = parse_options(option)  # checked against the benchmark's options by run_bench
    if pairs["--eval-source"]:
        opts["eval_sources"] = {k: Path(v) for k, v in pairs["--eval-source"].items()}
    options = BenchOptions(data=data, out=out, eval_data=eval_data[0] if eval_data else None,
                           extra_eval_data=list(eval_data[1:]), cache=cache, encoders=pairs["--encoder"],
                           baseline=baseline, limit=limit, seeds=list(seed), max_epochs=max_epochs,
                           models=list(model) or None, extra_models=list(extra_model), bootstrap=bootstrap,
                           seed=seed[0] if split_seed is None else split_seed,
                           resume=resume)
    try:
        metrics = run_bench(name, options, **opts)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        _fail(str(e))
    t = Table(title=f"emofuse bench {name} (test; 95% bootstrap intervals in report.md)")
    for c in ("model", "kind", "accuracy", "uar", "weighted_f1", "macro_f1"):
        t.add_column(c)
    for row, m in metrics.items():
        t.add_row(row, m["kind"], *(f"{100 * m[k]:.1f}" for k in ("accuracy", "uar", "weighted_f1", "macro_f1")))
    console.print(t)
    console.print(f"report: [bold]{out / 'report.md'}[/]  metrics: {out / 'metrics.json'}")


speed_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Benchmarks: the project's path and a plain loop side by side in one run; prints both and, last, ratio: project / plain.")
app.add_typer(speed_app, name="speed")


def _speed(fn, **kw) -> None:
    try:
        fn(**kw)
    except (FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))


@speed_app.command("extract")
def speed_extract(
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder spec, e.g. minilm, egemaps, hf:/models/bert-base."),
    manifest: Path = typer.Option(..., "--manifest", help="A manifest CSV (emofuse prepare)."),
    limit: Optional[int] = typer.Option(2000, "--limit", help="The first N rows."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (encoders with a device option)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Items per batch (default: the encoder's)."),
) -> None:
    """Items/s of `emofuse extract` and of a plain loop on the same rows."""
    from emofuse.bench.speed import speed_extract as run

    _speed(run, encoder=encoder, manifest=manifest, limit=limit, device=device, batch_size=batch_size)


@speed_app.command("finetune")
def speed_finetune(
    config: Path = typer.Option(..., "--config", help="A finetune_text run config (e.g. configs/meld_finetune_text.yaml)."),
    manifest: Path = typer.Option(..., "--manifest", help="The manifest to fine-tune on (its train/val/test splits)."),
    steps: int = typer.Option(100, "--steps", help="Training steps of the measured epoch (validation and test scaled alike)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
) -> None:
    """One fine-tuning epoch of `steps` steps: `emofuse train` against a plain transformers loop."""
    from emofuse.bench.speed import speed_finetune as run

    _speed(run, config=config, manifest=manifest, steps=steps, overrides=list(set_))


@speed_app.command("face")
def speed_face(
    manifest: Path = typer.Option(..., "--manifest", help="A manifest of face images (emofuse prepare fer2013)."),
    n_train: int = typer.Option(4000, "--n-train", help="Training faces (validation and test cut by the same fraction)."),
    epochs: int = typer.Option(2, "--epochs", help="Epochs of both sides (the first decodes the images)."),
    width: int = typer.Option(32, "--width", help="The network's first-stage width."),
) -> None:
    """finetune_face: the project's train_run against a plain PyTorch loop over the same decoded faces."""
    from emofuse.bench.speed import speed_face as run

    try:
        run(manifest, n_train=n_train, epochs=epochs, width=width)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))


@speed_app.command("train")
def speed_train(
    n: int = typer.Option(10000, "--n", help="Synthetic samples (80/10/10 train/val/test)."),
    epochs: int = typer.Option(100, "--epochs", help="Epochs (early stopping off, so all of them run)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Batch size of both sides."),
) -> None:
    """Attention fusion on synthetic 3-modality features: `train_run` against a plain PyTorch loop; prints seconds."""
    from emofuse.bench.speed import speed_train as run

    _speed(run, n=n, epochs=epochs, batch_size=batch_size)


@speed_app.command("video")
def speed_video(
    minutes: float = typer.Option(10.0, "--minutes", help="Length of the generated 720p clip."),
    model: Path = typer.Option(Path("runs/demo/runs/fusion-attention"), "--model", "-m", help="Run directory or bundle to predict with."),
) -> None:
    """Generate a long 720p clip with audio, extract and predict on it; prints peak_rss_gb."""
    from emofuse.bench.speed import speed_video as run

    _speed(run, minutes=minutes, model=model)


@app.command("list")
def list_(kind: str = typer.Argument(..., help="corpora, encoders or models")) -> None:
    """List registered corpora, encoders or models."""
    from emofuse.registry import CORPORA, ENCODERS, MODELS

    regs = {"corpora": CORPORA, "encoders": ENCODERS, "models": MODELS}
    if kind not in regs:
        _fail(f"unknown kind {kind!r}; valid: {', '.join(regs)}")
    for n in regs[kind].names():
        console.print(n)
    if kind == "encoders":
        console.print("hf:<hub id or local folder>  (any Hugging Face vision, audio or text model)")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
