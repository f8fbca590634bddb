"""Word error rate of `emofuse predict --asr` (the packaged Whisper-base) on RAVDESS speech.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/asr_wer.py --data ../shared/data/ravdess_speech [--limit N]

RAVDESS actors say one of two known sentences (statement 01: "Kids are talking by the door", 02: "Dogs are
sitting by the door") in eight emotions. Words are compared after lower-casing and dropping punctuation;
WER = (substitutions + deletions + insertions) / reference words, over all clips, and per emotion.
Transcripts are written beside the figures (runs/asr_wer/transcripts.csv).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

SENTENCES = {1: "kids are talking by the door", 2: "dogs are sitting by the door"}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[-1])


def main() -> None:
    from rich.progress import track

    from emofuse.inference.predict import transcribe

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ravdess_speech"))
    ap.add_argument("--out", type=Path, default=Path("runs/asr_wer"))
    ap.add_argument("--limit", type=int, default=None, help="first N clips only")
    a = ap.parse_args()
    df = pd.read_csv(a.data / "labels.csv")
    # a seeded shuffle: a run stopped early (each 40 clips print the running figure) is a sample of
    # every actor and emotion, not the first actors
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    if a.limit:
        df = df.iloc[: a.limit]
    t0 = time.perf_counter()
    rows = []
    for i, r in enumerate(track(df.itertuples(), total=len(df), description="whisper-base ASR"), 1):
        ref = SENTENCES[int(r.statement)]
        hyp = transcribe(a.data / r.file)
        rows.append({"file": r.file, "emotion": r.emotion, "reference": ref, "transcript": hyp,
                     "errors": edits(words(ref), words(hyp)), "ref_words": len(words(ref))})
        if i % 40 == 0:
            e, n = sum(x["errors"] for x in rows), sum(x["ref_words"] for x in rows)
            print(f"after {i} clips ({time.perf_counter() - t0:.0f} s): WER {100 * e / n:.1f} %", flush=True)
    seconds = time.perf_counter() - t0
    out = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    out.to_csv(a.out / "transcripts.csv", index=False)
    wer = out["errors"].sum() / out["ref_words"].sum()
    exact = (out["errors"] == 0).mean()
    print(f"{len(out)} clips in {seconds:.0f} s ({seconds / len(out):.2f} s a clip)")
    print(f"WER {100 * wer:.1f} %; clips transcribed exactly: {100 * exact:.1f} %")
    print("| emotion | clips | WER % |")
    print("|---|---:|---:|")
    for emo, g in out.groupby("emotion"):
        print(f"| {emo} | {len(g)} | {100 * g['errors'].sum() / g['ref_words'].sum():.1f} |")


if __name__ == "__main__":
    main()
