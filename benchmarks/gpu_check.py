"""Issue 11's GPU check in one run: every registered model trained on the demo corpus at the default
precision (bf16-mixed on a GPU), and llama_topn over a LLaMA-2-7B-geometry backbone (random weights
saved as a local folder, loaded through the real loading code: frozen in bf16, LoRA r=8 in fp32).
For each: peak GPU memory (torch.cuda.max_memory_allocated), seconds per epoch, test weighted F1
(synthetic corpus and random backbones: the scores show training ran, not recognition).
Writes gpu_check.json and gpu_check.md to --out and prints the table.

Here (CPU), a smoke test of the script itself, tiny LLaMA geometry:
    make demo && emofuse extract --manifest runs/demo/manifest.csv -e mfcc --cache runs/demo/cache
    python benchmarks/gpu_check.py --demo runs/demo --out /tmp/gpu-check --tiny --epochs 1
On the device machine the project travels without its virtual environment: carry the demo's
manifest and feature cache (`runs/demo/manifest.csv`, `runs/demo/cache`: 22 MB with mfcc) and wheels of
what the image lacks (pydantic, pydantic-core, annotated-types, typing-inspection). The raw-audio and
raw-video rows also need `av` and the demo's media (`runs/demo/corpus`, 41 MB: over the 64 MiB carry
with the rest), and are skipped without `av`. Then
    PYTHONPATH=src:. python3 benchmarks/gpu_check.py --demo runs/demo --out $OUT
SmolLM2 (the demo's backbone, a ~90 MB wheel) does not fit the 64 MiB carry, so the demo's llama_topn
row uses a small random LLaMA; the 7B row is the size check (target: under 20 GB)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' tiny Hugging Face builders (tests/features, tests/models)

LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
LLAMA_TINY = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=64, max_position_embeddings=512)


def build_llama(folder: Path, geometry: dict) -> Path:
    """Random LlamaModel of this geometry, made in bf16 on the GPU (fp32 never materialised) and
    saved as a Hugging Face folder."""
    from transformers import LlamaConfig, LlamaModel

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaModel(LlamaConfig(**geometry))
    finally:
        torch.set_default_dtype(old)
    model.save_pretrained(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


def plans(tmp: Path, llama7b: Path) -> dict[str, dict]:
    """name -> RunConfig fields (data, model, train overrides) of each row."""
    from tests.features.tiny_hf import build
    from tests.models.tiny_media import build_clip, build_speech

    feats = {"audio": "egemaps", "text": "minilm", "video": "fer2013"}
    tiny_llm = {"backbone": "tiny", "tiny_hidden": 64, "tiny_layers": 2, "tiny_heads": 4, "lora_r": 8}
    rows = {
        "unimodal": ({"features": {"video": "fer2013"}}, {"name": "unimodal", "params": {"modality": "video"}}, {}),
        "early": ({"features": feats}, {"name": "early"}, {}),
        "late": ({"features": feats}, {"name": "late", "params": {"combine": "product"}}, {}),
        "attention": ({"features": feats}, {"name": "attention"}, {}),
        "ensemble": ({"features": {"audio": ["egemaps", "mfcc"]}}, {"name": "ensemble"}, {}),
        "mer_han": ({"features": {"audio": "mfcc", "text": "minilm"}, "sequence": True},
                    {"name": "mer_han", "params": {"hidden": 128, "heads": 4}}, {"optimizer": "adam", "mse_weight": 0}),
        "llama_topn (tiny LLaMA)": ({"features": feats}, {"name": "llama_topn", "params": tiny_llm}, {}),
        "llama_topn (LLaMA-2-7B geometry)": (
            {"features": feats, "batch_size": 32},
            {"name": "llama_topn", "params": {"backbone": str(llama7b), "lora_r": 8, "top_n": 1}}, {}),
        "finetune_text (tiny BERT)": (
            {"features": {"text": "raw"}, "batch_size": 32},
            {"name": "finetune_text", "params": {"encoder": f"hf:{build('bert', tmp / 'bert')}", "max_length": 64}},
            {"lr": 1e-4}),
    }
    if importlib.util.find_spec("av") is not None:  # raw audio and video are decoded with PyAV
        rows["finetune_audio (tiny wav2vec2)"] = (
            {"features": {"audio": "raw"}, "batch_size": 16, "raw": {"max_audio_s": 4.0}},
            {"name": "finetune_audio", "params": {"encoder": f"hf:{build_speech('wav2vec2', tmp / 'w2v')}"}},
            {"lr": 1e-4})
        rows["clip_zeroshot (tiny CLIP)"] = (
            {"features": {"video": "raw"}, "raw": {"every_n": 10, "face_size": 64}},
            {"name": "clip_zeroshot", "params": {"model": f"hf:{build_clip(tmp / 'clip')}", "label_set": "mer6"}}, {})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=REPO / "runs" / "demo", help="emofuse demo's folder (manifest + cache)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="a tiny LLaMA for the 7B row (CPU smoke test)")
    ap.add_argument("--only", action="append", help="run only rows whose name starts with this (repeatable)")
    args = ap.parse_args()

    from emofuse.config import RunConfig, validate
    from emofuse.training.run import train_run

    gpu = torch.cuda.is_available()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    t = time.perf_counter()
    llama7b = build_llama(tmp / "llama7b", LLAMA_TINY if args.tiny else LLAMA2_7B)
    print(f"built {'tiny' if args.tiny else 'LLaMA-2-7B'}-geometry LLaMA at {llama7b} in {time.perf_counter() - t:.0f} s",
          flush=True)
    results = []
    for name, (data, model, train) in plans(tmp, llama7b).items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        cfg = validate(RunConfig, {
            "name": name.split()[0] + ("-7b" if "7B" in name else ""),
            "data": {"manifest": str(args.demo / "manifest.csv"), "cache": str(args.demo / "cache"), **data},
            "model": model,
            "train": {"max_epochs": args.epochs, "patience": args.epochs, "seeds": [0], "progress": False,
                      "logger": "none", **train},
            "out": str(args.out / "runs")})
        if gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        row = {"model": name, "precision": "bf16-mixed" if gpu else "32-true"}
        try:
            m = train_run(cfg)
            (unit,) = m["units"]
            epochs = max(unit["epochs_run"], 1)
            row |= {"wall_s": round(time.perf_counter() - t, 1), "epochs": unit["epochs_run"],
                    "s_per_epoch": round(unit["fit_time_s"] / epochs, 2), "test_wf1": round(100 * m["test"]["weighted_f1"], 1)}
        except Exception as e:  # one model's failure is a finding: record it, go on with the others
            row |= {"error": f"{type(e).__name__}: {e}"[:500]}
        if gpu:
            row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        results.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if gpu else "cpu"
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": results}, indent=2))
    lines = [f"device: {device}, torch {torch.__version__}, {args.epochs} epochs, seed 0", "",
             "| model | precision | peak GPU GiB | s / epoch | epochs | wall s | test wF1 | error |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r.get('peak_gpu_gib', '–')} | {r.get('s_per_epoch', '')} | "
                     f"{r.get('epochs', '')} | {r.get('wall_s', '')} | {r.get('test_wf1', '')} | {r.get('error', '')} |")
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(1 if any("error" in r for r in results) else 0)


if __name__ == "__main__":
    main()
