"""Acoustic features for the emotion detector: one fixed-length vector per clip.

Every feature is computed from the single clip that is classified, so nothing needs the
speaker's other recordings (the app has one clip at inference time). Microphone, room and
speaker differences are removed *inside the clip*, because a user's microphone is unlike any
training corpus:

- the waveform is scaled so that its loud speech frames sit at 0 dB (level-free energies);
- cepstral mean normalisation: the clip's mean MFCC and log-mel vector over its speech frames is
  subtracted (a fixed microphone/room response is a constant added to every frame's log
  spectrum, so it cancels); no feature is a clip-level cepstral or log-mel mean;
- pitch is in semitones relative to the clip's own median F0 and energy in dB relative to the
  clip's loud frames; no absolute level and no clip duration. Three absolute F0 values (median,
  20th and 80th percentile, log2 Hz) stay: a microphone or room does not move F0, and a raised
  voice is the main cue that tells fear, surprise and joy from calm in one clip.

Low-level descriptors (LLDs) follow eGeMAPS / ComParE practice: MFCC 0-19 and deltas, log-mel
bands, spectral shape (centroid, spread, roll-off, flatness, flux, slope, alpha ratio,
Hammarberg index, band-energy ratios), a Boersma-style autocorrelation pitch tracker that also
gives the harmonics-to-noise ratio, frame-level jitter/shimmer approximations, H1-H2, loudness
dynamics and rhythm (syllable-nucleus rate, pauses). Functionals (mean, std, percentiles) turn
the LLD tracks into :data:`FEATURE_NAMES`, the one definition of the feature order. ``ef-6``
appends the blocks of :mod:`.dynamics` (spectral contrast, modulation, contours, mean cepstrum),
``ef-7`` its cepstral peak prominence, ``ef-8`` the embedding of a pretrained voice encoder
(:mod:`.voice_encoder`, computed from the same spectrogram).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from .. import pitch, rates
from ..errors import FeatureExtractionError
from . import dynamics, spectral, voice_encoder

#: Sample rate of all emotion features (Hz): the engine's analysis rate.
SAMPLE_RATE = rates.ANALYSIS_SAMPLE_RATE
#: STFT framing: 25 ms Hann windows, 10 ms hop, 512-point FFT (the usual speech framing).
N_FFT = 512
WIN = 400
HOP = 160
#: Mel bands and cepstral coefficients (ComParE uses 26 bands and MFCC 1-14; more bands help SER).
N_MELS = 40
N_MFCC = 20
#: Pitch: the shared tracker (:func:`pitch.track_pitch`, 75-1000 Hz) run at 8 kHz (a third
#: faster than at 16 kHz; F0 agrees within 0.1 % on the voiced frames); the autocorrelation
#: strength of the chosen candidate gives the harmonics-to-noise ratio.
PITCH_SR = 8_000
#: A frame is speech when its energy is within this many dB of the clip's loud frames (p95).
SPEECH_REL_DB = 35.0
#: Voiced speech needed to classify emotion at all (s); less is not speech.
MIN_VOICED_S = 0.15
#: Bumped whenever a feature's definition changes (keys the training-feature cache).
FEATURE_VERSION = "ef-8"

_PCTS = (10, 50, 90)
_FUNC5 = ("mean", "std", "p10", "p50", "p90")
#: Functionals of mean-normalised tracks (their mean is 0 by construction).
_FUNC4 = ("std", "p10", "p50", "p90")
#: Per-frame LLDs summarised separately over voiced and unvoiced speech frames (eGeMAPS).
_VU_LLDS = ("alpha_ratio", "hammarberg", "slope0_500", "slope500_1500", "flux", "mfcc1", "mfcc2",
            "mfcc3", "mfcc4")
_PITCH_NAMES = (
    "f0_log2_median", "f0_log2_p20", "f0_log2_p80", "f0_st_std", "f0_st_p10", "f0_st_p90", "f0_st_range", "f0_st_iqr",
    "f0_delta_st_abs_mean", "f0_rise_st_per_s", "f0_fall_st_per_s", "f0_slope_st_per_s",
    "voiced_fraction", "hnr_db_mean", "hnr_db_std", "jitter_approx", "shimmer_approx_db",
    "h1_h2_db_mean", "h1_h2_db_std",
)
_ENERGY_NAMES = (
    "energy_db_mean", "energy_db_std", "energy_db_p10", "energy_db_p50", "energy_db_range",
    "energy_delta_abs_mean", "energy_rise_db_per_s", "energy_fall_db_per_s",
    "voiced_energy_db_mean", "unvoiced_energy_db_mean",
)
_RHYTHM_NAMES = (
    "nuclei_per_s", "pause_ratio", "voiced_segments_per_s", "voiced_segment_mean_s",
)
_EXTRA_NAMES = (
    "f0_st_p5", "f0_st_p20", "f0_st_p80", "f0_st_p95", "f0_st_skew", "f0_st_kurt",
    "f0_delta_st_std", "f0_rise_st_per_s_std", "f0_fall_st_per_s_std",
    "loud_mean", "loud_cv", "loud_p20", "loud_p50", "loud_p80", "loud_iqr", "loud_skew",
    "loud_rise_per_s", "loud_fall_per_s", "loud_peaks_per_s", "loud_peak_mean",
    *(f"{v}_{lld}_mean" for v in ("voiced", "unvoiced") for lld in _VU_LLDS),
    *(f"voiced_{lld}_std" for lld in _VU_LLDS),
    "hnr_db_p10", "hnr_db_p50", "hnr_db_p90", "h1_a3_db_mean", "h1_a3_db_std",
    "voiced_segment_std_s", "unvoiced_segment_mean_s", "unvoiced_segment_std_s", "pauses_per_s",
)


def _names() -> tuple[str, ...]:
    names: list[str] = []
    names += [f"mfcc{i}_{f}" for i in range(N_MFCC) for f in _FUNC4]
    names += [f"mfcc{i}_d_{f}" for i in range(N_MFCC) for f in ("std", "absmean")]
    names += [f"mfcc{i}_dd_std" for i in range(N_MFCC)]
    names += [f"logmel{i}_std" for i in range(N_MELS)]
    names += [f"{lld}_{f}" for lld in spectral.LLD_NAMES for f in _FUNC5]
    names += list(_PITCH_NAMES) + list(_ENERGY_NAMES) + list(_RHYTHM_NAMES) + list(_EXTRA_NAMES)
    names += [f"logmel{i}_{f}" for i in range(N_MELS) for f in ("p10", "p90", "d_std")]
    names += [f"mfcc{i}_{f}" for i in range(N_MFCC) for f in ("skew", "kurt", "voiced_mean", "unvoiced_mean")]
    names += [f"{lld}_skew" for lld in spectral.LLD_NAMES]
    names += [*dynamics.CONTRAST_NAMES, *dynamics.MODULATION_NAMES, *dynamics.CONTOUR_NAMES, *dynamics.ENVELOPE_NAMES]
    names += list(dynamics.CPP_NAMES)
    names += list(voice_encoder.NAMES)
    return tuple(names)


#: The feature order of every vector (and of the model trained on them).
FEATURE_NAMES: tuple[str, ...] = _names()
#: The compact subset: prosody, loudness, rhythm, voice quality, spectral shape and
#: voiced/unvoiced band statistics, without the MFCC and log-mel functionals. Those carry the
#: recording channel and language as much as the emotion, so the detector averages a model on
#: this subset with one on all features (see the training report). The voice encoder's
#: embedding (:mod:`.voice_encoder`) is not compact either.
COMPACT_FEATURE_NAMES: tuple[str, ...] = tuple(
    n for n in FEATURE_NAMES if not n.startswith(("mfcc", "logmel", "voice_enc"))
)
#: Column indices of :data:`COMPACT_FEATURE_NAMES` in :data:`FEATURE_NAMES`.
COMPACT_COLUMNS: tuple[int, ...] = tuple(FEATURE_NAMES.index(n) for n in COMPACT_FEATURE_NAMES)

_WINDOW = np.hanning(WIN + 2)[1:-1].astype(np.float32)
_FREQS = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)


@dataclass(frozen=True)
class _Analysis:
    """Frame-level tracks of one clip shared by the feature blocks (10 ms frames)."""

    power: np.ndarray
    """Power spectrum, shape (N_FFT // 2 + 1, frames), loud frames at 0 dB."""
    db: np.ndarray
    """10 log10 of ``power``."""
    frame_db: np.ndarray
    """Frame energy (dB re the clip's 95th-percentile frame)."""
    speech: np.ndarray
    voiced: np.ndarray
    f0: np.ndarray
    """F0 in Hz (NaN when unvoiced)."""
    harm: np.ndarray
    """Normalised autocorrelation peak (harmonicity) per frame (0 where unvoiced)."""
    logmel: np.ndarray
    """Log-mel spectrum (dB), mean over speech frames removed (CMN)."""
    mfcc: np.ndarray
    """MFCC 0..N_MFCC-1, mean over speech frames removed (CMN)."""
    logmel_mean: np.ndarray
    """The removed mean log-mel vector (dB re the loud frames): microphone and vocal effort."""
    ref_db: float
    """Level of the loud frames (dB of the raw power) that ``power`` was divided by."""


def compute_features(samples: np.ndarray) -> np.ndarray:
    """The emotion feature vector of one clip, in :data:`FEATURE_NAMES` order.

    Parameters
    ----------
    samples : np.ndarray, shape (n,)
        Mono float audio at :data:`SAMPLE_RATE`, validated and trimmed by ``audio_io.load_audio``.

    Returns
    -------
    np.ndarray, shape (len(FEATURE_NAMES),)
        float64 features, all finite.

    Raises
    ------
    FeatureExtractionError
        The clip has less than :data:`MIN_VOICED_S` of voiced speech (noise, clicks, silence).

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    >>> compute_features(x)  # white noise is not speech  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FeatureExtractionError: only 0.00 s of voiced speech found ...
    """
    x = np.asarray(samples, dtype=np.float32)
    a = _analyse(x)
    llds = spectral.spectral_llds(a.power, a.db, _FREQS)
    blocks = [
        _cepstral_block(a),
        _functionals(np.vstack(list(llds.values())), a.speech),
        _pitch_block(a),
        _energy_block(a),
        _rhythm_block(a),
        _extra_block(a, llds),
        _more_block(a, llds),
        _dynamics_block(a),
        _encoder_block(a, x),
    ]
    vec = np.concatenate(blocks).astype(np.float64)
    assert vec.shape == (len(FEATURE_NAMES),), (vec.shape, len(FEATURE_NAMES))  # internal invariant
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)


def _analyse(x: np.ndarray) -> _Analysis:
    """Spectrogram, level normalisation, speech/voicing masks, pitch and cepstra of a clip."""
    power = _power_spectrogram(x)
    frame_db = 10.0 * np.log10(power.sum(axis=0) + 1e-10)
    ref_db = float(np.percentile(frame_db, 95))
    power = power / (10.0 ** (ref_db / 10.0))  # loud frames at 0 dB: level-free features
    frame_db = frame_db - ref_db
    speech = frame_db > -SPEECH_REL_DB
    f0, harm = _pitch(x, len(frame_db))
    voiced = speech & np.isfinite(f0)
    voiced_s = voiced.sum() * HOP / SAMPLE_RATE
    if voiced_s < MIN_VOICED_S:
        raise FeatureExtractionError(
            f"only {voiced_s:.2f} s of voiced speech found (need {MIN_VOICED_S} s); the clip "
            "seems to hold noise or silence, not speech. Record a clip of someone speaking."
        )
    logmel = 10.0 * np.log10(spectral.mel_filters(SAMPLE_RATE, N_FFT, N_MELS, fmin=50) @ power + 1e-10)
    logmel_mean = logmel[:, speech].mean(axis=1)
    logmel -= logmel_mean[:, None]  # CMN: a channel is a constant here
    mfcc = scipy.fft.dct(logmel, axis=0, norm="ortho")[:N_MFCC]  # linear: CMN carries over
    db = 10.0 * np.log10(power + 1e-10)
    return _Analysis(power, db, frame_db, speech, voiced, f0, harm, logmel, mfcc, logmel_mean, ref_db)


def _pitch(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz, NaN unvoiced) and harmonicity (0-0.999) on the ``n`` frames of the 10 ms grid."""
    import soxr  # a librosa dependency; fast high-quality 2:1 decimation

    track = pitch.track_pitch(soxr.resample(x, SAMPLE_RATE, PITCH_SR).astype(np.float32), PITCH_SR)
    f0 = np.full(n, np.nan)
    harm = np.zeros(n)
    m = min(n, len(track.f0_hz))
    f0[:m], harm[:m] = track.f0_hz[:m], np.clip(track.strength[:m], 0.0, 0.999)
    return f0, harm


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Centred frames on the shared 10 ms grid (frame i centred at sample i * hop)."""
    return pitch.frame_signal(x, win, hop, pitch.n_frames(len(x), SAMPLE_RATE))


def _power_spectrogram(x: np.ndarray) -> np.ndarray:
    """|STFT|^2, shape (N_FFT // 2 + 1, frames)."""
    spec = scipy.fft.rfft(_frames(x, WIN, HOP) * _WINDOW, n=N_FFT, axis=1)
    return np.ascontiguousarray((spec.real**2 + spec.imag**2).T)


def _functionals(track: np.ndarray, mask: np.ndarray, *, mean: bool = True) -> np.ndarray:
    """(mean,) std, p10, p50, p90 of each row of ``track`` over the frames in ``mask``."""
    sel = track[:, mask] if mask.any() else track
    pct = np.percentile(sel, _PCTS, axis=1)
    cols = [sel.mean(axis=1)] if mean else []
    return np.column_stack([*cols, sel.std(axis=1), pct.T]).reshape(-1)


def _delta(track: np.ndarray) -> np.ndarray:
    """Regression delta over +-2 frames (HTK), per row."""
    pad = np.pad(track, ((0, 0), (2, 2)), mode="edge")
    return (pad[:, 3:-1] - pad[:, 1:-3] + 2.0 * (pad[:, 4:] - pad[:, :-4])) / 10.0


def _cepstral_block(a: _Analysis) -> np.ndarray:
    """MFCC functionals, delta/delta-delta spreads, log-mel band level and variability."""
    d1 = _delta(a.mfcc)  # deltas ignore the clip's mean: cepstral mean normalisation built in
    d2 = _delta(d1)
    sel = a.speech
    lm = a.logmel[:, sel]
    return np.concatenate([
        _functionals(a.mfcc, sel, mean=False),
        np.column_stack([d1[:, sel].std(axis=1), np.abs(d1[:, sel]).mean(axis=1)]).reshape(-1),
        d2[:, sel].std(axis=1),
        lm.std(axis=1),
    ])


_A3_BAND = spectral.band(_FREQS, 2000, 3000)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return edges[1::2] - edges[::2]


def _semitones(a: _Analysis) -> tuple[np.ndarray, float]:
    """Pitch in semitones re the clip's median F0 (0 where unvoiced), and that median (Hz)."""
    med = float(np.median(a.f0[a.voiced]))
    return 12.0 * np.log2(np.where(a.voiced, a.f0, med) / med), med


def _pitch_deltas(st: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Frame-to-frame pitch change (semitones) inside voiced runs, tracking jumps removed."""
    dst = np.diff(st)[voiced[1:] & voiced[:-1]]
    return dst[np.abs(dst) < 2.0]  # larger frame-to-frame jumps are tracking (octave) errors


def _mean(x: np.ndarray, default: float = 0.0) -> float:
    return float(x.mean()) if x.size else default


def _std(x: np.ndarray) -> float:
    return float(x.std()) if x.size else 0.0


def _pitch_block(a: _Analysis) -> np.ndarray:
    """Clip-relative pitch statistics, pitch dynamics and voice-quality approximations."""
    fps = SAMPLE_RATE / HOP
    st, med = _semitones(a)
    voiced = a.voiced
    sv = st[voiced]
    dst = _pitch_deltas(st, voiced)
    t = np.flatnonzero(voiced) / fps
    slope = float(np.polyfit(t, sv, 1)[0]) if len(t) > 2 else 0.0
    hnr = 10.0 * np.log10(a.harm[voiced] / (1.0 - a.harm[voiced]))
    pairs = voiced[1:] & voiced[:-1]
    period = 1.0 / a.f0[voiced]
    dper = np.abs(np.diff(1.0 / np.where(voiced, a.f0, 1.0)))[pairs]
    h1h2 = _harmonic_diff(a, 2)
    return np.array([
        np.log2(med), *(np.log2(med) + np.percentile(sv, [20, 80]) / 12.0), sv.std(), *np.percentile(sv, [10, 90]),
        np.subtract(*np.percentile(sv, [95, 5])), np.subtract(*np.percentile(sv, [75, 25])),
        _mean(np.abs(dst)), _mean(dst[dst > 0]) * fps, _mean(dst[dst < 0]) * fps,
        slope, voiced.sum() / max(int(a.speech.sum()), 1), hnr.mean(), hnr.std(),
        _mean(dper) / period.mean(), _mean(np.abs(np.diff(a.frame_db))[pairs]),
        h1h2.mean(), h1h2.std(),
    ])


def _harmonic_peak(a: _Analysis, k: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n = a.power.shape[0]
    cand = np.stack([np.clip(k + o, 0, n - 1) for o in (-1, 0, 1)])
    return a.power[cand, idx].max(axis=0)


def _harmonic_diff(a: _Analysis, harmonic: int) -> np.ndarray:
    """Level (dB) of the first harmonic re harmonic ``harmonic`` in voiced frames (H1-H2)."""
    idx = np.flatnonzero(a.voiced)
    k1 = np.round(a.f0[idx] / (SAMPLE_RATE / N_FFT)).astype(int)
    h1 = _harmonic_peak(a, k1, idx)
    return 10.0 * np.log10((h1 + 1e-10) / (_harmonic_peak(a, harmonic * k1, idx) + 1e-10))


def _energy_block(a: _Analysis) -> np.ndarray:
    """Loudness statistics and dynamics relative to the clip's loud frames (0 dB)."""
    fps = SAMPLE_RATE / HOP
    speech, voiced, frame_db = a.speech, a.voiced, a.frame_db
    e = frame_db[speech]
    smooth = np.convolve(frame_db, np.ones(5) / 5.0, mode="same")
    d = np.diff(smooth)[speech[1:] & speech[:-1]]
    unv = speech & ~voiced
    return np.array([
        e.mean(), e.std(), *np.percentile(e, [10, 50]), np.subtract(*np.percentile(e, [95, 5])),
        _mean(np.abs(d)), _mean(d[d > 0]) * fps, _mean(d[d < 0]) * fps,
        frame_db[voiced].mean(), _mean(frame_db[unv], -SPEECH_REL_DB),
    ])


def _nuclei(a: _Analysis) -> np.ndarray:
    """Frame indices of syllable nuclei: energy peaks in voiced frames."""
    from scipy.signal import find_peaks

    smooth = np.convolve(a.frame_db, np.hanning(7) / np.hanning(7).sum(), mode="same")
    peaks, _ = find_peaks(np.where(a.voiced, smooth, -100.0), prominence=2.0, distance=int(0.1 * SAMPLE_RATE / HOP))
    return np.asarray(peaks)


def _rhythm_block(a: _Analysis) -> np.ndarray:
    """Syllable-nucleus rate (energy peaks in voiced frames), pauses and voicing segments."""
    fps = SAMPLE_RATE / HOP
    peaks = _nuclei(a)
    idx = np.flatnonzero(a.speech)
    span = idx[-1] - idx[0] + 1
    speech_s = a.speech.sum() / fps
    seg = _runs(a.voiced)
    return np.array([
        len(peaks) / speech_s, 1.0 - a.speech.sum() / span, len(seg) / speech_s, _mean(seg) / fps,
    ])


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Skewness and excess kurtosis (0, 0 for a constant)."""
    sd = x.std()
    if x.size < 3 or sd < 1e-9:
        return 0.0, 0.0
    z = (x - x.mean()) / sd
    return float((z**3).mean()), float((z**4).mean() - 3.0)


def _extra_block(a: _Analysis, llds: dict[str, np.ndarray]) -> np.ndarray:
    """eGeMAPS-style additions: pitch shape, loudness, voiced/unvoiced spectra, segments."""
    from scipy.signal import find_peaks

    fps = SAMPLE_RATE / HOP
    st, _ = _semitones(a)
    sv = st[a.voiced]
    dst = _pitch_deltas(st, a.voiced)
    # Loudness: sum of mel-band power ** 0.3 (Stevens' power law), re the clip's loud frames.
    loud = (10.0 ** (a.logmel / 10.0)) ** 0.3
    loud = loud.sum(axis=0)
    loud = loud / max(float(np.percentile(loud, 95)), 1e-9)
    ls = loud[a.speech]
    dl = np.diff(loud)[a.speech[1:] & a.speech[:-1]]
    peaks, _props = find_peaks(np.where(a.speech, loud, 0.0), prominence=0.05, distance=int(0.1 * fps))
    vu_tracks = np.vstack([
        llds["alpha_ratio_db"], llds["hammarberg_db"], spectral.slope(a.db, _FREQS, 0, 500),
        spectral.slope(a.db, _FREQS, 500, 1500), llds["flux"], a.mfcc[1:5],
    ])
    unv = a.speech & ~a.voiced
    vt = vu_tracks[:, a.voiced]
    ut = vu_tracks[:, unv] if unv.any() else np.zeros((len(vu_tracks), 1))
    hnr = 10.0 * np.log10(a.harm[a.voiced] / (1.0 - a.harm[a.voiced]))
    idx = np.flatnonzero(a.voiced)
    a3 = a.power[_A3_BAND][:, idx].max(axis=0)
    k1 = np.round(a.f0[idx] / (SAMPLE_RATE / N_FFT)).astype(int)
    h1a3 = 10.0 * np.log10((_harmonic_peak(a, k1, idx) + 1e-10) / (a3 + 1e-10))
    vseg = _runs(a.voiced) / fps
    first, last = np.flatnonzero(a.speech)[[0, -1]]
    useg = _runs(~a.voiced[first : last + 1]) / fps
    pauses = _runs(~a.speech[first : last + 1])
    return np.array([
        *np.percentile(sv, [5, 20, 80, 95]), *_moments(sv),
        _std(dst), _std(dst[dst > 0]) * fps, _std(dst[dst < 0]) * fps,
        ls.mean(), ls.std() / max(ls.mean(), 1e-9), *np.percentile(ls, [20, 50, 80]),
        np.subtract(*np.percentile(ls, [80, 20])), _moments(ls)[0],
        _mean(dl[dl > 0]) * fps, _mean(dl[dl < 0]) * fps,
        len(peaks) / (a.speech.sum() / fps), _mean(loud[peaks]),
        *vt.mean(axis=1), *ut.mean(axis=1), *vt.std(axis=1),
        *np.percentile(hnr, [10, 50, 90]), h1a3.mean(), h1a3.std(),
        _std(vseg), _mean(useg), _std(useg), (pauses >= int(0.1 * fps)).sum() / (a.speech.sum() / fps),
    ])


def _more_block(a: _Analysis, llds: dict[str, np.ndarray]) -> np.ndarray:
    """Log-mel spread and dynamics, MFCC shape and voiced/unvoiced means, spectral skewness."""
    lm = a.logmel[:, a.speech]
    dlm = _delta(a.logmel)[:, a.speech]
    lmf = np.column_stack([*np.percentile(lm, [10, 90], axis=1), dlm.std(axis=1)]).reshape(-1)
    m = a.mfcc[:, a.speech]
    z = (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-9)
    unv = a.speech & ~a.voiced
    um = a.mfcc[:, unv].mean(axis=1) if unv.any() else np.zeros(N_MFCC)
    mf = np.column_stack(
        [(z**3).mean(axis=1), (z**4).mean(axis=1) - 3.0, a.mfcc[:, a.voiced].mean(axis=1), um]
    ).reshape(-1)
    sp = np.vstack(list(llds.values()))[:, a.speech]
    zs = (sp - sp.mean(axis=1, keepdims=True)) / (sp.std(axis=1, keepdims=True) + 1e-9)
    return np.concatenate([lmf, mf, (zs**3).mean(axis=1)])


def _dynamics_block(a: _Analysis) -> np.ndarray:
    """``ef-6`` and ``ef-7`` additions (:mod:`.dynamics`): contrast, modulation, contours, spectral
    envelope, cepstral peak prominence."""
    fps = SAMPLE_RATE / HOP
    st, _ = _semitones(a)
    return np.concatenate([
        dynamics.spectral_contrast(a.db, _FREQS, a.speech),
        dynamics.modulation_spectrum(a.frame_db, a.speech, fps),
        dynamics.pitch_contours(st, a.voiced, a.frame_db, _nuclei(a), fps),
        dynamics.spectral_envelope(a.logmel_mean),
        dynamics.cepstral_peak_prominence(a.db, a.voiced, SAMPLE_RATE),
    ])


def _encoder_block(a: _Analysis, x: np.ndarray) -> np.ndarray:
    """``ef-8``: the voice encoder's embedding (:mod:`.voice_encoder`) of the clip's own spectrogram."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return voice_encoder.embed(a.power * 10.0 ** (a.ref_db / 10.0), rms, n_fft=N_FFT, sample_rate=SAMPLE_RATE)
