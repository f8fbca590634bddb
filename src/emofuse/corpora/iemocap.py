"""IEMOCAP under the usual 4-class protocol (neutral, happy = happy + excited, sad, angry), read
from the release layout:

    ROOT/Session<k>/dialog/EmoEvaluation/<dialog>.txt      one block per utterance (see below)
    ROOT/Session<k>/dialog/transcriptions/<dialog>.txt     "<utt> [start-end]: text"
    ROOT/Session<k>/sentences/wav/<dialog>/<utt>.wav

An EmoEvaluation block is a header line and the annotators' lines:

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
    C-E2:<TAB>Neutral state;<TAB>()
    A-E3:<TAB>val 3; act 2; dom  2;<TAB>()

Utterances whose gold category is outside the protocol (frustrated, surprised, fear, disgust,
other, xxx = no majority) are rejects with the reason "excluded": counted and listed, not errors.
fold = session index 0..4 (sessions are speaker-disjoint: two actors each); by default session 5
is test and session 4 val. soft_label holds the evaluators' categorical votes over the 4 classes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject
from emofuse.labels import IEMOCAP4
from emofuse.registry import CORPORA

N_SESSIONS = 5
_HEADER = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)")
# Only the evaluators' lines (C-E1 ... C-E6) vote: C-F1 / C-M1 are the actors' self-assessments,
# a different judgement that the gold label does not use either.
_VOTE = re.compile(r"^C-E\d+:\s*(.*?)\s*(?:\(.*\))?\s*$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
# evaluator category (lower case) -> 4-class name; all other categories cast no vote here
_VOTE_MAP = {"neutral state": "neutral", "neutral": "neutral", "happiness": "happy", "excited": "happy",
             "sadness": "sad", "anger": "angry"}


@CORPORA.register("iemocap")
class IEMOCAP(CorpusAdapter):
    name = "iemocap"
    label_set = IEMOCAP4

    def __init__(self, *, test_session: int = 5, val_session: int | None = None,
                 include_scripted: bool = True, **common):
        """test_session / val_session: sessions (1..5) held out for test and val; val defaults to
        the session before the test one. include_scripted: False keeps only the improvisations
        (scripted utterances become "excluded" rejects)."""
        super().__init__(**common)
        test_session = int(test_session)
        val_session = int(val_session) if val_session is not None else (test_session - 2) % N_SESSIONS + 1
        if not (1 <= test_session <= N_SESSIONS and 1 <= val_session <= N_SESSIONS) or test_session == val_session:
            raise ValueError(
                f"test_session and val_session must be two different sessions in 1..{N_SESSIONS}, "
                f"not {test_session} and {val_session}"
            )
        self.test_session = test_session
        self.val_session = val_session
        self.include_scripted = bool(include_scripted)

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        sessions = sorted(
            (int(m.group(1)), p) for p in root.iterdir()
            if p.is_dir() and (m := re.fullmatch(r"Session(\d+)", p.name))
        )
        if not sessions:
            raise FileNotFoundError(f"no Session1..Session{N_SESSIONS} folders under {root}")
        rows: list[dict] = []
        rejects: list[Reject] = []
        for k, sdir in sessions:
            if not 1 <= k <= N_SESSIONS:
                raise ValueError(f"{sdir}: IEMOCAP has sessions 1..{N_SESSIONS}")
            split = "test" if k == self.test_session else "val" if k == self.val_session else "train"
            eval_files = sorted((sdir / "dialog" / "EmoEvaluation").glob("*.txt"))
            if not eval_files:
                raise FileNotFoundError(f"{sdir}: no dialog/EmoEvaluation/*.txt (incomplete copy of IEMOCAP?)")
            for eval_file in eval_files:
                dialog = eval_file.stem
                texts = _transcripts(sdir / "dialog" / "transcriptions" / f"{dialog}.txt")
                for utt, label, votes in _evaluations(eval_file):
                    if not self.include_scripted and "_script" in dialog:
                        rejects.append(Reject(utt, "excluded", "scripted dialogue (include_scripted=False)"))
                        continue
                    if not self.label_set.is_known(label):
                        rejects.append(Reject(utt, "excluded", f"{label!r} excluded by the 4-class protocol"))
                        continue
                    rows.append({
                        "id": utt,
                        "split": split,
                        "fold": k - 1,
                        "audio": str((sdir / "sentences" / "wav" / dialog / f"{utt}.wav").absolute()),
                        "text": texts.get(utt, ""),
                        "label": label,
                        # the utterance's own speaker: session + the gender letter of its last part
                        "speaker": f"{utt[:5]}{utt.rsplit('_', 1)[-1][:1]}",
                        "dialogue": dialog,
                        "soft_label": self._soft_label(votes),
                    })
        return PrepareResult(rows, rejects)

    def _soft_label(self, votes: list[list[str]]) -> str:
        """Evaluators' votes over the 4 classes, normalised; an evaluator naming several categories
        splits one vote between them. "" when no vote falls in the 4 classes."""
        mass = dict.fromkeys(self.label_set.classes, 0.0)
        for cats in votes:
            for c in cats:
                if c in _VOTE_MAP:
                    mass[_VOTE_MAP[c]] += 1.0 / len(cats)
        total = sum(mass.values())
        if total == 0:
            return ""
        return json.dumps([round(v / total, 6) for v in mass.values()])


def _evaluations(path: Path) -> list[tuple[str, str, list[list[str]]]]:
    """(utterance id, gold category code, each evaluator's categories in lower case) per block."""
    out: list[tuple[str, str, list[list[str]]]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _HEADER.match(line):
            out.append((m.group(3), m.group(4).lower(), []))
        elif out and (m := _VOTE.match(line.strip())):
            # "Frustration; Anger;" and "Other:tired;" -> ["frustration", "anger"], ["other"]
            cats = [c.split(":")[0].strip().lower() for c in m.group(1).split(";")]
            out[-1][2].append([c for c in cats if c])
    return out


def _transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _TRANSCRIPT.match(line.strip()):
            out[m.group(1)] = m.group(2).strip()
    return out
