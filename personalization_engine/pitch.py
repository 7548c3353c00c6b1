"""F0 tracking and framing on the engine's 10 ms grid: the one pitch tracker of the package.

Both the Voice DNA (:mod:`feature_extractor`) and the emotion features (:mod:`emotion.features`)
call :func:`track_pitch`; frame ``i`` is centred at ``i * 10 ms`` (the grid of
:func:`audio_io.frame_rms_db`), so pitch, energy and spectral tracks line up frame for frame.

The tracker is Boersma's (1993) autocorrelation method, the algorithm of Praat's
``To Pitch (ac)``: Hann-windowed frames three periods of the pitch floor long, the frame's
autocorrelation divided by the window's, up to :data:`MAX_CANDIDATES` peaks per frame, and a
Viterbi path through the candidates that charges octave jumps and voicing changes. It is
vectorised over frames with NumPy (only the Viterbi recursion loops over frames).

The search range is 75-1000 Hz. Screamed and fearful speech goes above 500 Hz (a RAVDESS fear
scream sits near 590 Hz); with a 500 Hz ceiling the only candidate left for such a frame is the
sub-harmonic one octave down, so the track halved. Raising the ceiling adds the candidates the
voice really has; the octave cost (a constant per octave below the ceiling) does not change the
ranking of candidates below 500 Hz, so ordinary speech is tracked as before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .audio_io import HOP_S, speech_segments

#: Pitch search range (Hz). 75 Hz is Praat's standard floor: it sits above 50/60 Hz mains hum
#: (with a 60 Hz floor Praat and this tracker lock onto the hum in two LibriSpeech reference
#: clips) and below the speaking F0 of nearly all adult men. 1000 Hz covers screams (RAVDESS
#: strong-intensity fear and surprise reach 600-900 Hz) and children's shouts.
F0_MIN_HZ = 75.0
F0_MAX_HZ = 1000.0
#: Window length in periods of the pitch floor (3 x 1/75 Hz = 40 ms), Praat's choice for the
#: Hann-windowed autocorrelation method (Boersma 1993).
PERIODS_PER_WINDOW = 3.0
#: Praat's default path-finder settings (Boersma 1993; Praat manual, "Sound: To Pitch (ac)..."):
#: up to 15 candidates a frame; a frame is voiced when its best normalised autocorrelation beats
#: 0.45; frames whose local peak is under 3 % of the clip's peak lean to unvoiced; each octave
#: below the ceiling costs 0.01 (so a clean tone is not read an octave low); an octave jump
#: between frames costs 0.35 and a voiced/unvoiced switch 0.14.
MAX_CANDIDATES = 15
VOICING_THRESHOLD = 0.45
SILENCE_THRESHOLD = 0.03
OCTAVE_COST = 0.01
OCTAVE_JUMP_COST = 0.35
VOICED_UNVOICED_COST = 0.14
#: A frame whose local peak is below this fraction of the clip's peak is unvoiced on every best
#: path: its unvoiced strength then exceeds any voiced strength (<= 1) plus two voicing switches,
#: so it is skipped before the autocorrelation (exact, not an approximation).
_MIN_VOICED_INTENSITY = (
    SILENCE_THRESHOLD * (1 + VOICING_THRESHOLD - 2 * VOICED_UNVOICED_COST) / (1 + VOICING_THRESHOLD)
)


@dataclass(frozen=True)
class PitchTrack:
    """F0 per 10 ms frame (frame ``i`` centred at ``i * HOP_S``)."""

    f0_hz: np.ndarray
    """F0 in Hz, NaN where unvoiced, shape (frames,)."""
    voiced: np.ndarray
    """Voicing decision of the best path, bool, shape (frames,)."""
    strength: np.ndarray
    """Normalised autocorrelation (harmonicity, 0-1) of the chosen candidate; 0 where unvoiced."""

    @property
    def times_s(self) -> np.ndarray:
        """Frame centre times (s)."""
        return np.arange(len(self.f0_hz)) * HOP_S


def n_frames(n_samples: int, sr: int) -> int:
    """Frames of the 10 ms grid for ``n_samples`` at ``sr`` Hz (the last one may be partial)."""
    return max(1, -(-n_samples // round(HOP_S * sr)))


def frame_signal(x: np.ndarray, width: int, hop: int, count: int) -> np.ndarray:
    """``count`` frames of ``width`` samples, frame ``i`` centred at sample ``i * hop`` (a view)."""
    half = width // 2
    pad = np.pad(x, (half, max(0, width - half + count * hop - len(x))))
    return np.lib.stride_tricks.sliding_window_view(pad, width)[::hop][:count]


def track_pitch(
    samples: np.ndarray, sr: int, *, fmin_hz: float = F0_MIN_HZ, fmax_hz: float = F0_MAX_HZ
) -> PitchTrack:
    """F0 contour on the 10 ms grid (Boersma's autocorrelation method with a Viterbi path).

    Parameters
    ----------
    samples : np.ndarray, shape (n,)
        Mono float audio at ``sr`` Hz (16 kHz keeps it fast).
    sr : int
        Sample rate in Hz; must exceed ``2 * fmax_hz``.
    fmin_hz, fmax_hz : float
        Search range in Hz (the caller validates it).

    Returns
    -------
    PitchTrack
        F0 (NaN where unvoiced), voicing and harmonicity per frame.

    Examples
    --------
    >>> t = np.arange(16000) / 16000
    >>> track = track_pitch(np.sin(2 * np.pi * 700 * t).astype(np.float32), 16000)
    >>> round(float(np.nanmedian(track.f0_hz)))
    700
    """
    x = np.asarray(samples, dtype=np.float32)
    x = x - x.mean()
    hop = round(HOP_S * sr)
    n = n_frames(len(x), sr)
    half = int(PERIODS_PER_WINDOW * sr / fmin_hz) // 2
    window = _hann(2 * half)
    frames = frame_signal(x, 2 * half, hop, n)
    # Local peak: the windowed frame within half the longest period of its centre (Praat's rule).
    reach = int(sr / fmin_hz) // 2 + 1
    centre = slice(half - reach, half + reach)
    local_peak = np.abs(frames[:, centre] * window[centre]).max(axis=1)
    intensity = np.minimum(local_peak / max(float(np.abs(x).max()), 1e-12), 1.0)
    active = np.flatnonzero(intensity >= _MIN_VOICED_INTENSITY)
    freqs = np.zeros((n, MAX_CANDIDATES), dtype=np.float64)
    strengths = np.zeros((n, MAX_CANDIDATES), dtype=np.float64)
    if active.size:
        max_lag = int(2 * half / PERIODS_PER_WINDOW) + 2  # one floor period, plus interpolation room
        r = _normalized_autocorrelation(frames[active], window, max_lag=max_lag)
        freqs[active], strengths[active] = _pitch_candidates(r, sr, fmin_hz, fmax_hz)
    f0, strength = _viterbi_path(freqs, strengths, intensity, fmax_hz)
    voiced = f0 > 0
    return PitchTrack(f0_hz=np.where(voiced, f0, np.nan), voiced=voiced, strength=strength)


def _normalized_autocorrelation(frames: np.ndarray, window: np.ndarray, *, max_lag: int) -> np.ndarray:
    """Autocorrelation of each Hann-windowed frame divided by the window's, lags 0..max_lag+1."""
    # Zero-padded to a fast FFT length past width + max_lag, so no lag wraps around.
    n_fft = scipy.fft.next_fast_len(frames.shape[1] + max_lag + 2, real=True)
    spec = scipy.fft.rfft((frames - frames.mean(axis=1, keepdims=True)) * window, n_fft, axis=1)
    ac = scipy.fft.irfft(spec.real**2 + spec.imag**2, n_fft, axis=1)[:, : max_lag + 2]
    return ac / np.maximum(ac[:, :1], 1e-20) / _window_autocorrelation(len(window), n_fft)[: max_lag + 2]


@functools.lru_cache(maxsize=8)
def _window_autocorrelation(width: int, n_fft: int) -> np.ndarray:
    """Normalised autocorrelation of the Hann window of ``width`` samples (1 at lag 0)."""
    spec = scipy.fft.rfft(_hann(width).astype(np.float64), n_fft)
    ac = scipy.fft.irfft(spec.real**2 + spec.imag**2, n_fft)
    return (ac / ac[0]).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _hann(width: int) -> np.ndarray:
    """Praat's Hann window: zero just outside both ends, so no frame sample is wasted."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1, width + 1) / (width + 1))).astype(np.float32)


def _pitch_candidates(
    r: np.ndarray, sr: int, fmin_hz: float, fmax_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """The MAX_CANDIDATES strongest autocorrelation peaks per frame: (frequency, strength).

    Peaks are interpolated with a parabola; strengths above 1 (short-window artefacts) are
    reflected to 1/s. Empty slots hold frequency 0.
    """
    lo, hi = max(2, int(sr / fmax_hz)), r.shape[1] - 1
    mid, left, right = r[:, lo:hi], r[:, lo - 1 : hi - 1], r[:, lo + 1 : hi + 1]
    rows, cols = np.nonzero((mid > left) & (mid >= right) & (mid > 0.5 * VOICING_THRESHOLD))
    lag = cols + lo
    a, b, c = r[rows, lag - 1], r[rows, lag], r[rows, lag + 1]
    slope, curve = 0.5 * (c - a), 2 * b - a - c
    shift = slope / curve  # curve > 0 at a strict maximum
    strength = b + 0.5 * slope * shift
    strength = np.where(strength > 1.0, 1.0 / strength, strength)
    freq = sr / (lag + shift)
    ok = (freq >= fmin_hz) & (freq < fmax_hz)
    rows, freq, strength = rows[ok], freq[ok], strength[ok]
    # Rank within each frame, strongest first (with Praat's preference for high frequencies).
    order = np.lexsort((-(strength + OCTAVE_COST * np.log2(freq)), rows))
    rows, freq, strength = rows[order], freq[order], strength[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
    keep = rank < MAX_CANDIDATES
    out_f = np.zeros((r.shape[0], MAX_CANDIDATES))
    out_s = np.zeros((r.shape[0], MAX_CANDIDATES))
    out_f[rows[keep], rank[keep]] = freq[keep]
    out_s[rows[keep], rank[keep]] = strength[keep]
    return out_f, out_s


def _viterbi_path(
    freqs: np.ndarray, strengths: np.ndarray, intensity: np.ndarray, fmax_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame (0 = unvoiced) and its strength on the best path (Boersma 1993).

    A frame scores its candidate's strength (minus OCTAVE_COST per octave below the ceiling) or,
    unvoiced, VOICING_THRESHOLD plus a bonus for quiet frames; moving between frames costs
    OCTAVE_JUMP_COST per octave, or VOICED_UNVOICED_COST for a voicing switch. Frames without
    candidates are unvoiced for sure, so each run of frames with candidates is solved on its own.
    """
    n = freqs.shape[0]
    k = max(1, int((freqs > 0).sum(axis=1).max()))
    quiet = 2.0 - intensity * (1.0 + VOICING_THRESHOLD) / SILENCE_THRESHOLD
    unvoiced = VOICING_THRESHOLD + np.maximum(0.0, quiet)
    # Column 0 is the unvoiced candidate of every frame.
    cand = np.concatenate([np.zeros((n, 1)), freqs[:, :k]], axis=1)
    is_v = cand > 0
    log_f = np.log2(np.where(is_v, cand, 1.0))
    strength = np.concatenate([np.zeros((n, 1)), strengths[:, :k]], axis=1)
    score = np.where(is_v, strength - OCTAVE_COST * (np.log2(fmax_hz) - log_f), -1e9)
    score[:, 0] = unvoiced
    f0, chosen = np.zeros(n), np.zeros(n)
    for a, b in speech_segments(cand[:, 1] > 0):
        path = _best_path(score[a:b], log_f[a:b], is_v[a:b], enter=a > 0, leave=b < n)
        rows = np.arange(b - a)
        f0[a:b], chosen[a:b] = cand[a:b][rows, path], strength[a:b][rows, path]
    return f0, chosen


def _best_path(
    score: np.ndarray, log_f: np.ndarray, is_v: np.ndarray, *, enter: bool, leave: bool
) -> np.ndarray:
    """Viterbi over one run of frames between unvoiced frames; returns the column per frame."""
    n, k = score.shape
    # Transition costs from frame i-1 (axis 1) to frame i (axis 2), for all frames at once.
    both = is_v[:-1, :, None] & is_v[1:, None, :]
    jump = OCTAVE_JUMP_COST * np.abs(log_f[:-1, :, None] - log_f[1:, None, :])
    cost = np.where(both, jump, VOICED_UNVOICED_COST * (is_v[:-1, :, None] != is_v[1:, None, :]))
    back = np.zeros((n, k), dtype=np.int64)
    cols = np.arange(k)
    total = score[0] - VOICED_UNVOICED_COST * (is_v[0] & enter)
    for i in range(1, n):
        step = total[:, None] - cost[i - 1]
        back[i] = best = step.argmax(axis=0)
        total = step[best, cols] + score[i]
    total = total - VOICED_UNVOICED_COST * (is_v[-1] & leave)
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(total.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def frame_rms_db(samples: np.ndarray, sr: int, *, frame_s: float) -> np.ndarray:
    """RMS level in dBFS of ``frame_s`` rectangular frames centred at ``i * 10 ms``."""
    frame = max(1, round(frame_s * sr))
    hop = round(HOP_S * sr)
    n = n_frames(len(samples), sr)
    padded = np.pad(np.asarray(samples, dtype=np.float64), (frame // 2, frame // 2 + hop))
    csum = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = np.arange(n) * hop
    power = (csum[starts + frame] - csum[starts]) / frame
    return 10.0 * np.log10(np.maximum(power, 1e-12))
