"""A small SYNTHETIC corpus in the MER2025 Track 1 layout, so the whole pipeline (prepare, extract,
train, evaluate, serve) can run end to end without any real data. It is not a benchmark: numbers
measured on it say that the code works, nothing about emotion recognition.

Every clip has a drawn face, a synthetic voice and an English (and Chinese) transcript whose
expression, prosody and wording follow the clip's label. Each modality is informative but
unreliable: independently per modality, with probability `p_corrupt`, it carries no label
information (a neutral sentence; a face blurred, masked or absent; a neutral voice under heavy
noise), so that fusing the modalities beats any single one. What was corrupted is written to
ROOT/synthetic_truth.csv for tests and analysis.

Layout written (see corpora/mer2025.py, which reads it):
    ROOT/SYNTHETIC                   marker: says the corpus is synthetic, and the parameters used
    ROOT/video/<name>.mp4            H.264 yuv420p + AAC mono
    ROOT/audio/<name>.wav            16-bit PCM mono, the same audio as the mp4's track
    ROOT/subtitle_chieng.csv         name, chinese, english
    ROOT/track1_train_disdim.csv     name, discrete, valence        (labelled clips only)
    ROOT/track_all_candidates.csv    name                           (labelled + unlabelled clips)
    ROOT/synthetic_truth.csv         name, label, text_corrupt, face_corrupt, audio_corrupt, speaker

Everything is drawn from one seed: the same arguments give byte-identical csv and wav files and
identical decoded video frames."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emofuse.labels import MER6

CLASSES: tuple[str, ...] = MER6.classes  # neutral, angry, happy, sad, worried, surprise
MARKER = "SYNTHETIC"
MARKER_SENTENCE = (
    "This corpus is SYNTHETIC: drawn faces, synthesised voices and templated transcripts made by "
    "emofuse.corpora.demo.make_demo_corpus. It contains no real people and no real emotions."
)
N_UNLABELLED = 12  # candidates with no label row, like MER2025's unlabelled test candidates

# Class means on MER's valence scale (-5..5), jittered per clip.
VALENCE = {"neutral": 0.0, "angry": -3.0, "happy": 3.0, "sad": -3.5, "worried": -2.0, "surprise": 1.0}


@dataclass(frozen=True)
class Speaker:
    name: str
    f0: float  # Hz, base pitch of the voice
    skin: tuple[int, int, int]  # RGB
    hair: tuple[int, int, int]
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]


SPEAKERS = (
    Speaker("spk_a", 210.0, (236, 196, 164), (60, 40, 25), (120, 150, 190), (40, 90, 140)),
    Speaker("spk_b", 120.0, (214, 170, 130), (30, 25, 20), (170, 175, 160), (110, 50, 50)),
    Speaker("spk_c", 185.0, (245, 210, 180), (150, 100, 50), (90, 120, 100), (60, 60, 90)),
    Speaker("spk_d", 105.0, (200, 150, 115), (20, 20, 20), (205, 215, 228), (50, 100, 70)),
)


def make_demo_corpus(
    root: str | Path,
    *,
    n_per_class: int = 60,
    seed: int = 0,
    duration: float = 2.0,
    fps: int = 8,
    size: int = 128,
    sr: int = 16000,
    p_corrupt: float = 0.35,
    n_unlabelled: int = N_UNLABELLED,
    progress: bool = True,
) -> Path:
    """Write the synthetic corpus under `root` and return `root`.

    n_per_class labelled clips per class (6 classes) plus `n_unlabelled` unlabelled candidates.
    Re-running with the same arguments on a finished corpus does nothing; different arguments
    rewrite it."""
    from emofuse.media.audio import write_wav  # media imports PyAV and OpenCV: only when writing
    from emofuse.media.video import write_video

    if n_per_class < 1 or duration <= 0 or fps <= 0 or sr <= 0:
        raise ValueError("n_per_class, duration, fps and sr must be positive")
    if size < 32 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 32 (yuv420p halves it), got {size}")
    if not 0.0 <= p_corrupt <= 1.0:
        raise ValueError(f"p_corrupt must be in [0, 1], got {p_corrupt}")
    root = Path(root)
    params = dict(n_per_class=n_per_class, seed=seed, duration=duration, fps=fps, size=size, sr=sr,
                  p_corrupt=p_corrupt, n_unlabelled=n_unlabelled, version=1)
    plan = _plan(params)
    if _is_complete(root, params, plan):
        return root

    marker = root / MARKER
    if root.is_dir() and any(root.iterdir()) and not marker.is_file():
        # Never write sample_*.mp4 over a real corpus someone pointed us at by mistake.
        raise FileExistsError(
            f"{root} is not empty and has no {MARKER} marker: refusing to write a demo corpus there"
        )
    (root / "video").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    # The sentence first; the parameters line is added at the very end and marks the corpus complete.
    marker.write_text(MARKER_SENTENCE + "\n")

    from rich.progress import track

    for clip in track(plan, description=f"demo corpus ({len(plan)} clips)", disable=not progress, transient=True):
        rng = np.random.default_rng([seed, clip["index"]])  # one stream per clip: order-independent
        speaker = SPEAKERS[clip["speaker"]]
        audio = synth_voice(clip["label"], rng, speaker=speaker, duration=duration, sr=sr,
                            corrupt=clip["audio_corrupt"])
        frames = render_face_clip(clip["label"], rng, speaker=speaker, n_frames=round(duration * fps),
                                  size=size, corrupt=clip["face_kind"])
        write_wav(root / "audio" / f"{clip['name']}.wav", audio, sr)
        write_video(root / "video" / f"{clip['name']}.mp4", frames, fps, audio=audio, sr=sr)

    labelled = [c for c in plan if c["labelled"]]
    _write_csv(root / "subtitle_chieng.csv", ["name", "chinese", "english"],
               [[c["name"], c["chinese"], c["english"]] for c in plan])
    _write_csv(root / "track1_train_disdim.csv", ["name", "discrete", "valence"],
               [[c["name"], c["label"], f"{c['valence']:.2f}"] for c in labelled])
    _write_csv(root / "track_all_candidates.csv", ["name"], [[c["name"]] for c in plan])
    _write_csv(root / "synthetic_truth.csv",
               ["name", "label", "text_corrupt", "face_corrupt", "audio_corrupt", "speaker"],
               [[c["name"], c["label"], int(c["text_corrupt"]), int(c["face_kind"] is not None),
                 int(c["audio_corrupt"]), SPEAKERS[c["speaker"]].name] for c in plan])
    names = {c["name"] for c in plan}
    for sub, ext in (("video", "mp4"), ("audio", "wav")):
        for f in (root / sub).glob(f"sample_*.{ext}"):
            if f.stem not in names:  # left by an earlier, larger demo corpus in the same root
                f.unlink()
    marker.write_text(MARKER_SENTENCE + "\n" + json.dumps(params, sort_keys=True) + "\n")
    return root


# ---------------------------------------------------------------------------------------------
# The plan: every random choice that is not inside a clip's own media, drawn up front.


def _plan(params: dict) -> list[dict]:
    rng = np.random.default_rng([params["seed"], 2**31 - 1])  # a stream no clip index can reach
    n_lab = params["n_per_class"] * len(CLASSES)
    labels = [c for c in CLASSES for _ in range(params["n_per_class"])]
    labels += [CLASSES[i] for i in rng.integers(0, len(CLASSES), params["n_unlabelled"])]
    is_lab = [True] * n_lab + [False] * params["n_unlabelled"]
    order = rng.permutation(len(labels))  # names must not give the label away
    p = params["p_corrupt"]
    plan = []
    for k, i in enumerate(order):
        label = labels[i]
        text_corrupt = bool(rng.random() < p)
        face_corrupt = bool(rng.random() < p)
        audio_corrupt = bool(rng.random() < p)
        english, chinese = _sentence("neutral" if text_corrupt else label, rng)
        plan.append(dict(
            index=k,
            name=f"sample_{k + 1:08d}",
            label=label,
            labelled=is_lab[i],
            speaker=int(rng.integers(len(SPEAKERS))),
            text_corrupt=text_corrupt,
            face_kind=str(rng.choice(FACE_CORRUPTIONS)) if face_corrupt else None,
            audio_corrupt=audio_corrupt,
            english=english,
            chinese=chinese,
            valence=float(np.clip(VALENCE[label] + rng.normal(0, 0.6), -5, 5)),
        ))
    return plan


def _is_complete(root: Path, params: dict, plan: list[dict]) -> bool:
    marker = root / MARKER
    if not marker.is_file():
        return False
    lines = marker.read_text().splitlines()
    try:
        if json.loads(lines[1]) != params:
            return False
    except (IndexError, json.JSONDecodeError):
        return False
    media = [root / sub / f"{c['name']}.{ext}" for c in plan for sub, ext in (("video", "mp4"), ("audio", "wav"))]
    return all(p.is_file() for p in media)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # "\n" on every OS: byte-identical files everywhere
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Text: per-class templates with a topic slot, in English and Chinese.

TOPICS = [
    ("the meeting", "这次会议"), ("my new job", "我的新工作"), ("the results", "这个结果"),
    ("his phone call", "他的电话"), ("the trip", "这次旅行"), ("that letter", "那封信"),
    ("the exam", "这次考试"), ("our plan", "我们的计划"), ("the house", "那套房子"),
    ("her decision", "她的决定"),
]
TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "neutral": [
        ("Let's talk about {t} tomorrow morning.", "我们明天早上再谈{t}吧。"),
        ("I will send you the details of {t} later.", "我稍后把{t}的细节发给你。"),
        ("{T} is on the schedule for nine o'clock.", "{t}安排在九点。"),
        ("Please put {t} on the list for next week.", "请把{t}列入下周的清单。"),
        ("I read the notes about {t} yesterday.", "我昨天看了关于{t}的记录。"),
        ("We can discuss {t} after lunch.", "我们可以午饭后讨论{t}。"),
    ],
    "angry": [
        ("I can't believe {t}, this is completely unacceptable!", "我真不敢相信{t}，这完全不能接受！"),
        ("Stop it! I'm sick and tired of {t}.", "够了！我受够了{t}。"),
        ("How dare you lie to me about {t}!", "你怎么敢在{t}上骗我！"),
        ("{T} is a disgrace and I'm furious about it.", "{t}简直是耻辱，我气坏了。"),
        ("Don't you ever mention {t} again, I hate it!", "别再跟我提{t}，我恨透了！"),
    ],
    "happy": [
        ("I'm so happy about {t}, this is wonderful!", "{t}让我太开心了，真是太好了！"),
        ("That's fantastic, {t} went better than I ever hoped.", "太棒了，{t}比我想象的还要好。"),
        ("Haha, I love it, {t} made my whole day!", "哈哈，我太喜欢了，{t}让我一整天都很高兴！"),
        ("Great news about {t}, I can't stop smiling.", "{t}是个好消息，我一直忍不住笑。"),
        ("We did it, {t} is a real success, I'm delighted!", "我们做到了，{t}非常成功，我太高兴了！"),
    ],
    "sad": [
        ("I really miss how things were before {t}.", "我真怀念{t}之前的日子。"),
        ("After {t} I just feel empty and alone.", "{t}之后我只觉得空虚和孤单。"),
        ("It hurts so much, {t} is over and nothing will bring it back.", "太难过了，{t}结束了，再也回不来了。"),
        ("I cried all night because of {t}.", "因为{t}我哭了一整夜。"),
        ("Everything feels hopeless since {t}, I'm so sad.", "自从{t}以后一切都没有希望了，我好伤心。"),
    ],
    "worried": [
        ("What if {t} goes wrong? I'm really nervous.", "万一{t}出问题怎么办？我真的很紧张。"),
        ("I'm afraid {t} won't work out, I can't sleep.", "我担心{t}不会顺利，我都睡不着。"),
        ("I keep thinking something bad will happen with {t}.", "我总觉得{t}会出什么事。"),
        ("Are you sure about {t}? I'm so anxious.", "你确定{t}没问题吗？我好焦虑。"),
        ("I'm scared that {t} will fall apart.", "我害怕{t}会搞砸。"),
    ],
    "surprise": [
        ("What? {T} already? I never expected that!", "什么？{t}已经好了？我完全没想到！"),
        ("No way, {t} turned out like this?!", "不会吧，{t}竟然是这样？！"),
        ("Oh! I can't believe my eyes, look at {t}!", "哦！我简直不敢相信，看看{t}！"),
        ("Wow, really? {T} is happening today?", "哇，真的吗？{t}今天就开始了？"),
        ("Wait, {t}? That's such a shock!", "等等，{t}？太让人吃惊了！"),
    ],
}


def _sentence(label: str, rng: np.random.Generator) -> tuple[str, str]:
    en, zh = TEMPLATES[label][rng.integers(len(TEMPLATES[label]))]
    t_en, t_zh = TOPICS[rng.integers(len(TOPICS))]
    return en.format(t=t_en, T=t_en[0].upper() + t_en[1:]), zh.format(t=t_zh, T=t_zh)


# ---------------------------------------------------------------------------------------------
# Faces. Drawn at twice the output size with anti-aliased primitives, then moved (head motion)
# and shrunk. Coordinates are in face units: u across (-1..1 is the face's width), v down
# (-1..1 is its height), origin at the face centre.


@dataclass(frozen=True)
class Expression:
    brow_inner: float  # vertical offset of the inner brow ends, face units (negative = raised)
    brow_outer: float  # the same for the outer ends
    brow_arch: float  # upward bulge of the brow's middle
    eye_open: float  # eye height as a multiple of the neutral eye
    mouth_width: float  # half-width, face units
    mouth_curve: float  # corners above (+) or below (-) the centre, face units
    mouth_open: float  # height of the opening, face units (0 = closed lips)
    mouth_wave: float  # amplitude of a wavy (trembling) lip line


EXPRESSIONS = {
    "neutral": Expression(0.0, 0.0, 0.02, 1.0, 0.32, 0.0, 0.0, 0.0),
    "happy": Expression(-0.02, -0.02, 0.05, 0.85, 0.46, 0.20, 0.14, 0.0),
    "sad": Expression(-0.16, 0.07, 0.0, 0.8, 0.32, -0.16, 0.0, 0.0),
    "angry": Expression(0.14, -0.08, -0.02, 0.6, 0.30, -0.05, 0.0, 0.0),
    "surprise": Expression(-0.16, -0.14, 0.08, 1.4, 0.14, 0.0, 0.34, 0.0),
    "worried": Expression(-0.17, 0.04, 0.0, 1.2, 0.24, -0.04, 0.0, 0.035),
}
FACE_CORRUPTIONS = ("blur", "mask", "absent")


def render_face_clip(
    label: str,
    rng: np.random.Generator,
    *,
    speaker: Speaker = SPEAKERS[0],
    n_frames: int = 16,
    size: int = 128,
    corrupt: str | None = None,
) -> np.ndarray:
    """(n_frames, size, size, 3) uint8 RGB frames of a drawn face showing `label`.

    corrupt: None, or one of FACE_CORRUPTIONS, which all make the clip uninformative: the face is
    drawn neutral and then blurred beyond recognition, masked from the brows down by a grey
    occluder, or left out entirely."""
    import cv2

    if corrupt is not None and corrupt not in FACE_CORRUPTIONS:
        raise ValueError(f"corrupt must be None or one of {FACE_CORRUPTIONS}, got {corrupt!r}")
    target = EXPRESSIONS["neutral" if corrupt else label]
    neutral = EXPRESSIONS["neutral"]
    big = 2 * size
    # Per-clip variation: expression strength and where in the clip it peaks, head position.
    strength = rng.uniform(0.85, 1.15)
    onset = rng.uniform(0.0, 0.3)
    cx0, cy0 = big * (0.5 + rng.uniform(-0.04, 0.04)), big * (0.52 + rng.uniform(-0.03, 0.03))
    phase = rng.uniform(0, 2 * math.pi, 3)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)  # (T, S, S, 3)
    last_expr, drawn = None, None
    for f in range(n_frames):
        x = f / max(n_frames - 1, 1)
        # Expressions build up over the first part of the clip, as in real utterances.
        k = strength * min(1.0, 0.55 + 0.45 * max(0.0, x - onset) / 0.4)
        expr = Expression(*(n + k * (t - n) for n, t in zip(_astuple(neutral), _astuple(target))))
        if expr != last_expr:  # corrupted faces are neutral throughout: drawn once
            drawn, last_expr = _draw_face(big, speaker, expr, (big / 2, big / 2), corrupt), expr
        # Slow sway plus per-frame jitter, so consecutive frames differ as in real video.
        dx = 0.025 * big * math.sin(2 * math.pi * 0.4 * x + phase[0]) + rng.normal(0, 0.004 * big)
        dy = 0.015 * big * math.sin(2 * math.pi * 0.3 * x + phase[1]) + rng.normal(0, 0.004 * big)
        angle = 4.0 * math.sin(2 * math.pi * 0.35 * x + phase[2]) + rng.normal(0, 0.5)
        m = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0 + rng.normal(0, 0.01))
        m[:, 2] += (cx0 - big / 2 + dx, cy0 - big / 2 + dy)
        canvas = cv2.warpAffine(drawn, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        img += rng.normal(0, 3.0, img.shape)  # mild sensor noise
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def _astuple(e: Expression) -> tuple[float, ...]:
    return tuple(getattr(e, f) for f in Expression.__dataclass_fields__)


class _Painter:
    """Anti-aliased cv2 drawing in face units on a (big, big, 3) canvas (cv2's shift=2: 1/4 px)."""

    def __init__(self, img: np.ndarray, centre: tuple[float, float], a: float, b: float):
        import cv2  # here, not at import: the corpus registry imports every corpus module

        self.cv2 = cv2
        self.img, (self.cx, self.cy), self.a, self.b = img, centre, a, b

    def pt(self, u: float, v: float) -> tuple[int, int]:
        return round((self.cx + u * self.a) * 4), round((self.cy + v * self.b) * 4)

    def ellipse(self, u, v, au, bv, color, thick=-1) -> None:
        axes = (int(au * self.a * 4), int(bv * self.b * 4))
        self.cv2.ellipse(self.img, self.pt(u, v), axes, 0, 0, 360, color, thick, self.cv2.LINE_AA, 2)

    def line(self, pts, color, width: int, closed: bool = False) -> None:
        arr = np.array([self.pt(u, v) for u, v in pts], dtype=np.int32)
        self.cv2.polylines(self.img, [arr], closed, color, max(1, width), self.cv2.LINE_AA, 2)

    def fill(self, pts, color) -> None:
        self.cv2.fillPoly(self.img, [np.array([self.pt(u, v) for u, v in pts], dtype=np.int32)], color, self.cv2.LINE_AA, 2)

    def rect(self, u0, v0, u1, v1, color) -> None:
        self.cv2.rectangle(self.img, self.pt(u0, v0), self.pt(u1, v1), color, -1, self.cv2.LINE_AA, 2)


def _draw_face(big: int, spk: Speaker, e: Expression, centre, corrupt: str | None) -> np.ndarray:
    import cv2

    img = np.empty((big, big, 3), dtype=np.uint8)  # (2S, 2S, 3)
    img[:] = spk.background
    pa = _Painter(img, centre, 0.26 * big, 0.34 * big)  # face half-width and half-height in pixels
    shade = tuple(int(c * 0.72) for c in spk.skin)
    dark = (35, 25, 20)
    pa.ellipse(0.0, 1.55, 1.7, 0.55, spk.shirt)  # shoulders
    pa.rect(-0.38, 0.6, 0.38, 1.15, shade)  # neck
    if corrupt == "absent":
        return img
    pa.ellipse(0.0, -0.12, 1.08, 0.98, spk.hair)  # hair behind the head
    pa.ellipse(-1.0, 0.0, 0.14, 0.2, shade)  # ears
    pa.ellipse(1.0, 0.0, 0.14, 0.2, shade)
    pa.ellipse(0.0, 0.0, 1.0, 1.0, spk.skin)
    pa.ellipse(0.0, -0.96, 0.85, 0.16, spk.hair)  # fringe
    for s in (-1, 1):
        # Dark eye sockets under dark brows over lighter cheeks: the contrast pattern the Haar
        # cascade looks for. Grey-white sclera and a big iris keep the eye region dark overall.
        pa.ellipse(s * 0.38, -0.12, 0.3, 0.14, shade)
        h = 0.085 * e.eye_open
        pa.ellipse(s * 0.38, -0.12, 0.19, h, (228, 228, 225))
        r = min(0.12, 0.95 * h * pa.b / pa.a)  # iris, shrunk when the eye is narrowed
        pa.ellipse(s * 0.38, -0.12, r, r * pa.a / pa.b, (50, 35, 25))
        pa.ellipse(s * 0.38, -0.12 - h * 0.65, 0.21, 0.03, dark)  # upper lid and lashes
        ui, uo = s * 0.14, s * 0.66  # inner and outer brow ends
        vi, vo = -0.36 + e.brow_inner, -0.36 + e.brow_outer
        pa.line([(ui, vi), ((ui + uo) / 2, (vi + vo) / 2 - e.brow_arch), (uo, vo)], dark, int(0.028 * big))
    pa.line([(0.07, -0.05), (0.1, 0.22)], shade, int(0.018 * big))  # nose ridge, tip, nostrils
    pa.ellipse(0.0, 0.27, 0.14, 0.05, shade)
    pa.ellipse(-0.08, 0.28, 0.045, 0.025, (90, 55, 45))
    pa.ellipse(0.08, 0.28, 0.045, 0.025, (90, 55, 45))
    _draw_mouth(pa, e, big)
    if corrupt == "blur":
        # Blur a face-sized region far wider than an eye: the blob stays, the expression goes.
        # Shrinking 16x and enlarging back is that blur at a hundredth of GaussianBlur's cost.
        (x0, y0), (x1, y1) = ((max(0, c // 4) for c in pa.pt(k, k)) for k in (-1.15, 1.15))
        patch = img[y0:y1, x0:x1]
        ph, pw = patch.shape[:2]
        small = cv2.resize(patch, (max(1, pw // 16), max(1, ph // 16)), interpolation=cv2.INTER_AREA)
        img[y0:y1, x0:x1] = cv2.resize(small, (pw, ph), interpolation=cv2.INTER_CUBIC)
    elif corrupt == "mask":
        pa.rect(-1.1, -0.55, 1.1, 1.05, (128, 128, 128))  # brows to chin
    return img


def _draw_mouth(pa: _Painter, e: Expression, big: int) -> None:
    v0 = 0.55
    x = np.linspace(-1, 1, 25)  # along the mouth, corner to corner
    us = e.mouth_width * x
    # The lip line: a parabola whose corners sit mouth_curve above the centre, plus a ripple.
    curve = v0 - e.mouth_curve * x**2 + e.mouth_wave * np.sin(3 * math.pi * x)
    lip, inside = (150, 60, 60), (70, 20, 25)
    if e.mouth_open > 1.2 * e.mouth_width:  # a round, taller-than-wide "O" (surprise)
        v = v0 + e.mouth_open / 2 - 0.05
        pa.ellipse(0.0, v, e.mouth_width, e.mouth_open / 2, inside)
        pa.ellipse(0.0, v, e.mouth_width, e.mouth_open / 2, lip, thick=int(0.014 * big))
    elif e.mouth_open > 0.03:
        # Open mouth: the upper edge follows the lip line, the lower edge bulges down by mouth_open.
        lower = curve + e.mouth_open * (1 - x**2) + 0.02
        outline = [*zip(us, curve), *zip(us[::-1], lower[::-1])]
        pa.fill(outline, inside)
        pa.line(outline, lip, int(0.012 * big), closed=True)
        if e.mouth_curve > 0.05:  # a smile shows the upper teeth
            pa.fill([*zip(0.8 * us, curve + 0.01), *zip(0.8 * us[::-1], curve[::-1] + 0.05)], (225, 222, 215))
    else:
        pa.line(list(zip(us, curve)), lip, int(0.03 * big))
        pa.line(list(zip(us, curve)), (80, 30, 30), int(0.01 * big))


# ---------------------------------------------------------------------------------------------
# Voice: a harmonic source with vibrato and jitter, shaped into syllables, each filtered through
# the formants of a vowel, plus a little breath and room noise.


@dataclass(frozen=True)
class Prosody:
    pitch: float  # multiple of the speaker's base f0
    pitch_range: float  # semitones of per-syllable pitch movement
    slope: float  # semitones of rise (+) or fall (-) over the utterance
    rate: float  # syllables per second
    loudness: float  # peak amplitude of the voice
    tremble: float  # semitones of 6-8 Hz vibrato (a trembling voice)
    jitter: float  # semitones of random, fast pitch wander
    tilt: float  # spectral slope of the harmonics: higher = darker, softer voice


PROSODY = {
    "neutral": Prosody(1.0, 1.0, -1.0, 3.5, 0.30, 0.05, 0.10, 1.4),
    "angry": Prosody(1.3, 3.0, -1.5, 5.5, 0.80, 0.05, 0.25, 0.9),
    "happy": Prosody(1.35, 6.0, 0.0, 4.5, 0.50, 0.10, 0.15, 1.1),
    "sad": Prosody(0.8, 0.6, -2.0, 2.2, 0.13, 0.05, 0.10, 1.8),
    "worried": Prosody(1.1, 1.5, 0.0, 3.8, 0.25, 0.70, 0.50, 1.5),
    "surprise": Prosody(1.15, 2.0, 9.0, 4.0, 0.50, 0.05, 0.15, 1.1),
}
VOWELS = (  # (F1, F2, F3) Hz
    (800, 1200, 2500), (500, 1800, 2500), (300, 2200, 3000), (500, 900, 2400), (350, 800, 2300),
)


def synth_voice(
    label: str,
    rng: np.random.Generator,
    *,
    speaker: Speaker = SPEAKERS[0],
    duration: float = 2.0,
    sr: int = 16000,
    corrupt: bool = False,
) -> np.ndarray:
    """(round(duration * sr),) float32 voice-like audio whose prosody follows `label`.

    corrupt=True gives an uninformative clip: a neutral voice under heavy noise at a fixed overall
    level, whatever the label."""
    from scipy.signal import lfilter

    pr = PROSODY["neutral" if corrupt else label]
    n = round(duration * sr)
    t = np.arange(n) / sr

    # Syllable schedule: (start, length) in seconds, with a pause every few syllables.
    sylls = []
    pos = rng.uniform(0.05, 0.15)
    count = 0
    while True:
        length = rng.uniform(0.55, 0.85) / pr.rate
        if pos + length > duration - 0.05:
            break
        sylls.append((pos, length))
        count += 1
        pos += length + rng.uniform(0.1, 0.3) / pr.rate
        if count % int(rng.integers(3, 6)) == 0:
            pos += rng.uniform(0.1, 0.2)
    if not sylls:  # a clip shorter than one syllable still says something
        sylls.append((0.0, duration))

    # Pitch in semitones relative to the speaker's base: per-syllable targets joined smoothly,
    # plus the utterance-level slope, a tremble and random jitter.
    centres = np.array([s + length / 2 for s, length in sylls])
    targets = rng.uniform(-pr.pitch_range / 2, pr.pitch_range / 2, len(sylls))
    semis = np.interp(t, centres, targets)
    semis += pr.slope * (t / duration) ** 1.5
    semis += pr.tremble * np.sin(2 * np.pi * rng.uniform(6, 8) * t + rng.uniform(0, 2 * np.pi))
    wander = lfilter([0.02], [1, -0.98], rng.normal(0, 1, n))  # ~50 Hz low-passed noise
    semis += pr.jitter * wander / (np.std(wander) + 1e-9)
    f0 = speaker.f0 * pr.pitch * 2.0 ** (semis / 12)  # (n,) Hz

    # Harmonic source up to 5 kHz (no aliasing at 16 kHz), amplitude k^-tilt.
    phase = 2 * np.pi * np.cumsum(f0) / sr
    source = np.zeros(n)
    # sin(k*phase) by the recurrence s_k = 2cos(phase) s_(k-1) - s_(k-2): no sin call per harmonic.
    two_cos, s_prev, s_k = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
    for k in range(1, int(5000 / f0.min()) + 1):
        source += (k * f0 < 5000) * s_k / k**pr.tilt
        s_prev, s_k = s_k, two_cos * s_k - s_prev
    source += 0.05 * rng.normal(0, 1, n)  # breath

    voice = np.zeros(n)
    for start, length in sylls:
        i0, i1 = int(start * sr), min(n, int((start + length) * sr))
        seg = source[i0:i1] * np.sin(np.pi * np.linspace(0, 1, i1 - i0)) ** 0.7  # syllable envelope
        # Formants in parallel (Klatt-style), so F2 and F3 survive instead of being buried under
        # the low-pass a cascade of resonators becomes at this coarse a model.
        vowel = VOWELS[rng.integers(len(VOWELS))]
        voice[i0:i1] += sum(g * lfilter(*_resonator(fc, bw, sr), seg)
                            for fc, bw, g in zip(vowel, (80, 100, 150), (1.0, 0.6, 0.3)))
    voice *= pr.loudness / (np.abs(voice).max() + 1e-9)

    if corrupt:
        # Noise 0-8 dB above the voice, then the mixture set to one level: neither the voice's
        # prosody nor its loudness says anything about the label.
        noise = _pink(rng, n)
        snr_db = rng.uniform(-8, 0)
        noise *= np.sqrt(np.mean(voice**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
        voice = voice + noise
        voice *= 0.5 / (np.abs(voice).max() + 1e-9)
    else:
        voice += 0.002 * rng.normal(0, 1, n)  # room noise
    return np.clip(voice, -1, 1).astype(np.float32)


def _resonator(fc: float, bw: float, sr: int):
    """Two-pole resonator with unit gain at its centre frequency (one formant)."""
    r = math.exp(-math.pi * bw / sr)
    theta = 2 * math.pi * fc / sr
    a = [1.0, -2 * r * math.cos(theta), r * r]
    return [(1 - r) * math.sqrt(1 - 2 * r * math.cos(2 * theta) + r * r)], a


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Approximately 1/f noise (Kellet's three-pole filter on white noise): sounds like babble/hum."""
    from scipy.signal import lfilter

    return lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                   [1, -2.494956002, 2.017265875, -0.522189400], rng.normal(0, 1, n))
