from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emofuse.media import MediaError, load_audio

from .conftest import SR, tone


def test_wav_and_mp4_track_agree(media_dir):
    wav = load_audio(media_dir / "clip.wav")
    mp4 = load_audio(media_dir / "clip.mp4")
    for a in (wav, mp4):
        assert a.dtype == np.float32 and a.ndim == 1
    # AAC pads its last frame; the container's duration trims it back to the wav's length.
    assert len(mp4) == len(wav) == len(tone())
    assert np.corrcoef(wav, mp4)[0, 1] > 0.99  # lossy, but aligned sample for sample
    np.testing.assert_allclose(wav, tone(), atol=1e-4)  # 16-bit PCM round trip


def test_mkv_track_and_resampling(media_dir):
    mkv, ref = load_audio(media_dir / "clip.mkv"), tone()
    # A stream-copy remux drops the mp4 edit list, so the AAC encoder's 1024 priming samples
    # come first (files muxed by ffmpeg itself signal them); the track is otherwise intact.
    best = max(np.corrcoef(mkv[lag : lag + len(ref)], ref)[0, 1] for lag in (0, 1024))
    assert best > 0.99
    assert len(load_audio(media_dir / "clip.wav", sr=8000)) == len(tone()) // 2


@pytest.mark.parametrize("ext", ["flac", "wav"])
def test_stereo_44k_file_becomes_16k_mono(tmp_path, ext):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / f"stereo.{ext}"
    sf.write(path, np.stack([left, left], axis=1), 44100)
    a = load_audio(path, sr=SR)
    assert a.shape == (SR,)
    # the 440 Hz tone survives the downmix and resampling
    spectrum = np.abs(np.fft.rfft(a))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s of audio: bin = Hz


@pytest.mark.parametrize(
    "name, message",
    [
        ("silent.mp4", "no audio track"),
        ("empty.mp4", "empty file"),
        ("notes.mp4", "not a readable media file"),
        ("cut.mp4", "cut short"),
        ("missing.wav", "no such file"),
    ],
)
def test_unusable_audio_raises_media_error(media_dir, name, message):
    with pytest.raises(MediaError, match=message):
        load_audio(media_dir / name)
