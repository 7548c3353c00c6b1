"""The ``ef-6`` and ``ef-7`` emotion features (personalization_engine.emotion.dynamics) on
synthetic signals with known answers: spectral contrast, loudness-envelope modulation, pitch
contours, the spectral envelope that a microphone tilt moves while the contrast does not, and
the cepstral peak prominence of a periodic voice against noise."""

from __future__ import annotations

import numpy as np
import pytest

from personalization_engine.emotion import dynamics, voice_encoder
from personalization_engine.emotion.features import FEATURE_NAMES, compute_features

from .conftest import make_bursts, make_glide

FPS = 100.0
_FREQS = np.fft.rfftfreq(512, 1 / 16_000)


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_every_new_feature_is_named_once_and_before_the_voice_encoder():
    new = (*dynamics.CONTRAST_NAMES, *dynamics.MODULATION_NAMES, *dynamics.CONTOUR_NAMES, *dynamics.ENVELOPE_NAMES,
           *dynamics.CPP_NAMES, *voice_encoder.NAMES)
    assert FEATURE_NAMES[-len(new):] == new and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_harmonic_spectrum_has_more_contrast_than_noise(rng):
    """Known answer: a flat noise spectrum has a few dB of peak-minus-valley per band (the
    spread of chi-square bin powers), a harmonic comb tens of dB."""
    frames = 50
    noise_db = 10 * np.log10(rng.chisquare(2, size=(len(_FREQS), frames)) / 2)
    comb = np.full((len(_FREQS), frames), -60.0)
    comb[(np.round(np.arange(150, 8000, 150) / 31.25)).astype(int)] = 0.0
    speech = np.ones(frames, bool)
    c_noise = dynamics.spectral_contrast(noise_db, _FREQS, speech)[::2]
    c_comb = dynamics.spectral_contrast(comb, _FREQS, speech)[::2]
    assert np.all(c_noise < 15.0) and np.all(c_comb[1:] > 40.0)


def test_contrast_ignores_a_smooth_microphone_tilt(rng):
    """A 3 dB/octave tilt moves the spectral envelope (mfcc means), barely the contrast."""
    db = 10 * np.log10(rng.chisquare(2, size=(len(_FREQS), 40)) / 2)
    tilt = 3.0 * np.log2(np.maximum(_FREQS, 50.0) / 1000.0)[:, None]
    speech = np.ones(40, bool)
    a, b = dynamics.spectral_contrast(db, _FREQS, speech), dynamics.spectral_contrast(db + tilt, _FREQS, speech)
    assert np.max(np.abs(a[::2] - b[::2])) < 3.5  # means, dB (a band spans one octave: 3 dB)
    env = np.linspace(-10, 10, 40)
    assert np.abs(dynamics.spectral_envelope(env) - dynamics.spectral_envelope(np.zeros(40))).max() > 1.0


@pytest.mark.parametrize("rate_hz, band", [(3.0, 1), (6.0, 2)])  # syllable-like rates: 2-4 Hz, 4-8 Hz
def test_modulation_peaks_at_the_syllable_rate(rate_hz, band):
    t = np.arange(400) / FPS
    frame_db = 10 * np.log10(np.sin(np.pi * rate_hz * t) ** 2 + 1e-3)
    mod = dynamics.modulation_spectrum(frame_db, np.ones(400, bool), FPS)
    assert int(np.argmax(mod[:4])) == band
    assert 0.5 * rate_hz < mod[4] < 2.5 * rate_hz  # centroid (Hz) near the rate


def test_contour_slopes_of_rising_and_falling_segments():
    """Known answer: 4 voiced segments rising 10 st/s, then one falling 20 st/s."""
    st = np.zeros(300)
    voiced = np.zeros(300, bool)
    for s in (0, 60, 120, 180):
        voiced[s:s + 40] = True
        st[s:s + 40] = 10.0 * np.arange(40) / FPS
    voiced[240:280] = True
    st[240:280] = -20.0 * np.arange(40) / FPS
    out = dict(zip(dynamics.CONTOUR_NAMES, dynamics.pitch_contours(st, voiced, np.zeros(300), np.array([10, 40, 70]), FPS), strict=True))
    assert out["segment_slope_st_per_s_mean"] == pytest.approx((4 * 10 - 20) / 5)
    assert out["final_segment_slope_st_per_s"] == pytest.approx(-20.0)
    assert out["segment_slope_st_per_s_absmean"] == pytest.approx(12.0)
    assert out["nucleus_interval_cv"] == pytest.approx(0.0) and out["nucleus_interval_npvi"] == pytest.approx(0.0)


def test_rising_glide_and_burst_train_through_the_whole_extractor():
    """End to end: a 120 -> 240 Hz glide rises 12 semitones in 2 s (6 st/s in each segment);
    4 Hz voiced bursts put the envelope's modulation in the 2-4 or 4-8 Hz band."""
    glide, _ = make_glide(120.0, 240.0, 2.0, kind="exponential")
    v = compute_features(glide)
    assert v[_col("segment_slope_st_per_s_mean")] == pytest.approx(6.0, abs=1.0)
    bursts = compute_features(make_bursts(4.0, 3.0))
    mods = [bursts[_col(n)] for n in dynamics.MODULATION_NAMES[:4]]
    assert int(np.argmax(mods)) in (1, 2)


def _frames_db(x: np.ndarray, frames: int) -> np.ndarray:
    """dB power spectra (257 bins, ``frames``) of 25 ms Hann frames, 10 ms apart, 512-point FFT."""
    win = np.hanning(402)[1:-1]
    spec = np.fft.rfft(np.stack([x[i * 160:i * 160 + 400] * win for i in range(frames)]), n=512, axis=1)
    return 10 * np.log10(np.abs(spec.T) ** 2 + 1e-10)


def test_cepstral_peak_prominence_of_a_periodic_voice_against_noise(rng):
    """Known answer: a 125 Hz pulse train through a vowel-like resonance (30 dB above a noise
    floor) has a cepstral peak at its period (128 samples at 16 kHz) far above the fitted line
    (about 41 dB); the same voice as loud as the noise about 18 dB; noise alone about 13 dB. A
    smooth microphone tilt barely moves it; no voiced frame gives zeros."""
    from scipy.signal import lfilter

    frames, n = 40, 40 * 160 + 400
    pulses = np.zeros(n)
    pulses[::128] = 1.0
    voice = lfilter([1.0], [1.0, -1.3, 0.7], pulses)
    noise = rng.standard_normal(n) * np.sqrt(np.mean(voice**2))
    voiced = np.ones(frames, bool)
    cpp = {name: dynamics.cepstral_peak_prominence(_frames_db(x, frames), voiced, 16_000)
           for name, x in (("voice", voice + 0.03 * noise), ("noisy", voice + noise), ("noise", noise))}
    assert cpp["voice"].shape == (len(dynamics.CPP_NAMES),)
    assert cpp["voice"][0] > cpp["noisy"][0] + 10.0 and cpp["noisy"][0] > cpp["noise"][0] + 2.0
    tilt = 3.0 * np.log2(np.maximum(_FREQS, 50.0) / 1000.0)[:, None]
    tilted = dynamics.cepstral_peak_prominence(_frames_db(voice + 0.03 * noise, frames) + tilt, voiced, 16_000)
    assert abs(tilted[0] - cpp["voice"][0]) < 0.5
    assert np.array_equal(dynamics.cepstral_peak_prominence(_frames_db(voice, frames), ~voiced, 16_000),
                          np.zeros(len(dynamics.CPP_NAMES)))
