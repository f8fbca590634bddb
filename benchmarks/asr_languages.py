"""What should the default model do with the words of speech that is not English? Its text expert reads
English (MiniLM fine-tuned on MELD and GoEmotions), and `predict --asr` gives it Whisper-base's transcript.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/asr_languages.py --per-split 60

Clips: the speech corpora of `emofuse build-model` (its speech manifest: RAVDESS English, nEMO Polish, URDU
Urdu), speakers the speech expert never trained on: its validation and test speakers, up to --per-split clips of
each corpus and split (seeded). Each clip is predicted by the default model from its audio alone (no face), with
its words as:
  none       no transcript (the text expert drops out of the product)
  keep       Whisper-base's transcript in the language it heard (`--asr-foreign keep`, the default until now)
  translate  speech heard as not English: Whisper's English translation (`--asr-foreign translate`)
  drop       speech heard as not English: no words; English: its transcript (`--asr-foreign drop`)
The policy is chosen among keep, translate and drop on the validation speakers (mean weighted F1 over the three
corpora; a tie keeps keep); test is printed beside it, and `none` as a reference. Caveat: RAVDESS's and nEMO's
sentences are emotionally neutral by design (the emotion is in the voice), so words can only mislead there; URDU
is unscripted talk-show speech. Transcripts are kept in <out>/transcripts.csv (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

POLICIES = ("keep", "translate", "drop", "none")  # a tie keeps the earlier (keep: the behaviour until now)


def sample(manifest: Path, per_split: int, seed: int) -> pd.DataFrame:
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    m["corpus"] = m["id"].str.split(":").str[0]
    m = m[m["split"].isin(["val", "test"]) & (m["audio"] != "")]
    parts = [g.sample(min(per_split, len(g)), random_state=seed) for _, g in m.groupby(["corpus", "split"])]
    return pd.concat(parts).reset_index(drop=True)


def transcripts(rows: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Each clip's language, its transcript as heard and, where not English, its English translation."""
    from rich.progress import track

    from emofuse.features.encoders.whisper import WhisperTranscriber
    from emofuse.media.audio import load_audio

    done = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(
        columns=["id", "language", "keep", "translate", "seconds"])
    have = set(done["id"])
    asr, new = None, []
    for r in track(rows.itertuples(), total=len(rows), description="transcribing"):
        if r.id in have:
            continue
        asr = asr or WhisperTranscriber()
        t0 = time.perf_counter()
        wave = load_audio(r.audio, sr=16000)
        kept = asr.transcript(wave, foreign="keep")
        other = kept.language not in (None, "en")
        translated = asr.transcript(wave, foreign="translate").text if other else kept.text
        new.append({"id": r.id, "language": kept.language or "", "keep": kept.text, "translate": translated,
                    "seconds": round(time.perf_counter() - t0, 2)})
        if len(new) % 20 == 0:
            pd.concat([done, pd.DataFrame(new)]).to_csv(path, index=False)
    out = pd.concat([done, pd.DataFrame(new)]) if new else done
    out.to_csv(path, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/emofuse-base5/work/speech/manifest.csv"))
    ap.add_argument("--per-split", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/asr-languages"))
    a = ap.parse_args()
    from rich.progress import track
    from sklearn.metrics import accuracy_score, f1_score

    from emofuse.inference.default import default_model
    from emofuse.inference.predict import Clip, Predictor

    a.out.mkdir(parents=True, exist_ok=True)
    rows = sample(a.manifest, a.per_split, a.seed)
    heard = transcripts(rows, a.out / "transcripts.csv").set_index("id")
    rows = rows.join(heard, on="id")
    predictor = Predictor.load(default_model())
    labels, preds = [], {p: [] for p in POLICIES}
    cache: dict[str, str] = {}
    for r in track(rows.itertuples(), total=len(rows), description="predicting"):
        other = r.language not in ("", "en")
        words = {"none": "", "keep": r.keep, "translate": r.translate, "drop": "" if other else r.keep}
        for policy, text in words.items():
            key = f"{r.id}\t{text}"
            if key not in cache:  # the same words give the same answer
                cache[key] = predictor.predict(Clip(audio=Path(r.audio), text=text or None)).label
            preds[policy].append(cache[key])
        labels.append(r.label)
    rows = rows.assign(truth=labels, **{f"pred_{p}": v for p, v in preds.items()})
    rows.to_csv(a.out / "predictions.csv", index=False)

    table, score = [], {}
    for (corpus, split), g in rows.groupby(["corpus", "split"]):
        en = float((g["language"] == "en").mean())
        for p in POLICIES:
            wf1 = 100 * f1_score(g["truth"], g[f"pred_{p}"], average="weighted")
            acc = 100 * accuracy_score(g["truth"], g[f"pred_{p}"])
            score[(corpus, split, p)] = wf1
            table.append({"corpus": corpus, "split": split, "clips": len(g), "heard as English": round(100 * en, 1),
                          "policy": p, "weighted F1": round(wf1, 1), "accuracy": round(acc, 1)})
    pd.DataFrame(table).to_csv(a.out / "table.csv", index=False)
    corpora = sorted(rows["corpus"].unique())
    mean = {(s, p): np.mean([score[(c, s, p)] for c in corpora]) for s in ("val", "test") for p in POLICIES}
    chosen = max(POLICIES[:3], key=lambda p: mean[("val", p)])  # among --asr-foreign's; none is the reference
    print("| policy | " + " | ".join(f"{c} val | {c} test" for c in corpora) + " | mean val | mean test |")
    print("|---|" + "---:|" * (2 * len(corpora) + 2))
    for p in POLICIES:
        cells = " | ".join(f"{score[(c, 'val', p)]:.1f} | {score[(c, 'test', p)]:.1f}" for c in corpora)
        print(f"| {'**' + p + '**' if p == chosen else p} | {cells} | {mean[('val', p)]:.1f} | {mean[('test', p)]:.1f} |")
    langs = rows.groupby("corpus")["language"].agg(lambda s: s.value_counts().head(3).to_dict())
    print("languages heard (top 3 per corpus):", json.dumps(langs.to_dict()))
    print(f"chosen on validation: {chosen}; ASR seconds per clip (both passes where not English): "
          f"median {rows['seconds'].astype(float).median():.2f}")


if __name__ == "__main__":
    main()
