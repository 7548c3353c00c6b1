"""Emotion features added in ``ef-6`` (spectral contrast, envelope modulation, pitch contours) and
``ef-7`` (cepstral peak prominence).

Each function takes the frame-level tracks of one clip (10 ms frames, the grid of
:mod:`.features`) and returns a fixed-length vector, in the order of its ``*_NAMES`` constant.
All but :func:`spectral_envelope` are meant to survive a change of microphone and room:

- spectral contrast (peak minus valley level inside each octave band, per frame) does not move
  when a smooth microphone response lifts or cuts the whole band;
- the modulation spectrum of the loudness envelope (how fast loudness rises and falls: syllable
  rate, emphasis) is a shape of the envelope, not of the spectrum;
- pitch contours per voiced segment (slope, range, final movement) are in semitones;
- cepstral peak prominence (how clearly the voice is periodic: breathy, tense or clear) lives at
  the quefrencies of F0, above those a smooth microphone or room response reaches.

:func:`spectral_envelope` is the clip's mean cepstrum (MFCC 1-12 before cepstral mean
normalisation): vocal effort tilts it, but so does the microphone. It is trained with the
channel copies of :mod:`.training.augment`, and left out of the compact feature set.
"""

from __future__ import annotations

import numpy as np

#: Octave bands of the spectral contrast (Hz).
CONTRAST_BANDS_HZ = ((100, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000))
#: Share of a band's bins averaged for its peak and for its valley (librosa uses 0.02 of a
#: 2048-point FFT; at 512 points a band has 5-128 bins, so a fifth).
CONTRAST_QUANTILE = 0.2
#: Modulation-frequency bands of the loudness envelope (Hz): stress groups, syllables, fast
#: syllables and phones, flutter/tremor.
MODULATION_BANDS_HZ = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0))
#: Cepstral coefficients of the spectral envelope (1-12: 0 is the level, removed).
N_ENVELOPE = 12
#: Shortest voiced segment with a contour of its own (frames).
MIN_SEGMENT_FRAMES = 5

CONTRAST_NAMES = tuple(f"contrast_{lo}_{hi}_{f}" for lo, hi in CONTRAST_BANDS_HZ for f in ("mean", "std"))
MODULATION_NAMES = (*(f"modulation_{lo:g}_{hi:g}_db" for lo, hi in MODULATION_BANDS_HZ), "modulation_centroid_hz")
CONTOUR_NAMES = (
    "segment_slope_st_per_s_mean", "segment_slope_st_per_s_std", "segment_slope_st_per_s_absmean",
    "segment_range_st_mean", "final_segment_slope_st_per_s", "final_segment_st", "f0_energy_corr",
    "nucleus_interval_cv", "nucleus_interval_npvi",
)
ENVELOPE_NAMES = tuple(f"mfcc{i}_mean" for i in range(1, N_ENVELOPE + 1))
#: Quefrency range of the cepstral peak (F0 from 60 to 500 Hz).
CPP_F0_HZ = (60.0, 500.0)
CPP_NAMES = ("cpp_db_mean", "cpp_db_std", "cpp_db_p10", "cpp_db_p90")


def spectral_contrast(db: np.ndarray, freqs: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """Mean and std over speech frames of each band's peak-minus-valley level (dB).

    ``db``: dB power spectrum, shape (bins, frames); ``freqs``: bin frequencies (Hz);
    ``speech``: frame mask. Returns :data:`CONTRAST_NAMES` values.
    """
    out = []
    sel = np.ascontiguousarray(db[:, speech].T)  # (frames, bins): each frame's bins contiguous
    for lo, hi in CONTRAST_BANDS_HZ:
        band = np.sort(sel[:, (freqs >= lo) & (freqs < hi)], axis=1)
        k = max(1, int(round(CONTRAST_QUANTILE * band.shape[1])))
        contrast = band[:, -k:].mean(axis=1) - band[:, :k].mean(axis=1)
        out += [contrast.mean(), contrast.std()]
    return np.array(out)


def modulation_spectrum(frame_db: np.ndarray, speech: np.ndarray, fps: float) -> np.ndarray:
    """Relative power (dB re the total) of the loudness envelope in each modulation band, and
    the envelope's modulation centroid (Hz), over the span from the first to the last speech frame.
    """
    idx = np.flatnonzero(speech)
    env = np.maximum(frame_db[idx[0] : idx[-1] + 1], -60.0)
    env = env - env.mean()
    n = max(len(env), int(2 * fps))  # at least 0.5 Hz resolution
    power = np.abs(np.fft.rfft(env * np.hanning(len(env)), n)) ** 2
    mf = np.fft.rfftfreq(n, 1.0 / fps)
    in_range = (mf >= MODULATION_BANDS_HZ[0][0]) & (mf < MODULATION_BANDS_HZ[-1][1])
    total_sum = float(power[in_range].sum()) + 1e-10
    bands = [10.0 * np.log10((power[(mf >= lo) & (mf < hi)].sum() + 1e-10) / total_sum)
             for lo, hi in MODULATION_BANDS_HZ]
    centroid = float(mf[in_range] @ power[in_range]) / total_sum
    return np.array([*bands, centroid])


def _segments(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in ``mask`` at least MIN_SEGMENT_FRAMES long."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    keep = ends - starts >= MIN_SEGMENT_FRAMES
    return starts[keep], ends[keep]


def _segment_percentile(sorted_vals: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, q: float) -> np.ndarray:
    """Percentile ``q`` of each segment (linear interpolation, as ``np.percentile``) from the
    segments' values sorted inside each segment and laid end to end."""
    pos = q / 100.0 * (lengths - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, lengths - 1)
    frac = pos - lo
    a, b = sorted_vals[offsets + lo], sorted_vals[offsets + hi]
    return a + (b - a) * frac


def _segment_stats(st: np.ndarray, starts: np.ndarray, ends: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope (st/s) and 5-95 % range (st) of every segment, vectorised."""
    lengths = ends - starts
    seg_id = np.repeat(np.arange(len(starts)), lengths)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    idx = np.arange(len(seg_id)) - offsets[seg_id]  # frame index inside its segment
    vals = st[starts[seg_id] + idx]
    t = (idx - (lengths[seg_id] - 1) / 2.0) / fps
    mean = np.add.reduceat(vals, offsets) / lengths
    slopes = np.add.reduceat(t * (vals - mean[seg_id]), offsets) / np.add.reduceat(t * t, offsets)
    order = np.lexsort((vals, seg_id))
    ranges = (_segment_percentile(vals[order], offsets, lengths, 95.0)
              - _segment_percentile(vals[order], offsets, lengths, 5.0))
    return slopes, ranges


def _intervals(peaks: np.ndarray, fps: float) -> tuple[float, float]:
    """Coefficient of variation and normalised pairwise variability index of peak intervals."""
    d = np.diff(peaks) / fps
    if len(d) < 2:
        return 0.0, 0.0
    npvi = 100.0 * float(np.mean(np.abs(np.diff(d)) / ((d[1:] + d[:-1]) / 2.0)))
    return float(d.std() / d.mean()), npvi


def pitch_contours(st: np.ndarray, voiced: np.ndarray, frame_db: np.ndarray, peaks: np.ndarray,
                   fps: float) -> np.ndarray:
    """Per-segment pitch movement, pitch-loudness coupling and rhythm regularity.

    ``st``: pitch in semitones re the clip's median (any value where unvoiced); ``voiced``: frame
    mask; ``frame_db``: frame energy (dB); ``peaks``: frame indices of syllable nuclei.
    Returns :data:`CONTOUR_NAMES` values.
    """
    starts, ends = _segments(voiced)
    if len(starts):
        sl, ranges = _segment_stats(st, starts, ends, fps)
        last = (float(sl[-1]), float(st[ends[-1] - MIN_SEGMENT_FRAMES : ends[-1]].mean()))
    else:
        sl, ranges, last = np.zeros(0), np.zeros(0), (0.0, 0.0)
    sv, ev = st[voiced], frame_db[voiced]
    corr = float(np.corrcoef(sv, ev)[0, 1]) if len(sv) > 2 and sv.std() > 1e-9 and ev.std() > 1e-9 else 0.0
    return np.array([
        sl.mean() if sl.size else 0.0, sl.std() if sl.size else 0.0, np.abs(sl).mean() if sl.size else 0.0,
        float(ranges.mean()) if ranges.size else 0.0, *last, corr, *_intervals(peaks, fps),
    ])


def spectral_envelope(logmel_mean: np.ndarray) -> np.ndarray:
    """MFCC 1..:data:`N_ENVELOPE` of the clip's mean log-mel spectrum (before CMN)."""
    import scipy.fft

    return scipy.fft.dct(logmel_mean, norm="ortho")[1 : N_ENVELOPE + 1]


def cepstral_peak_prominence(db: np.ndarray, voiced: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cepstral peak prominence (Hillenbrand): per voiced frame, the height (dB) of the cepstrum's
    peak in the F0 quefrency range above the line fitted to the cepstrum over that range;
    breathy and tense voices lower it, clear voicing raises it. A smooth microphone response only
    moves low quefrencies, below the range. Returns :data:`CPP_NAMES` values (mean, std, 10th and
    90th percentile over voiced frames).

    ``db``: dB power spectrum (bins, frames) of an even FFT length; ``voiced``: frame mask.
    """
    import scipy.fft

    frames = db[:, voiced]
    if frames.shape[1] == 0:
        return np.zeros(len(CPP_NAMES))
    cep = scipy.fft.irfft(frames, axis=0)  # real cepstrum of the dB spectrum (float32 stays float32)
    lo, hi = (int(sample_rate / f) for f in (CPP_F0_HZ[1], CPP_F0_HZ[0]))
    hi = min(hi, cep.shape[0] // 2)
    seg = 20.0 * np.log10(np.abs(cep[lo:hi]) + 1e-6)  # the cepstrum in dB over the F0 range
    q = np.arange(lo, hi, dtype=seg.dtype)
    qc = q - q.mean()
    slope = (qc @ seg) / (qc @ qc)  # least-squares line per frame
    icept = seg.mean(axis=0) - slope * q.mean()
    peak = seg.argmax(axis=0)
    cpp_db = seg[peak, np.arange(seg.shape[1])] - (icept + slope * q[peak])
    return np.array([cpp_db.mean(), cpp_db.std(), np.percentile(cpp_db, 10), np.percentile(cpp_db, 90)])
