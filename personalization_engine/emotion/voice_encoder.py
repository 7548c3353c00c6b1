"""Learned voice features for the emotion detector: a pretrained speaker encoder's LSTM states.

Hand-made functionals (:mod:`.features`) describe a clip well but stop near 62 % UAR on unseen
RAVDESS actors. A network trained on thousands of speakers and channels describes the voice
itself: Resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40-band mel power frames,
Apache-2.0, https://github.com/resemble-ai/Resemblyzer). Its last layer's outputs, averaged over
time, carry phonation, effort and timbre, and emotion lives there too (see the training report).
Only the LSTM is kept (``scripts/convert_voice_encoder.py``), as float16 safetensors in
``models/voice_encoder.safetensors`` (2.7 MB; no pickle), hash-checked against
:data:`WEIGHTS_SHA256` before use and run in float32.

The encoder sees the clip the way the rest of the features do, without a second STFT: the mel
bands come from the analysis power spectrogram (25 ms Hann windows, 10 ms hop), scaled as if the
clip's RMS were -30 dBFS (so the vector is level-free). The frames are cut into evenly spaced
windows of :data:`PARTIAL_FRAMES` (0.8 s; at most :data:`MAX_WINDOWS`), run as one batch; each
window's last-layer outputs are averaged over time, then the windows are averaged:
:data:`EMBEDDING_DIM` values.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from . import spectral

#: The shipped weights (resolved from the package, not the working directory).
WEIGHTS_PATH = Path(__file__).resolve().parents[2] / "models" / "voice_encoder.safetensors"
#: SHA-256 of the shipped weights (``scripts/convert_voice_encoder.py`` prints it).
WEIGHTS_SHA256 = "3541632ef4087b192f85a4fda6207fe16f5459baf1b3c280ffafedcdd01e4297"
#: The encoder's input: 40 mel bands (0-8 kHz, Slaney) of a 400-point FFT at 16 kHz.
N_MELS = 40
HIDDEN = 256
LAYERS = 3
#: Output size: the last LSTM layer's width.
EMBEDDING_DIM = HIDDEN
#: Window length in 10 ms frames (0.8 s: half the encoder's training windows, half the cost,
#: the same emotion accuracy in the training report's comparison).
PARTIAL_FRAMES = 80
#: At most this many windows (3.2 s of frames, spread over the clip): the LSTM runs at about
#: 150 GFLOP/s on one core, so its time is proportional to the frames it sees, and the emotion
#: budget (features + prediction <= 30 ms for a 5 s clip) leaves room for about 3 s of them.
MAX_WINDOWS = 4
#: Level the clip is scaled to before the encoder (RMS, dB re full scale).
TARGET_DBFS = -30.0
#: Feature names of the embedding (appended to ``features.FEATURE_NAMES``).
NAMES = tuple(f"voice_enc{i}" for i in range(EMBEDDING_DIM))

_RETRAIN = (
    "Restore models/voice_encoder.safetensors from the repository (git checkout -- models/), or "
    "rebuild it with scripts/convert_voice_encoder.py (its docstring gives the commands)."
)
_lock = threading.Lock()
_encoder: Any = None


def read_weights(path: Path | None = None) -> bytes:
    """The weights file's bytes after checking its SHA-256 (nothing else reads them).

    Raises
    ------
    ModelLoadError
        The file is missing or its hash differs from :data:`WEIGHTS_SHA256`.
    """
    from ..fileio import sha256_bytes

    p = Path(path) if path is not None else WEIGHTS_PATH
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"the emotion features need the voice encoder {p}, which cannot be read "
                             f"({exc.strerror or exc}). {_RETRAIN}") from exc
    digest = sha256_bytes(data)
    if digest != WEIGHTS_SHA256:
        raise ModelLoadError(f"{p}: SHA-256 {digest} does not match the expected {WEIGHTS_SHA256}; "
                             f"the voice encoder was modified or corrupted and was NOT used. {_RETRAIN}")
    return data


def _build(data: bytes) -> Any:
    import torch
    from safetensors.torch import load

    lstm = torch.nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
    try:
        lstm.load_state_dict({k: v.float() for k, v in load(data).items()})
    except (RuntimeError, KeyError) as exc:  # hash-checked, so only a wrong WEIGHTS_SHA256 gets here
        raise ModelLoadError(f"{WEIGHTS_PATH}: not a {LAYERS}-layer LSTM voice encoder ({exc}). {_RETRAIN}") from exc
    return lstm.eval().requires_grad_(False)


def encoder(path: Path | None = None) -> Any:
    """The encoder (a ``torch.nn.LSTM``), loaded once per process; ``path`` loads a fresh one."""
    global _encoder
    if path is not None:
        return _build(read_weights(path))
    with _lock:
        if _encoder is None:
            _encoder = _build(read_weights())
        return _encoder


@functools.lru_cache(maxsize=4)
def _mel_fb(n_fft: int, sample_rate: int) -> np.ndarray:
    # Slaney-normalised filters sum n_fft / 400 times more bins than the encoder's 400-point
    # FFT: scale them back, so the bands have the levels the encoder was trained on.
    return spectral.mel_filters(sample_rate, n_fft, N_MELS) * np.float32(400.0 / n_fft)


def partial_starts(n_frames: int, length: int = PARTIAL_FRAMES, max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """First frame of each window: ceil(n / length) windows, at most ``max_windows``, spread
    evenly over the frames (the first at 0, the last ending at the last frame); one window at 0
    for a short clip."""
    if n_frames <= length:
        return np.zeros(1, dtype=np.int64)
    k = min(int(np.ceil(n_frames / length)), max_windows)
    return np.linspace(0, n_frames - length, k).round().astype(np.int64)


def embed(power: np.ndarray, rms: float, *, n_fft: int, sample_rate: int) -> np.ndarray:
    """The embedding of one clip from its power spectrogram.

    Parameters
    ----------
    power : np.ndarray, shape (n_fft // 2 + 1, frames)
        |STFT|^2 of the clip at its own level (25 ms windows, 10 ms hop).
    rms : float
        The clip's RMS on the same scale as ``power`` (its square is the mean power per sample).
    n_fft, sample_rate : int
        FFT size of ``power`` and the clip's sample rate (16 kHz in the engine).

    Returns
    -------
    np.ndarray, shape (EMBEDDING_DIM,)
        float64, the window-averaged time mean of the last LSTM layer's outputs.
    """
    import torch

    gain = (10.0 ** (TARGET_DBFS / 20.0) / max(float(rms), 1e-9)) ** 2
    mel = (_mel_fb(n_fft, sample_rate) @ power.astype(np.float32)).T * np.float32(gain)  # (frames, 40)
    n = len(mel)
    if n < PARTIAL_FRAMES:
        mel = np.pad(mel, ((0, PARTIAL_FRAMES - n), (0, 0)))
    windows = np.stack([mel[s:s + PARTIAL_FRAMES] for s in partial_starts(n)])
    with torch.inference_mode():
        out, _ = encoder()(torch.from_numpy(np.ascontiguousarray(windows)))
    return out.mean(dim=(0, 1)).double().numpy()
