"""Label sets: the class lists of each corpus, with the aliases their raw annotations use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of classes; `index` maps a raw label (or an alias of it) to its position."""

    name: str
    classes: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.classes)

    def normalise(self, raw: str) -> str:
        """Canonical class name for a raw label; raises KeyError naming the valid labels."""
        key = str(raw).strip().lower()
        key = self.aliases.get(key, key)
        if key not in self.classes:
            raise KeyError(
                f"unknown label {raw!r} for label set {self.name!r}; valid: {', '.join(self.classes)}"
            )
        return key

    def index(self, raw: str) -> int:
        return self.classes.index(self.normalise(raw))

    def is_known(self, raw: str) -> bool:
        try:
            self.normalise(raw)
        except KeyError:
            return False
        return True

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "aliases": dict(self.aliases)}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        return cls(name=d["name"], classes=tuple(d["classes"]), aliases=dict(d.get("aliases", {})))


MER6 = LabelSet(
    "mer6",
    ("neutral", "angry", "happy", "sad", "worried", "surprise"),
    {"anger": "angry", "happiness": "happy", "joy": "happy", "sadness": "sad", "worry": "worried",
     "surprised": "surprise", "neu": "neutral"},
)
MELD7 = LabelSet(
    "meld7",
    ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
    {"happy": "joy", "angry": "anger", "sad": "sadness", "surprised": "surprise", "fearful": "fear"},
)
# IEMOCAP's usual 4-class protocol merges excited into happy.
IEMOCAP4 = LabelSet(
    "iemocap4",
    ("neutral", "happy", "sad", "angry"),
    {"neu": "neutral", "hap": "happy", "exc": "happy", "excited": "happy", "happiness": "happy",
     "sad": "sad", "sadness": "sad", "ang": "angry", "anger": "angry"},
)
RAVDESS8 = LabelSet(
    "ravdess8",
    ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    {"fear": "fearful", "surprise": "surprised", "anger": "angry", "sadness": "sad", "joy": "happy"},
)
FER7 = LabelSet(
    "fer7",
    ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    {"anger": "angry", "fearful": "fear", "joy": "happy", "sadness": "sad", "surprised": "surprise"},
)
# The speech corpora's shared space (RAVDESS without calm, nEMO, URDU, a user's English-labelled
# folder): one class list across corpora, so cross-corpus models and metrics line up; a corpus that
# lacks a class (nEMO has no disgust, URDU only four classes) simply has no rows of it.
SPEECH7 = LabelSet(
    "speech7",
    ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    {"fear": "fearful", "surprise": "surprised", "anger": "angry", "sadness": "sad", "joy": "happy",
     "happiness": "happy", "disgusted": "disgust"},
)

# The default model's classes (emofuse-base): the seven every corpus here can speak to, in one
# order, whatever words a corpus uses for them (MELD's joy, FER2013's fear, GoEmotions' anger...).
EMOTION7 = LabelSet(
    "emotion7",
    ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    {"fear": "fearful", "surprise": "surprised", "anger": "angry", "sadness": "sad", "joy": "happy",
     "happiness": "happy", "disgusted": "disgust", "neu": "neutral"},
)

LABEL_SETS: dict[str, LabelSet] = {ls.name: ls for ls in (MER6, MELD7, IEMOCAP4, RAVDESS8, FER7, SPEECH7, EMOTION7)}


def get_label_set(name: str) -> LabelSet:
    if name not in LABEL_SETS:
        raise KeyError(f"unknown label set {name!r}; valid: {', '.join(sorted(LABEL_SETS))}")
    return LABEL_SETS[name]


def map_labels(source: LabelSet, target: LabelSet, overrides: dict[str, str] | None = None) -> dict[str, str | None]:
    """Each class of `source` -> the class of `target` it counts as, or None when it has none.

    A source class maps to the target class of the same name or alias (MELD's "joy" onto a set
    that knows "joy" as "happy"); `overrides` (source label -> target class, "" for none) come on
    top. Raises ValueError naming the valid labels when an override names a label `source` does
    not have or a class `target` does not have."""
    out = {c: (target.normalise(c) if target.is_known(c) else None) for c in source.classes}
    for raw_from, raw_to in (overrides or {}).items():
        if not source.is_known(raw_from):
            raise ValueError(f"map {raw_from}={raw_to}: {raw_from!r} is not a label of the data "
                             f"({source.name}: {', '.join(source.classes)})")
        if str(raw_to).strip() and not target.is_known(raw_to):
            raise ValueError(f"map {raw_from}={raw_to}: {raw_to!r} is not a class of the model "
                             f"({target.name}: {', '.join(target.classes)})")
        out[source.normalise(raw_from)] = target.normalise(raw_to) if str(raw_to).strip() else None
    return out
