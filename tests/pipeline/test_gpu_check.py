"""benchmarks/gpu_check.py (issue 11's GPU check) runs end to end on CPU with a tiny LLaMA in place of
the 7B geometry, so a session lent a GPU runs a script that is known to work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_script_runs_on_cpu(demo_run, tmp_path):
    out, _ = demo_run
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--demo", str(out), "--out", str(tmp_path),
           "--tiny", "--epochs", "1", "--only", "early", "--only", "llama_topn (LLaMA-2", "--only", "finetune_text"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"OMP_WAIT_POLICY": "PASSIVE",
                                                                          "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert [row["model"] for row in rows] == ["early", "llama_topn (LLaMA-2-7B geometry)", "finetune_text (tiny BERT)"]
    assert all(row["epochs"] == 1 and row["s_per_epoch"] > 0 and "error" not in row for row in rows)
    assert "| early | 32-true |" in (tmp_path / "gpu_check.md").read_text()
