"""RAVDESS (24 actors, eight emotions) read from its official file-name code, wherever the files lie
under the root (the release nests them as Actor_<AA>/; *.wav and *.mp4 are found recursively):

    MM-VC-EE-II-SS-RR-AA.(wav|mp4)
    MM modality     01 full audio-video, 02 video only, 03 audio only
    VC vocal channel 01 speech, 02 song
    EE emotion      01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust 08 surprised
    II intensity    01 normal, 02 strong
    SS statement    01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
    RR repetition   01, 02
    AA actor        01..24 (odd male, even female)

One row per recording: the audio-only .wav and the .mp4 of the same code (the full audio-video one
when there is one, else the video-only one) are the same sample, with id `VC-EE-II-SS-RR-AA` (the
code without its modality). A `labels.csv` beside the files (`file` relative to the root, plus any
of modality, channel, emotion, intensity, statement, repetition, actor) is cross-checked.

Splits are speaker-independent: by default the last two actors present are test and the two
before them val (actors 11, 12 and 9, 10 of actors 1..12: one man and one woman each). fold 0 is
the test actors, fold 1 the val actors, folds 2.. the other actors in n_folds - 2 groups.

With actors_per_fold=k the folds are instead consecutive groups of k actors in actor order, fold 0
the first (k=2 over actors 1..12: folds 0..5 = actors 1-2, 3-4, ..., 11-12, one man and one woman
each): train.cross_validation then runs leave-k-actors-out cross-validation, each fold the test once
and the next fold its validation actors. The split column stays the fixed split above."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject, read_table
from emofuse.labels import RAVDESS8
from emofuse.registry import CORPORA

MODALITIES = {"01": "audio-video", "02": "video", "03": "audio"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_CODE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_FIELDS = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")


@CORPORA.register("ravdess")
class RAVDESS(CorpusAdapter):
    name = "ravdess"
    label_set = RAVDESS8

    def __init__(self, *, test_actors: str | list[int] | None = None, val_actors: str | list[int] | None = None,
                 vocal_channel: str = "both", all_test: bool = False, actors_per_fold: int | None = None, **common):
        """test_actors / val_actors: actor numbers held out ("11,12" or [11, 12]); default the last
        two actors present and the two before them. vocal_channel: speech, song or both (rows of
        the other channel become "excluded" rejects). all_test: every actor is test (a folder of
        other speakers kept for evaluation, e.g. a benchmark's --eval-data). actors_per_fold: folds
        of this many consecutive actors (speaker-grouped cross-validation), else as the module says."""
        super().__init__(**common)
        if actors_per_fold is not None and int(actors_per_fold) < 1:
            raise ValueError(f"actors_per_fold must be >= 1, not {actors_per_fold!r}")
        self.actors_per_fold = int(actors_per_fold) if actors_per_fold is not None else None
        self.all_test = bool(all_test)
        if vocal_channel not in ("speech", "song", "both"):
            raise ValueError(f"vocal_channel must be speech, song or both, not {vocal_channel!r}")
        self.test_actors = _actor_list(test_actors, "test_actors")
        self.val_actors = _actor_list(val_actors, "val_actors")
        if self.test_actors and self.val_actors and set(self.test_actors) & set(self.val_actors):
            raise ValueError(f"test_actors {self.test_actors} and val_actors {self.val_actors} overlap")
        self.vocal_channel = vocal_channel

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        listed = self._listed(root)
        rejects: list[Reject] = []
        # id -> {"03": [wav paths], "01": [...], "02": [...]}; a dict keeps first-seen (sorted) order
        groups: dict[str, dict[str, list[Path]]] = {}
        codes: dict[str, dict[str, str]] = {}
        files = sorted(
            p for p in root.rglob("*")
            if p.suffix.lower() in (".wav", ".mp4") and not p.name.startswith(".") and p.is_file()
        )
        for path in files:
            rel = path.relative_to(root).as_posix()
            code, problem = _parse(path)
            if problem is None and rel in listed:
                problem = _cross_check(code, listed.pop(rel), rel)
            if problem is not None:
                rejects.append(problem)
                continue
            rid = "-".join(code[f] for f in _FIELDS[1:])
            if self.vocal_channel != "both" and CHANNELS[code["channel"]] != self.vocal_channel:
                channel = CHANNELS[code["channel"]]
                rejects.append(Reject(rid, "excluded", f"{channel} (vocal_channel={self.vocal_channel})"))
                continue
            groups.setdefault(rid, {"03": [], "01": [], "02": []})[code["modality"]].append(path)
            codes[rid] = code
        for rel in sorted(listed):  # in labels.csv, not on disk
            code, problem = _parse(root / rel)
            rid = rel if problem is not None else "-".join(code[f] for f in _FIELDS[1:])
            rejects.append(Reject(rid, "missing_file", f"listed in labels.csv, not found: {root / rel}"))
        if not groups:
            if not rejects:
                raise FileNotFoundError(f"no RAVDESS recordings (MM-VC-EE-II-SS-RR-AA.wav/.mp4) under {root}")
            return PrepareResult([], rejects)

        actors = sorted({int(c["actor"]) for c in codes.values()})
        test, val = (actors, []) if self.all_test else self._held_out(actors)
        rest = [a for a in actors if a not in test and a not in val]
        if self.actors_per_fold:
            fold_of = {a: i // self.actors_per_fold for i, a in enumerate(actors)}
        else:
            fold_of = dict.fromkeys(test, 0) | dict.fromkeys(val, 1)
            for g, group in enumerate(np.array_split(np.array(rest, dtype=int), max(1, self.n_folds - 2))):
                fold_of |= dict.fromkeys(group.tolist(), 2 + g)

        rows: list[dict] = []
        for rid, by_mod in groups.items():
            code = codes[rid]
            actor = int(code["actor"])
            audio, av, vid = by_mod["03"], by_mod["01"], by_mod["02"]
            video = av[:1] or vid[:1]
            # The video-only clip of a sample that also has a full audio-video clip is not a second
            # sample; any further file of one modality is, and is reported as a duplicate id.
            extras = audio[1:] + av[1:] + vid[1:]
            base = {
                "split": "test" if actor in test else "val" if actor in val else "train",
                "fold": fold_of[actor],
                "text": STATEMENTS[code["statement"]],
                "label": self.label_set.classes[int(code["emotion"]) - 1],
                "speaker": f"Actor_{actor:02d}",
            }
            rows.append({"id": rid, **base, "audio": _abs(audio[:1]), "video": _abs(video)})
            for extra in extras:
                rows.append({"id": rid, **base, "audio": _abs([extra]) if extra.suffix.lower() == ".wav" else "",
                             "video": _abs([extra]) if extra.suffix.lower() == ".mp4" else ""})
        return PrepareResult(rows, rejects)

    def _held_out(self, actors: list[int]) -> tuple[list[int], list[int]]:
        for given, what in ((self.test_actors, "test_actors"), (self.val_actors, "val_actors")):
            absent = sorted(set(given or ()) - set(actors))
            if absent:
                raise ValueError(f"{what}: actors {absent} are not in the corpus; actors present: {actors}")
        others = [a for a in actors if a not in (self.test_actors or []) and a not in (self.val_actors or [])]
        k = 2 if len(actors) >= 6 else 1
        test = self.test_actors or others[-k:]
        others = [a for a in others if a not in test]
        val = self.val_actors or others[-k:]
        if not test or not val or len(set(actors) - set(test) - set(val)) == 0:
            raise ValueError(
                f"speaker-independent splits need actors for train, val and test; actors present: {actors}"
            )
        return sorted(test), sorted(val)

    @staticmethod
    def _listed(root: Path) -> dict[str, dict[str, str]]:
        """labels.csv rows by file (relative to the root), or {} when there is none."""
        path = root / "labels.csv"
        if not path.is_file():
            return {}
        df, bad = read_table(path, required=("file",))
        if bad:
            raise ValueError(f"{path}: {len(bad)} unparsable line(s), e.g. {','.join(bad[0])[:120]!r}")
        return {rec["file"].strip(): rec for rec in df.to_dict("records")}


def _parse(path: Path) -> tuple[dict[str, str], Reject | None]:
    """The code fields of a file name, and the reject when the name is not a valid code."""
    m = _CODE.match(path.stem)
    if not m:
        return {}, Reject(path.name, "unreadable_row", f"not a RAVDESS file name MM-VC-EE-II-SS-RR-AA: {path}")
    code = dict(zip(_FIELDS, m.groups()))
    if not 1 <= int(code["emotion"]) <= len(RAVDESS8):
        return code, Reject(path.stem, "unknown_label", f"emotion code {code['emotion']} not in 01..08: {path}")
    valid = {"modality": MODALITIES, "channel": CHANNELS, "intensity": INTENSITIES, "statement": STATEMENTS,
             "repetition": ("01", "02")}
    bad = [f"{f} {code[f]!r}" for f, ok in valid.items() if code[f] not in ok]
    if int(code["actor"]) < 1:
        bad.append(f"actor {code['actor']!r}")
    want = ".wav" if code["modality"] == "03" else ".mp4"
    if path.suffix.lower() != want:
        bad.append(f"modality {code['modality']} ({MODALITIES.get(code['modality'], '?')}) in a {path.suffix} file")
    if bad:
        return code, Reject(path.stem, "bad_value", f"{', '.join(bad)}: {path}")
    return code, None


def _cross_check(code: dict[str, str], rec: dict[str, str], rel: str) -> Reject | None:
    """A bad_value reject when labels.csv disagrees with the file name."""
    expect = dict(code, emotion=RAVDESS8.classes[int(code["emotion"]) - 1],
                  intensity=INTENSITIES[code["intensity"]])
    diff = []
    for f, want in expect.items():
        got = str(rec.get(f, "")).strip()
        if not got:
            continue
        if f == "emotion":
            same = RAVDESS8.is_known(got) and RAVDESS8.normalise(got) == want
        elif f == "intensity":
            same = got.lower() == want
        else:
            same = got.isdigit() and int(got) == int(want)
        if not same:
            diff.append(f"{f}: labels.csv {got!r}, file name {want!r}")
    return Reject(Path(rel).stem, "bad_value", f"{rel}: " + "; ".join(diff)) if diff else None


def _actor_list(value, what: str) -> list[int] | None:
    """"11,12", "Actor_11", 11 or [11, 12] -> [11, 12]; None stays None."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        m = re.fullmatch(r"\s*(?:actor_?)?(\d+)\s*", str(item), flags=re.IGNORECASE)
        if not m:
            raise ValueError(f"{what}: {item!r} is not an actor number (e.g. 11 or Actor_11)")
        out.append(int(m.group(1)))
    return sorted(set(out))


def _abs(paths: list[Path]) -> str:
    return str(paths[0].absolute()) if paths else ""
