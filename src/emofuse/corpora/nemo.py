"""nEMO: Polish emotional speech, acted (Christop, LREC-COLING 2024): 4,481 clips of 9 actors
(4 female, 5 male), six classes (neutral, happy, sad, angry, fearful, surprised; no disgust).

    <root>/labels.csv   path,label,speaker,gender,age,text
    <root>/samples/<speaker>_<emotion>_<n>.opus   (the shared copy: Ogg Opus, 16 kHz speech)

Labels go into the shared speech space (labels.SPEECH7); nEMO has no disgust rows. The `text`
column is the Polish sentence read, the same sentences in every emotion: it carries no emotion, so
it stays out of the manifest unless text=true. Splits are by speaker (corpora.speaker_table)."""

from __future__ import annotations

from emofuse.corpora.base import flag
from emofuse.corpora.speaker_table import SpeakerTableCorpus
from emofuse.registry import CORPORA


@CORPORA.register("nemo")
class NEMO(SpeakerTableCorpus):
    name = "nemo"
    release = {"rows": 4481, "speakers": 9,
               "classes": {"neutral": 809, "happy": 749, "angry": 749, "sad": 769, "fearful": 736, "surprised": 669}}

    def __init__(self, *, text: bool = False, **options):
        """text: put the spoken sentence in the manifest's text column (it says nothing of the emotion)."""
        super().__init__(**options)
        self.with_text = flag(text)

    def text_of(self, rec: dict) -> str:
        return rec.get("text", "").strip() if self.with_text else ""
