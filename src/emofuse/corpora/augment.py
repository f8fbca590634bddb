"""Training-only copies of a corpus's rows, made from altered recordings (speed perturbation).

A copy is a new row: its own id (`<id>@speed<rate>`), its own audio file (written once into a folder
and reused), the original's label, split and fold, and its own speaker group (`<speaker>@speed<rate>`),
so per-speaker standardisation normalises a perturbed voice by its own statistics, as it does the
original's. The column `augmented_from` names the original: such rows only ever train. The training
plans leave them out of every validation and test set, with or without cross-validation, so every
figure is scored on original recordings alone."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from emofuse.corpora.base import AUGMENTED, Manifest


def parse_rates(spec: str | float | list | None, what: str = "speed_perturb") -> list[float]:
    """`0.9,1.1` (or a list) -> [0.9, 1.1]; none, "" or 0 -> []. Each rate in [0.5, 2.0] and not 1.0;
    anything else is refused with a ValueError naming `what`."""
    if spec is None or str(spec).strip().lower() in ("", "none", "0", "false"):
        return []
    items = spec if isinstance(spec, list) else str(spec).replace(";", ",").split(",")
    try:
        rates = [float(r) for r in items if str(r).strip()]
    except ValueError:
        raise ValueError(f"{what} must be rates such as 0.9,1.1, or none; not {spec!r}") from None
    bad = [r for r in rates if not 0.5 <= r <= 2.0 or r == 1.0]
    if bad:
        raise ValueError(f"{what} rates must lie in [0.5, 2.0] and differ from 1.0, not {bad}")
    return rates


def is_augmented(df: pd.DataFrame) -> pd.Series:
    """A boolean Series: the rows that are augmented copies (training only)."""
    if AUGMENTED not in df:
        return pd.Series(False, index=df.index)
    return df[AUGMENTED].fillna("").astype(str) != ""


def originals(manifest: Manifest) -> Manifest:
    """The manifest without its augmented copies."""
    keep = ~is_augmented(manifest.df)
    return Manifest(manifest.corpus, manifest.label_set, manifest.df[keep].reset_index(drop=True), dict(manifest.meta))


def speed_perturbed(manifest: Manifest, rates: list[float], folder: str | Path, *, splits: tuple[str, ...] | None = None,
                    sr: int = 16000, progress: bool = False) -> Manifest:
    """The manifest with a speed-perturbed copy of each labelled row with a recording, per rate (the
    copy is audio only: a video's own audio track is perturbed). `splits`: the rows copied (None: every
    labelled row, for cross-validation, where any fold may train). Audio files go to `folder/<rate>/`,
    written once: a later call reuses them."""
    from emofuse.media.audio import load_audio, write_wav
    from emofuse.media.augment import speed_perturb

    rates = [float(r) for r in rates]
    if not rates:
        return manifest
    df = manifest.df
    if is_augmented(df).any():
        raise ValueError(f"{manifest.corpus}: the manifest already has augmented rows")
    # the recording: the audio file, else the video's own audio track; rows with neither get no copy
    sound = df["audio"].fillna("").where(df["audio"].fillna("") != "", df["video"].fillna(""))
    if (sound == "").all():
        raise ValueError(f"{manifest.corpus}: speed perturbation needs recordings, and no row has audio or video")
    src = df[(df["label"] != "") & (df["split"] != "unlabeled") & (sound != "")]
    if splits is not None:
        src = src[src["split"].isin(splits)]
    jobs = [(rate, row) for rate in rates for row in src.itertuples(index=False)]
    it = jobs
    if progress:
        from rich.progress import track

        it = track(jobs, description=f"speed perturbation x{len(rates)}")
    folder = Path(folder)
    copies = []
    for rate, row in it:
        tag = f"speed{rate:g}"
        path = folder / tag / (re.sub(r"[^A-Za-z0-9._-]+", "_", row.id) + ".wav")
        if not path.is_file():
            tmp = path.with_name(path.stem + ".part.wav")
            write_wav(tmp, speed_perturb(load_audio(row.audio or row.video, sr=sr), rate, sr=sr), sr=sr)
            tmp.replace(path)
        copy = row._asdict()
        copy.update(id=f"{row.id}@{tag}", audio=str(path.resolve()), video="",
                    speaker=f"{row.speaker}@{tag}" if row.speaker else tag, **{AUGMENTED: row.id})
        copies.append(copy)
    out = pd.concat([df.assign(**{AUGMENTED: ""}), pd.DataFrame(copies, columns=[*df.columns, AUGMENTED])],
                    ignore_index=True)
    meta = dict(manifest.meta, speed_perturbation=rates, n_augmented=len(copies))
    return Manifest(manifest.corpus, manifest.label_set, out, meta)
