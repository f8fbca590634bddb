"""Any Hugging Face model as an encoder, by hub id or local folder, and the `build_encoder` spec parser.

Spec strings (what configs and the CLI pass around):

    minilm                                  a built-in, looked up in the ENCODERS registry
    mfcc@stats=mean_std                     a built-in with options
    hf:FacebookAI/roberta-base              a hub id (resolved through the local HF cache)
    hf:/models/chinese-hubert-large@layers=last4,batch_size=8
    finetuned:runs/meld-ft-text             the encoder a finetune_text/_audio run saved (RUN/encoder), named ft-<run>

The modality comes from the checkpoint's `model_type` (see VIDEO_TYPES / AUDIO_TYPES / TEXT_TYPES).
Pooling, per modality:
  text   token states of the chosen layer(s) over the non-pad tokens -> sequence (T, D); vector =
         their mean (special tokens included, as sentence-transformers does; decoder LLMs too).
  audio  frame states (20 ms frames for wav2vec2-style models) -> sequence (T, D); vector = mean.
  video  one vector per frame -> sequence (F, D); vector = mean over frames. The per-frame vector
         is CLIP's projected image embedding (layers=last), SigLIP's pooled output (layers=last),
         else the CLS token for ViT-like models and the token mean for the rest.
layers: "last" = the model's final output (after its final layer norm); "last4" = the sum of the
last four hidden states, as the MER reference extractor does.

The model is loaded on the first `encode`, so building an encoder to compute its name and
fingerprint (what the cache needs to decide there is nothing to do) is cheap.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.encoders.loading import (
    folder_digest, folder_revision, hub_name, pick_device, quiet_load, resolve_folder, weight_files,
)

ENCODER_DIR = "encoder"  # RUN/<unit>/encoder: a fine-tuned backbone + its tokenizer / feature extractor

log = logging.getLogger(__name__)

VIDEO_TYPES = {
    "vit", "deit", "beit", "dinov2", "dinov2_with_registers", "data2vec-vision", "vit_msn", "vit_mae",
    "clip", "clip_vision_model", "siglip", "siglip_vision_model", "siglip2", "siglip2_vision_model",
}
AUDIO_TYPES = {"hubert", "wav2vec2", "wav2vec2-conformer", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat"}
ENCODER_TEXT_TYPES = {
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "deberta", "deberta-v2", "distilbert", "electra",
    "albert", "mpnet", "camembert", "ernie", "data2vec-text", "modernbert", "megatron-bert", "nezha",
}
DECODER_TEXT_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi", "phi3", "gpt2", "gpt_neox", "gptj", "opt", "falcon", "bloom", "baichuan", "chatglm", "internlm2",
    "olmo", "olmo2", "stablelm", "starcoder2", "cohere", "granite",
}
TEXT_TYPES = ENCODER_TEXT_TYPES | DECODER_TEXT_TYPES
# Vision models whose token 0 is a CLS token trained as the image summary.
_CLS_VISION = {"vit", "deit", "beit", "dinov2", "dinov2_with_registers", "data2vec-vision", "vit_msn", "vit_mae",
               "clip", "clip_vision_model"}
_CLIP_TYPES = {"clip", "clip_vision_model"}
_SIGLIP_TYPES = {"siglip", "siglip_vision_model", "siglip2", "siglip2_vision_model"}


def modality_of(model_type: str, architectures: list[str] | None = None) -> str:
    """'video' | 'audio' | 'text' for a config's model_type; unknown types raise naming the known ones."""
    if model_type in VIDEO_TYPES:
        return "video"
    if model_type in AUDIO_TYPES:
        return "audio"
    if model_type in TEXT_TYPES:
        return "text"
    # Any other causal LM works with the generic text path (AutoModel + mean over tokens).
    if any(a.endswith("ForCausalLM") for a in architectures or []):
        return "text"
    raise ValueError(
        f"model_type {model_type!r} is not supported by the hf encoder; known types: "
        f"video {sorted(VIDEO_TYPES)}, audio {sorted(AUDIO_TYPES)}, text {sorted(TEXT_TYPES)} "
        f"(and any *ForCausalLM)"
    )


def safe_name(text: str) -> str:
    """Filesystem-safe: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


# ---------------------------------------------------------------------------------------------
# the encoder


def _pick_dtype(dtype: str, device: str) -> str:
    import torch

    if not device.startswith("cuda"):
        if dtype not in ("auto", "fp32"):
            # Half precision on CPU is slow and, for some ops, missing; a GPU config must still run here.
            log.warning("dtype %s is for GPUs; using fp32 on %s", dtype, device)
        return "fp32"
    if dtype == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return dtype


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Items per forward pass when none is given. A GPU needs large batches to be busy (the plain
# BERT-base loop on an H200 ran at 256); features.extract sorts rows by length, so they pad little.
_DEFAULT_BATCH = {"cpu": {"text": 32, "audio": 16, "video": 16}, "cuda": {"text": 256, "audio": 32, "video": 32}}


def default_batch_size(modality: str, device: str) -> int:
    return _DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"][modality]


class HFEncoder(Encoder):
    """A transformers model (see the module docstring for pooling). Options:

    layers      "last" | "last4"
    batch_size  items per forward pass (video: frames per pass is batch_size * 8); default 32 for text
                and 16 for audio and video on CPU, 256 for text and 32 for audio and video on a GPU
    device      "auto" (cuda when available) | "cpu" | "cuda" | "cuda:1"
    dtype       "auto" (bf16, else fp16, on GPU; fp32 on CPU) | "fp32" | "bf16" | "fp16"
    max_length  text tokens kept (truncation); default 512
    revision    hub revision (branch, tag or commit) when source is a hub id
    normalize   L2-normalise the utterance vector (sentence-transformers models)
    trust_remote_code  for hub models with their own modelling code (chatglm, baichuan)
    """

    OPTIONS = ("layers", "batch_size", "device", "dtype", "max_length", "revision", "normalize",
               "trust_remote_code")

    def __init__(
        self,
        source: str | Path,
        *,
        layers: str = "last",
        batch_size: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 512,
        revision: str | None = None,
        normalize: bool = False,
        trust_remote_code: bool = False,
        name: str | None = None,
    ):
        from transformers import AutoConfig

        if layers not in ("last", "last4"):
            raise ValueError(f"layers must be 'last' or 'last4', not {layers!r}")
        if dtype not in ("auto", *_DTYPES):
            raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}")
        if (batch_size is not None and int(batch_size) < 1) or int(max_length) < 1:
            raise ValueError("batch_size and max_length must be positive")
        self.source = str(source)
        self.folder = resolve_folder(self.source, revision)
        self.layers = layers
        self._batch_request = None if batch_size is None else int(batch_size)
        self._dtype_request = dtype
        self.device = pick_device(device)
        self.dtype = _pick_dtype(dtype, self.device)
        self.max_length = int(max_length)
        self.normalize = bool(normalize)
        self.trust_remote_code = bool(trust_remote_code)
        self.revision = folder_revision(self.folder) or (revision or "")

        self.hf_config = AutoConfig.from_pretrained(self.folder, trust_remote_code=self.trust_remote_code)
        self.model_type: str = self.hf_config.model_type
        self.modality = modality_of(self.model_type, getattr(self.hf_config, "architectures", None))
        self.batch_size = self._batch_request or default_batch_size(self.modality, self.device)
        # CLIP with layers=last gives the projected image embedding. A bare CLIPVisionModel checkpoint
        # saves projection_dim too but has no projection weights, so look at the weights.
        self._projection = layers == "last" and (
            self.model_type == "clip" or (self.model_type == "clip_vision_model" and self._has_projection())
        )
        self.dim = self._output_dim()
        self.gives_sequence = True
        # 'org/name' for hub models, the folder's name for local ones: never the path, so a model
        # folder can move without invalidating its cached features.
        is_local = Path(self.source).expanduser().is_dir()
        self.model_id = hub_name(self.folder) or (self.folder.name if is_local else self.source)
        if name is None:
            # Options that change the output go into the name too, so that they get cache folders
            # (and report rows) of their own rather than competing versions under one name.
            suffix = "-last4" if layers == "last4" else ""
            suffix += f"-len{self.max_length}" if self.modality == "text" and self.max_length != 512 else ""
            name = f"hf-{self.model_id.split('/')[-1]}{suffix}"
        self.name = safe_name(name)
        self._model = None
        self._processor = None
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"HFEncoder({self.name!r}, {self.modality}, dim={self.dim}, folder={str(self.folder)!r})"

    def _output_dim(self) -> int:
        c = self.hf_config
        if self._projection:
            return int(c.projection_dim)
        vc = getattr(c, "vision_config", None)
        if self.modality == "video" and vc is not None:
            return int(vc.hidden_size)
        for key in ("hidden_size", "n_embd", "d_model"):
            if getattr(c, key, None):
                return int(getattr(c, key))
        raise ValueError(f"{self.folder}: cannot tell the hidden size from config.json")

    def _has_projection(self) -> bool:
        from safetensors import safe_open

        for f in weight_files(self.folder):
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="np") as sf:
                    if any(k.startswith("visual_projection.") for k in sf.keys()):
                        return True
            else:
                return "WithProjection" in "".join(getattr(self.hf_config, "architectures", None) or [])
        return False

    def config(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "model": self.model_id,
            "model_type": self.model_type,
            "revision": self.revision,
            "layers": self.layers,
            "dtype": self.dtype,  # bf16 features differ from fp32 ones in the third digit
            "max_length": self.max_length if self.modality == "text" else None,
            "normalize": self.normalize,
            "dim": self.dim,
        }

    def weights_digest(self) -> str:
        if self._digest is None:
            self._digest = folder_digest(self.folder)
        return self._digest

    def to(self, device: str) -> "HFEncoder":
        """Run on `device`; the precision ("auto") and the default batch size follow it, so call this
        before the fingerprint is taken (features.extract does)."""
        device = pick_device(device)
        if device != self.device:
            self.device = device
            self.dtype = _pick_dtype(self._dtype_request, device)
            self.batch_size = self._batch_request or default_batch_size(self.modality, device)
            self._model = None  # loaded again, on the new device, by the next encode
        return self

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import transformers as tf

        kw = {"dtype": getattr(torch, _DTYPES[self.dtype]), "trust_remote_code": self.trust_remote_code}
        if self.model_type in _CLIP_TYPES:
            # Only the vision tower (+ projection) of a CLIP checkpoint; a full CLIP config keeps
            # projection_dim at its top level, which the vision config must be told.
            cfg = tf.CLIPVisionConfig.from_pretrained(self.folder)
            cfg.projection_dim = int(self.hf_config.projection_dim)
            cls = tf.CLIPVisionModelWithProjection if self._projection else tf.CLIPVisionModel
            model, info = quiet_load(cls, self.folder, config=cfg, **kw)
        elif self.model_type in ("siglip", "siglip2"):
            cls = tf.SiglipVisionModel if self.model_type == "siglip" else tf.Siglip2VisionModel
            model, info = quiet_load(cls, self.folder, **kw)
        else:
            model, info = quiet_load(tf.AutoModel, self.folder, **kw)
        # Unexpected keys are the parts we do not use (text towers, LM heads); missing ones other
        # than an unused pooler mean random weights in what we read.
        missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
        if missing:
            log.warning("%s: %d weights missing from %s were randomly initialised: %s", self.name, len(missing),
                        self.folder, ", ".join(sorted(missing)[:8]))
        self._model = model.to(self.device).eval()

        if self.modality == "text":
            tok = tf.AutoTokenizer.from_pretrained(self.folder, trust_remote_code=self.trust_remote_code)
            if tok.pad_token is None:  # decoder LLMs ship without one; padded positions are masked anyway
                tok.pad_token = tok.eos_token or tok.unk_token
            # Right padding: with causal attention the real tokens then never see a pad, and position
            # ids stay those of the unpadded text (left padding would shift them).
            tok.padding_side = "right"
            self._processor = tok
        elif self.modality == "audio":
            self._processor = tf.AutoFeatureExtractor.from_pretrained(self.folder)
        else:
            # The PIL backend: torchvision is not a dependency of emofuse.
            self._processor = tf.AutoImageProcessor.from_pretrained(self.folder, backend="pil")

    def _states(self, out) -> Any:
        """(B, N, D) token/frame states of the chosen layers."""
        if self.layers == "last4":
            hs = out.hidden_states
            if len(hs) < 5:  # embeddings + at least four layers
                raise ValueError(f"{self.name}: layers=last4 needs at least 4 layers, the model has {len(hs) - 1}")
            return sum(h.float() for h in hs[-4:])  # summed in fp32: bf16 sums of four layers lose digits
        return out.last_hidden_state.float()

    # -- encoding --------------------------------------------------------------------------------

    def encode(self, items: list) -> list[Encoded]:
        # Batches of similar lengths waste less compute on padding (which is masked, so the
        # outputs do not depend on the grouping); results go back in the order given.
        order = sorted(range(len(items)), key=lambda i: len(items[i])) if self.modality != "video" else range(len(items))
        out: list[Encoded] = [None] * len(items)  # type: ignore[list-item]
        chunks = [list(order[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        in_flight = None  # one pass running while the next batch is tokenised (on a GPU)
        for idx in chunks:
            started = (idx, self.submit([items[j] for j in idx]))
            if in_flight is not None:
                self._place(out, *in_flight)
            in_flight = started
        if in_flight is not None:
            self._place(out, *in_flight)
        return out

    @staticmethod
    def _place(out: list, idx: list[int], done) -> None:
        for j, r in zip(idx, done()):
            out[j] = r

    def submit(self, items: list):
        """One forward pass over `items` (text, audio: one padded batch; video: clip by clip). On a
        GPU the pass is started and its outputs copied back asynchronously; the function returned
        waits for them. Results as encode gives them."""
        import torch

        self._load()
        if not items:
            return lambda: []
        with torch.inference_mode():
            if self.modality == "text":
                done = self._submit_text(items)
            elif self.modality == "audio":
                done = self._submit_audio(items)
            else:
                res = [self._encode_video(x) for x in items]
                done = lambda: res  # noqa: E731

        def finish() -> list[Encoded]:
            out = done()
            if self.normalize:
                for e in out:
                    e.vector = e.vector / max(float(np.linalg.norm(e.vector)), 1e-12)
            return out

        return finish

    def _forward(self, **inputs):
        return self._model(**inputs, output_hidden_states=self.layers == "last4", return_dict=True)

    def _to_device(self, x, dtype=None):
        """A CPU tensor on the model's device; on a GPU through pinned memory, without waiting."""
        if self.device.startswith("cuda"):
            return x.pin_memory().to(self.device, dtype=dtype, non_blocking=True)
        return x.to(self.device, dtype=dtype)

    def _pooled(self, states, n):
        """states (B, T, D) float32 on the device, n (B,) CPU int tensor of the valid positions of
        each row (its first n[i]) -> a function giving Encoded(mean of those positions, (n[i], D)).
        The means are taken on the device and everything comes back to the CPU in one copy each."""
        import torch

        n_dev = self._to_device(n)  # a blocking copy would wait for the pass, undoing the overlap
        mask = (torch.arange(states.shape[1], device=states.device)[None, :] < n_dev[:, None]).to(states.dtype)  # (B, T)
        vec = torch.bmm(mask[:, None, :], states)[:, 0] / n_dev.clamp(min=1)[:, None].to(states.dtype)  # (B, D)
        ready = None
        if states.device.type == "cuda":  # into pinned memory, waited for by done()
            states, vec = states.to("cpu", non_blocking=True), vec.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        elif states.device.type != "cpu":
            states, vec = states.cpu(), vec.cpu()
        lengths = n.tolist()

        def done() -> list[Encoded]:
            if ready is not None:
                ready.synchronize()
            s, v = states.numpy(), vec.numpy()  # (B, T, D), (B, D)
            return [Encoded(v[i], s[i, :k]) for i, k in enumerate(lengths)]

        return done

    def _submit_text(self, texts: list[str]):
        enc = self._processor(
            [str(t) for t in texts], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        # right padding (set in _load): the real tokens of row i are its first n[i]
        n = enc["attention_mask"].sum(1)  # (B,)
        inputs = {k: self._to_device(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        states = self._states(self._forward(**inputs))  # (B, T, D)
        return self._pooled(states, n)

    def _submit_audio(self, waves: list[np.ndarray]):
        fe = self._processor
        if not getattr(fe, "return_attention_mask", False) and len(waves) > 1:
            # Models whose feature extractor gives no attention mask (wav2vec2-base, group-norm
            # front end) change their output when zero padding is added: one clip per pass.
            parts = [self._submit_audio([w]) for w in waves]
            return lambda: [r for done in parts for r in done()]
        sr = getattr(fe, "sampling_rate", 16000)
        inp = fe([np.asarray(w, dtype=np.float32) for w in waves], sampling_rate=sr, padding=True,
                 return_attention_mask=True, return_tensors="pt")
        lengths = inp["attention_mask"].sum(-1)  # (B,) samples
        kw = {"input_values": self._to_device(inp["input_values"], self._model.dtype)}
        if getattr(fe, "return_attention_mask", False):
            kw["attention_mask"] = self._to_device(inp["attention_mask"])
        states = self._states(self._forward(**kw))  # (B, T, D)
        n_frames = self._model._get_feat_extract_output_lengths(lengths).clamp(1, states.shape[1])  # (B,) at least one frame
        return self._pooled(states, n_frames)

    def _encode_video(self, frames: np.ndarray) -> Encoded:
        import torch

        frames = np.asarray(frames)
        if frames.ndim == 3:  # a single image
            frames = frames[None]
        per_frame = []
        step = self.batch_size * 8
        for i in range(0, len(frames), step):
            px = self._processor(images=list(frames[i : i + step]), return_tensors="pt")["pixel_values"]
            out = self._forward(pixel_values=self._to_device(px, self._model.dtype))
            if self.layers == "last" and getattr(out, "image_embeds", None) is not None:
                v = out.image_embeds  # CLIP: the projected embedding that was trained against text
            elif self.layers == "last" and self.model_type in _SIGLIP_TYPES:
                v = out.pooler_output
            else:
                states = self._states(out)  # (F, N, D)
                v = states[:, 0] if self.model_type in _CLS_VISION else states.mean(1)
            per_frame.append(v.float())
        seq = torch.cat(per_frame)  # (F, D)
        return Encoded(seq.mean(0).cpu().numpy(), seq.cpu().numpy())


# ---------------------------------------------------------------------------------------------
# spec strings


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'name[@k=v,k=v]' -> (name, {k: v}). The '@' before options is the last one followed by '='."""
    spec = spec.strip()
    head, sep, tail = spec.rpartition("@")
    if not sep or "=" not in tail:
        return spec, {}
    opts: dict[str, str] = {}
    for part in tail.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"bad option {part!r} in encoder spec {spec!r}; expected key=value")
        opts[k.strip()] = v.strip()
    return head, opts


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def _call_with_options(factory, what: str, opts: dict[str, str], **fixed):
    params = {
        n: p for n, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in fixed and n not in ("self", "name")
    }
    unknown = sorted(set(opts) - set(params))
    if unknown:
        raise ValueError(f"{what} has no option(s) {unknown}; its options: {', '.join(params) or 'none'}")
    kwargs = {}
    for k, v in opts.items():
        default = params[k].default
        try:
            kwargs[k] = _coerce(v, default) if default is not inspect.Parameter.empty and default is not None else v
        except ValueError as e:
            raise ValueError(f"{what}: option {k}={v!r}: {e}") from None
    return factory(**fixed, **kwargs)


def finetuned_folder(run: str | Path) -> Path:
    """The fine-tuned encoder a run saved: RUN/encoder, or that of its first unit (RUN/seed0/encoder,
    RUN/fold0/encoder, ...) when it trained several."""
    run = Path(run)
    found = sorted(run.glob(f"**/{ENCODER_DIR}/config.json"), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise FileNotFoundError(f"{run}: no fine-tuned encoder (no {ENCODER_DIR}/config.json); train a "
                                "finetune_text, finetune_audio or finetune_face run there first")
    return found[0].parent


def build_encoder(spec: str | Encoder) -> Encoder:
    """An encoder from a spec string: a registered built-in name or 'hf:<id-or-folder>', each
    optionally followed by '@key=value,...'. An Encoder passes through unchanged."""
    from emofuse.registry import ENCODERS, UnknownNameError

    if isinstance(spec, Encoder):
        return spec
    name, opts = parse_spec(spec)
    if name.startswith("hf:"):
        source = name[3:]
        if not source:
            raise ValueError(f"encoder spec {spec!r}: give a hub id or a folder after 'hf:'")
        return _build_hf(source, opts)
    if name.startswith("finetuned:"):  # the encoder a finetune_text / finetune_audio run saved
        run = Path(name[len("finetuned:"):])
        # named after the run, so that two fine-tunes never share a cache folder name
        return _build_hf(str(finetuned_folder(run)), opts, name=f"ft-{safe_name(run.resolve().name)}")
    try:
        factory = ENCODERS.get(name)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e} (or hf:<hub-id-or-folder> for any Hugging Face model)") from None
    return _call_with_options(factory, f"encoder {name!r}", opts)


def _build_hf(source: str, opts: dict[str, str], **fixed) -> Encoder:
    folder = resolve_folder(source)
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type == "emofuse-face-cnn":  # a face network trained here (finetune_face)
        from emofuse.features.encoders.face_net import FaceNetEncoder

        def face_net(*, tta_flip: bool | None = None, tta_shift: int | None = None, batch: int = 256, name=None):
            return FaceNetEncoder(folder, tta_flip=tta_flip, tta_shift=tta_shift, batch=batch, name=name)

        return _call_with_options(face_net, f"face network {source!r}", opts, **fixed)
    if model_type == "whisper":
        # Whisper's encoder reads log-mel, not waveforms, and has no padding mask: its own encoder class.
        from emofuse.features.encoders.whisper import DEFAULT_LAYER, WhisperEncoder

        def whisper(*, layer: int = DEFAULT_LAYER, stats: str = "mean_std", device: str = "auto", name=None):
            return WhisperEncoder(folder, layer=layer, stats=stats, device=device, name=name)

        return _call_with_options(whisper, f"whisper encoder {source!r}", opts, **fixed)

    def factory(**kw):
        return HFEncoder(source, **kw)

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p for n, p in inspect.signature(HFEncoder.__init__).parameters.items() if n in HFEncoder.OPTIONS]
    )
    return _call_with_options(factory, f"hf encoder {source!r}", opts, **fixed)
