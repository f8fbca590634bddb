"""Audio augmentation that changes the recording itself, before any encoder sees it.

Speed perturbation (Ko et al., 2015, the Kaldi/x-vector recipe): the clip played `rate` times faster,
so tempo and pitch move together. It is a resampling: the samples are resampled from `sr` to
`sr / rate` and played back at `sr`."""

from __future__ import annotations

import numpy as np


def speed_perturb(audio: np.ndarray, rate: float, sr: int = 16000) -> np.ndarray:
    """`audio` (mono float, shape (n,)) played `rate` times as fast: about n / rate samples at `sr`."""
    import librosa

    rate = float(rate)
    if not 0.5 <= rate <= 2.0:
        raise ValueError(f"speed perturbation rate must be in [0.5, 2.0], not {rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"speed_perturb takes mono audio of shape (n,), got {audio.shape}")
    if rate == 1.0:
        return audio.copy()
    return librosa.resample(audio, orig_sr=sr, target_sr=int(round(sr / rate))).astype(np.float32)
