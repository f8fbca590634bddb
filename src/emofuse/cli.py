"""The `emofuse` command. Each verb maps onto one package folder: prepare -> corpora,
extract -> features, train -> training, report -> evaluation, demo -> pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


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
) -> None:
    """Read a corpus and write one checked manifest (one row per utterance)."""
    import yaml

    from emofuse.corpora.base import PrepareError, prepare as _prepare
    from emofuse.registry import UnknownNameError

    opts = {}
    for o in option:
        if "=" not in o:
            _fail(f"--option {o!r} is not key=value")
        k, v = o.split("=", 1)
        opts[k] = yaml.safe_load(v)
    try:
        m = _prepare(corpus, root, out, on_error=on_error, seed=seed, n_folds=n_folds, **opts)
    except (PrepareError, UnknownNameError, FileNotFoundError, TypeError, ValueError) as e:
        _fail(str(e))
    meta = m.meta
    console.print(f"[green]wrote[/] {out}: {meta['rows_kept']} rows kept, {meta['rows_rejected']} rejected "
                  f"of {meta['rows_in']}; splits {meta['split_counts']}")
    if meta["rows_rejected"]:
        console.print(f"rejected rows are listed in {m.rejects_path(out)}")


@app.command()
def extract(
    manifest: Path = typer.Option(..., "--manifest", help="Manifest CSV from `emofuse prepare`."),
    encoder: list[str] = typer.Option(..., "--encoder", "-e", help="Encoder name or hf:<id-or-folder> (repeatable)."),
    cache: Path = typer.Option(..., "--cache", help="Feature cache folder."),
    batch_size: int = typer.Option(16, help="Utterances per encoder batch."),
) -> None:
    """Encode every manifest row with each encoder into the feature cache (skips what is cached)."""
    from emofuse.corpora.base import Manifest
    from emofuse.features.extract import extract as _extract
    from emofuse.registry import UnknownNameError

    try:
        m = Manifest.load(manifest)
        entries = _extract(m, list(encoder), cache, batch_size=batch_size)
    except (UnknownNameError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for e in entries:
        console.print(f"[green]cached[/] {e}")


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config YAML (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=3e-4 (repeatable)."),
) -> None:
    """Train one run (early stopping on validation) and evaluate it on the test split."""
    from emofuse.config import ConfigError, RunConfig, load_config
    from emofuse.registry import UnknownNameError
    from emofuse.training.run import train_run

    try:
        cfg = load_config(RunConfig, config, set_)
        metrics = train_run(cfg)
    except (ConfigError, UnknownNameError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e))
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
