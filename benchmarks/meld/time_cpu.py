"""CPU seconds (process_time: all threads, insensitive to other jobs on the machine) for the same 640
MELD training rows under different batchings, the project's finetune_text model, no Lightning.
usage: python benchmarks/meld/time_cpu.py BEFORE AFTER"""
import sys, time, json
import numpy as np, torch
from emofuse.corpora.base import Manifest
from emofuse.config import RawInputConfig
from emofuse.data.raw import RawDataset, collate_raw
from emofuse.models.finetune_text import FinetuneText, FinetuneTextConfig
from transformers.trainer_pt_utils import LengthGroupedSampler
before, after = int(sys.argv[1]), int(sys.argv[2])
N = 640
man = Manifest.load("runs/meld/timing/meld.csv")
df = man.df[man.df.split == "train"].reset_index(drop=True)
ds = RawDataset.from_manifest(Manifest(man.corpus, man.label_set, df, {}), {"text": "raw"}, RawInputConfig(context=before, context_after=after))
rows = np.random.default_rng(0).permutation(len(ds))[:N]
sub = ds.subset(rows)
torch.manual_seed(0)
m = FinetuneText({"text": 0}, 7, FinetuneTextConfig(max_length=128)).train()
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-5)
res = {"before": before, "after": after, "rows": N, "threads": torch.get_num_threads()}
def train(order, B, name):
    ntok = 0; c0 = time.process_time(); w0 = time.perf_counter()
    for s in range(0, N, B):
        b = collate_raw([sub[i] for i in order[s:s + B]])
        ntok += m.inputs(b["text"], b["text_context"], b["text_after"])["input_ids"].numel()
        loss = torch.nn.functional.cross_entropy(m(b)["logits"], b["label"])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    res[name] = {"cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.perf_counter() - w0, 1), "padded_tokens": ntok}
    print(json.dumps(res), flush=True)
def evaluate(order, B, name):
    m.eval(); ntok = 0; c0 = time.process_time()
    with torch.no_grad():
        for s in range(0, N, B):
            b = collate_raw([sub[i] for i in order[s:s + B]])
            ntok += m.inputs(b["text"], b["text_context"], b["text_after"])["input_ids"].numel()
            m(b)
    m.train(); res[name] = {"cpu_s": round(time.process_time() - c0, 1), "padded_tokens": ntok}
    print(json.dumps(res), flush=True)
m.inputs(sub.columns["text"], sub.columns["text_context"], sub.columns["text_after"])  # warm the token cache
rand = list(range(N))
g = lambda B: list(LengthGroupedSampler(B, lengths=sub.lengths(), generator=torch.Generator().manual_seed(0)))
train(g(32), 32, "train_grouped_b32")
train(g(16), 16, "train_grouped_b16")
train(rand, 32, "train_random_b32")
evaluate(rand, 32, "eval_random_b32")
