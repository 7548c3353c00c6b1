"""Training-side copies of a clip: speed perturbation and a simulated recording channel.

The acted corpora were each recorded in one studio, so a model trained on them alone can learn
the studio (its microphone response, its silence, its dry room) as a cue for the corpus and so
for its acting style. A user's clip comes from a laptop, phone or headset microphone in an
ordinary room. :func:`simulate_channel` gives a training copy such a recording chain, drawn at
random per copy: a short room reverberation, a microphone/device frequency response (spectral
tilt, resonances, high-pass, sometimes a telephone band) and background noise at 15-30 dB SNR.
Copies never reach the held-out side of any evaluation.

Every draw comes from a generator seeded by the clip's file name and the copy number, so the
copies (and the feature cache) are deterministic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: Reverberation: probability, RT60 range (s; small rooms and offices) and direct-to-reverberant
#: ratio range (dB; a talker at 0.3-1 m from the microphone).
REVERB_P = 0.5
RT60_S = (0.15, 0.6)
DRR_DB = (0.0, 12.0)
#: Device response: spectral tilt (dB per octave re 1 kHz), up to two resonances of +-6 dB,
#: a high-pass corner (Hz; small capsules and voice filters) and, with TELEPHONE_P, the
#: 300-3400 Hz telephone band, otherwise a low-pass corner somewhere in 4-8 kHz half the time.
TILT_DB_PER_OCT = (-3.0, 3.0)
RESONANCE_DB = 6.0
HIGHPASS_HZ = (60.0, 250.0)
TELEPHONE_P = 0.2
LOWPASS_HZ = (4000.0, 7600.0)
#: Background noise: probability and signal-to-noise ratio range (dB re the loud speech frames),
#: noise colour from white (0) to pink-ish (-3 dB per octave).
NOISE_P = 0.8
SNR_DB = (15.0, 30.0)
NOISE_TILT_DB_PER_OCT = (-3.0, 0.0)


@dataclass(frozen=True)
class CopyRecipe:
    """How one training copy of a clip is made (copy 0 is always the clip itself)."""

    speed: float
    """Playback-speed factor (1.0: unchanged; tempo, pitch and formants scale together)."""
    channel: bool
    """Pass the copy through a random simulated recording channel (:func:`simulate_channel`)."""


def copy_seed(name: str, copy: int) -> np.random.Generator:
    """The generator of one copy of one clip: seeded by the file name and the copy number."""
    digest = hashlib.sha256(f"{name}|{copy}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def speed_perturb(samples: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``samples`` back ``factor`` times faster (tempo, pitch and formants scale together)."""
    from ...audio_io import resample

    if factor == 1.0:
        return samples
    return resample(samples, round(sample_rate * factor), sample_rate)


def _response(freqs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random magnitude response of a microphone/device chain at ``freqs`` (linear gain)."""
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    gain_db = rng.uniform(*TILT_DB_PER_OCT) * octaves
    for _ in range(rng.integers(0, 3)):
        centre, width = rng.uniform(np.log2(0.3), np.log2(5.0)), rng.uniform(0.3, 1.0)
        gain_db += rng.uniform(-RESONANCE_DB, RESONANCE_DB) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    gain = 10.0 ** (gain_db / 20.0)
    if rng.random() < TELEPHONE_P:
        lo, hi = 300.0, 3400.0
    else:
        lo = rng.uniform(*HIGHPASS_HZ)
        hi = rng.uniform(*LOWPASS_HZ) if rng.random() < 0.5 else np.inf
    f = np.maximum(freqs, 1e-3)
    gain = gain / np.sqrt(1.0 + (lo / f) ** 4)  # 2nd-order Butterworth-like magnitudes
    if np.isfinite(hi):
        gain = gain / np.sqrt(1.0 + (f / hi) ** 8)
    return gain


def _room(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Impulse response of a small room: a direct path and exponentially decaying noise."""
    rt60 = rng.uniform(*RT60_S)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    drr = 10.0 ** (rng.uniform(*DRR_DB) / 10.0)
    tail *= np.sqrt(1.0 / (drr * float(np.sum(tail**2)) + 1e-12))
    tail[0] = 1.0
    return tail


def _speech_rms(x: np.ndarray, sample_rate: int) -> float:
    """RMS of the loud (speech) part: the mean power of the 10 ms frames above their median."""
    hop = sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return float(np.sqrt(np.mean(x**2) + 1e-12))
    power = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    return float(np.sqrt(np.mean(power[power >= np.median(power)]) + 1e-12))


def simulate_channel(samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``samples`` as if recorded through a random room, device and noise (see the module doc).

    Parameters
    ----------
    samples : np.ndarray, shape (n,)
        Mono float audio.
    sample_rate : int
        Its rate in Hz.
    rng : np.random.Generator
        The source of every random choice (see :func:`copy_seed`).

    Returns
    -------
    np.ndarray, shape (n,)
        float32 audio, peak at most 0.99.
    """
    import scipy.fft
    from scipy.signal import fftconvolve

    x = np.asarray(samples, dtype=np.float64)
    n = len(x)
    if rng.random() < REVERB_P:
        x = fftconvolve(x, _room(rng, sample_rate))[:n]
    nfft = scipy.fft.next_fast_len(n)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    x = scipy.fft.irfft(scipy.fft.rfft(x, nfft) * _response(freqs, rng), nfft)[:n]
    if rng.random() < NOISE_P:
        colour = 10.0 ** (rng.uniform(*NOISE_TILT_DB_PER_OCT) * np.log2(np.maximum(freqs, 50.0) / 1000.0) / 20.0)
        noise = scipy.fft.irfft(scipy.fft.rfft(rng.standard_normal(nfft)) * colour, nfft)[:n]
        snr = 10.0 ** (rng.uniform(*SNR_DB) / 20.0)
        x = x + noise * (_speech_rms(x, sample_rate) / (snr * float(np.sqrt(np.mean(noise**2)) + 1e-12)))
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


def make_copy(samples: np.ndarray, recipe: CopyRecipe, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One training copy of a clip: speed perturbation, then (optionally) a simulated channel."""
    out = speed_perturb(samples, recipe.speed, sample_rate)
    return simulate_channel(out, sample_rate, rng) if recipe.channel else out
