"""Spectral-shape low-level descriptors of the emotion features (eGeMAPS / ComParE style).

Per frame of a power spectrogram (frequency bins x frames): centroid, spread, 85 % roll-off,
flatness, flux, the least-squares slope of the dB spectrum below 5 kHz, the alpha ratio
(50-1000 Hz against 1-5 kHz), the Hammarberg index (the strongest peak below 2 kHz against
2-5 kHz) and the energy share of five octave-ish bands. :mod:`.features` turns these tracks into
functionals; every band edge is in Hz, so the descriptors do not depend on the FFT size.
"""

from __future__ import annotations

import functools

import numpy as np

#: The descriptors, in the order of :func:`spectral_llds`'s dictionary (and of the feature names).
LLD_NAMES = (
    "centroid_hz", "spread_hz", "rolloff85_hz", "flatness", "flux", "slope_db_per_khz",
    "alpha_ratio_db", "hammarberg_db", "band0_500_db", "band500_1k_db", "band1k_2k_db",
    "band2k_4k_db", "band4k_8k_db",
)
#: The band-energy descriptors' edges (Hz), in LLD_NAMES order (the last takes in 8 kHz itself).
ENERGY_BANDS_HZ = ((0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8001))
_EPS = 1e-10


@functools.lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0) -> np.ndarray:
    """Slaney mel filterbank (n_mels, n_fft // 2 + 1) up to sample_rate / 2, float32 (the
    spectrograms' dtype: a BLAS product), built once per setting; read-only (it is shared)."""
    import librosa  # heavy import, only when features are first computed

    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=sample_rate / 2)
    fb = fb.astype(np.float32)
    fb.flags.writeable = False
    return fb


def band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bins of ``freqs`` in [lo, hi) Hz."""
    return (lo <= freqs) & (hi > freqs)


def slope(db: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Least-squares slope of the dB spectrum over [lo, hi) Hz (dB per kHz), per frame."""
    bins = band(freqs, lo, hi)
    f = (freqs[bins] - freqs[bins].mean()) / 1000.0
    return f @ db[bins] / float(f @ f)


def spectral_llds(power: np.ndarray, db: np.ndarray, freqs: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`LLD_NAMES` tracks of a power spectrogram ``power`` (bins x frames), its dB
    ``db`` and the bins' frequencies ``freqs`` (Hz)."""
    total = power.sum(axis=0) + _EPS
    p = power / total
    centroid = freqs @ p
    bands = [10.0 * np.log10((power[band(freqs, lo, hi)].sum(axis=0) + _EPS) / total) for lo, hi in ENERGY_BANDS_HZ]
    alpha_lo, alpha_hi = power[band(freqs, 50, 1000)].sum(axis=0), power[band(freqs, 1000, 5000)].sum(axis=0)
    return {
        "centroid_hz": centroid,
        "spread_hz": np.sqrt(np.maximum((freqs**2) @ p - centroid**2, 0.0)),
        "rolloff85_hz": freqs[np.minimum(np.argmax(np.cumsum(p, axis=0) >= 0.85, axis=0), len(freqs) - 1)],
        "flatness": 10.0 ** (db.mean(axis=0) / 10.0) / (power.mean(axis=0) + _EPS),
        "flux": np.concatenate([[0.0], np.sqrt((np.diff(p, axis=1) ** 2).sum(axis=0))]),
        "slope_db_per_khz": slope(db, freqs, 0, 5000),
        "alpha_ratio_db": 10.0 * np.log10((alpha_lo + _EPS) / (alpha_hi + _EPS)),
        "hammarberg_db": db[band(freqs, 0, 2000)].max(axis=0) - db[band(freqs, 2000, 5000)].max(axis=0),
        **dict(zip(LLD_NAMES[8:], bands, strict=True)),
    }
