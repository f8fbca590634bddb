"""Inference tests use the session's demo run (tests/conftest.py) and a set of good and bad inputs
made from its clips once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_dir(demo_run) -> Path:
    return Path(demo_run[0])


@pytest.fixture(scope="session")
def fusion_dir(demo_dir) -> Path:
    return demo_dir / "runs" / "fusion-attention"


@pytest.fixture(scope="session")
def predictor(fusion_dir):
    from emofuse.inference import Predictor

    p = Predictor.load(fusion_dir)
    p.warm_up()
    return p


@pytest.fixture(scope="session")
def test_rows(demo_dir) -> list[dict]:
    """Labelled test-split rows of the demo manifest, whose faces are found (not corrupted)."""
    df = pd.read_csv(demo_dir / "manifest.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(demo_dir / "corpus" / "synthetic_truth.csv", dtype=str).set_index("name")
    rows = [r for r in df[df["split"] == "test"].to_dict("records") if truth.loc[r["id"], "face_corrupt"] == "0"]
    return rows


@pytest.fixture(scope="session")
def media(demo_dir, test_rows, tmp_path_factory) -> dict[str, Path]:
    """name -> file: a good clip, its wav and a face image, and each bad input of the issue."""
    import cv2

    from emofuse.media import iter_frames, load_audio, write_video

    d = tmp_path_factory.mktemp("media")
    row = test_rows[0]
    good = Path(row["video"])
    frames = [f.image for f in iter_frames(good)]  # (H, W, 3) RGB each
    wave = load_audio(row["audio"])
    out = {"good": good, "wav": Path(row["audio"])}
    cv2.imwrite(str(d / "face.png"), cv2.cvtColor(frames[len(frames) // 2], cv2.COLOR_RGB2BGR))
    out["image"] = d / "face.png"
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = d / "empty.mp4"
    (d / "notmedia.mp4").write_bytes(b"This is a text file, not a video.\n" * 40)
    out["notmedia"] = d / "notmedia.mp4"
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    out["truncated"] = d / "truncated.mp4"
    out["noaudio"] = write_video(d / "noaudio.mp4", frames, fps=8)
    out["silent"] = write_video(d / "silent.mp4", frames, fps=8, audio=np.zeros_like(wave))
    rng = np.random.default_rng(0)
    blank = [np.clip(120 + rng.normal(0, 4, frames[0].shape), 0, 255).astype(np.uint8) for _ in frames]
    out["noface"] = write_video(d / "noface.mp4", blank, fps=8, audio=wave)
    return out


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """A stable, git-ignored place for screenshots worth citing: runs/screenshots/."""
    d = REPO / "runs" / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d

