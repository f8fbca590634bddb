"""URDU: Urdu emotional speech cut from TV talk shows, natural rather than acted (Latif et al.,
2018): 400 clips of 1-3 s, four classes of 100 (angry, happy, neutral, sad), about 29 speakers with
1 to 80 clips each.

    <root>/labels.csv   path,label,speaker
    <root>/<Angry|Happy|Neutral|Sad>/<speaker>_<...>.opus   (the shared copy: Ogg Opus, 16 kHz speech)

Labels go into the shared speech space (labels.SPEECH7); URDU has no fearful, disgust or surprised
rows. Splits are by speaker (corpora.speaker_table). Many speakers hold one emotion only (SM5: 72
of its 80 clips neutral), so a speaker's statistics carry its class: per-speaker standardisation
removes part of the signal here, and the speaker folds balance classes only as far as whole
speakers allow."""

from __future__ import annotations

from emofuse.corpora.speaker_table import SpeakerTableCorpus
from emofuse.registry import CORPORA


@CORPORA.register("urdu")
class URDU(SpeakerTableCorpus):
    name = "urdu"
    release = {"rows": 400, "speakers": 29, "classes": {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}}
