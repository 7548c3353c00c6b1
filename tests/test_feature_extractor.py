"""feature_extractor.extract_features: known-answer synthetic signals, real speech against
Praat and hand-counted transcripts, and every rejected input.

Praat (praat-parselmouth, a test-only dependency) runs the same published pitch algorithm as the
tracker (Boersma 1993) in independent C++ code, so the comparison checks the implementation;
the synthetic tones and glides check the answers themselves."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from personalization_engine.audio_io import load_audio
from personalization_engine.errors import AudioInputError, FeatureExtractionError
from personalization_engine.feature_extractor import (
    F0_MAX_HZ,
    F0_MIN_HZ,
    MIN_PAUSE_S,
    REGISTER_BOUNDS_HZ,
    extract_features,
)

from .conftest import make_bursts, make_glide, make_tone

SR = 16_000
#: Median F0 tolerance against Praat, and speaking-rate tolerance against transcripts.
F0_TOL = 0.03
RATE_TOL = 0.15
#: The emotion-clip sample: this many clips, round-robin over (corpus, emotion) groups.
N_EMOTION_CLIPS = 50
SAMPLE_SEED = 1234


def _praat_median_f0(samples: np.ndarray, sr: int) -> float:
    """Praat's ``To Pitch (ac)`` with its defaults and our 75-500 Hz range (a 60 Hz floor makes
    Praat lock onto the 60 Hz mains hum of the LibriSpeech 2609-* clips)."""
    parselmouth = pytest.importorskip("parselmouth")
    sound = parselmouth.Sound(samples.astype(np.float64), sr)
    pitch = sound.to_pitch(pitch_floor=F0_MIN_HZ, pitch_ceiling=F0_MAX_HZ)
    f0 = pitch.selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


# --- synthetic signals with known answers ---------------------------------------------------


@pytest.mark.parametrize("freq_hz", [100.0, 220.0, 440.0])
def test_pure_tone_pitch_is_exact(freq_hz: float) -> None:
    dna = extract_features(make_tone(freq_hz, 2.0), SR)
    contour = dna.pitch.contour
    assert contour.voiced.mean() > 0.98
    assert np.abs(contour.f0_hz[contour.voiced] / freq_hz - 1).max() < 0.01
    assert dna.pitch.median_hz == pytest.approx(freq_hz, rel=1e-3)
    assert dna.pitch.range_semitones < 0.1


@pytest.mark.parametrize("kind,f_start,f_end", [("linear", 100.0, 300.0), ("exponential", 100.0, 400.0)])
def test_glide_is_tracked_frame_by_frame(kind: str, f_start: float, f_end: float) -> None:
    signal, f0_at = make_glide(f_start, f_end, 2.0, kind=kind)
    contour = extract_features(signal, SR).pitch.contour
    inner = slice(3, -3)  # the first and last frames see the zero padding beyond the clip
    assert contour.voiced[inner].all()
    error = np.abs(contour.f0_hz[inner] / f0_at(contour.times_s[inner]) - 1)
    assert error.max() < 0.01


def test_register_follows_documented_bounds() -> None:
    names = [name for name, _ in REGISTER_BOUNDS_HZ]
    uppers = [upper for _, upper in REGISTER_BOUNDS_HZ]
    assert names == ["bass", "baritone", "tenor", "alto", "mezzo", "soprano"]
    assert uppers == sorted(uppers) and uppers[-1] == float("inf")
    for (name, upper), lower in zip(REGISTER_BOUNDS_HZ, [F0_MIN_HZ] + uppers[:-1], strict=True):
        freq = min(upper - 5.0, lower + 20.0)
        assert extract_features(make_tone(freq, 1.5), SR).pitch.register == name, freq


def test_levels_follow_tone_amplitude() -> None:
    """A sine of amplitude a has RMS a / sqrt(2): -9.03 dBFS at 0.5, 20 dB less at 0.05."""
    loud = extract_features(make_tone(200.0, 2.0, amplitude=0.5), SR).energy
    soft = extract_features(make_tone(200.0, 2.0, amplitude=0.05), SR).energy
    assert loud.mean_db == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.2)
    assert loud.mean_db - soft.mean_db == pytest.approx(20.0, abs=0.2)
    assert loud.dynamic_range_db < 0.5


@pytest.mark.parametrize("rate_hz", [4.0, 6.0])
def test_burst_rate_is_the_syllable_rate(rate_hz: float) -> None:
    rate = extract_features(make_bursts(rate_hz, 3.0), SR).rate
    assert rate.syllable_count == pytest.approx(3.0 * rate_hz, abs=1)
    assert rate.syllables_per_s == pytest.approx(rate_hz, rel=0.1)
    assert rate.articulation_rate == pytest.approx(rate_hz, rel=0.1)
    assert rate.pause_count == 0


@pytest.mark.parametrize("gap_s,pauses", [(2 * MIN_PAUSE_S, 3), (0.4 * MIN_PAUSE_S, 0)])
def test_silence_gaps_are_pauses_when_long_enough(gap_s: float, pauses: int) -> None:
    """Four blocks of 4 syllables with three silent gaps: pauses only when the gaps are long."""
    block = make_bursts(5.0, 0.8)
    gap = np.zeros(int(gap_s * SR), np.float32)
    signal = np.concatenate([block, gap, block, gap, block, gap, block])
    dna = extract_features(signal, SR)
    assert dna.rate.pause_count == pauses
    expected_ratio = pauses * gap_s / dna.duration_s
    assert dna.rate.pause_ratio == pytest.approx(expected_ratio, abs=0.03)
    assert dna.rate.syllable_count == 16
    assert dna.speech_duration_s == pytest.approx(dna.duration_s * (1 - expected_ratio), abs=0.15)


def test_stress_marks_the_loud_syllables() -> None:
    dna = extract_features(make_bursts(4.0, 3.0, amplitudes=(1.0, 0.4)), SR)
    times = [p.time_s for p in dna.energy.stress]
    assert times == pytest.approx([(k + 0.5) / 4.0 for k in range(0, 12, 2)], abs=0.03)
    assert all(p.prominence > 0.9 for p in dna.energy.stress)


def test_stress_marks_pitch_accents() -> None:
    dna = extract_features(make_bursts(4.0, 3.0, f0_hz=(150.0, 150.0, 190.0)), SR)
    times = [p.time_s for p in dna.energy.stress]
    assert times == pytest.approx([(k + 0.5) / 4.0 for k in range(2, 12, 3)], abs=0.03)


def test_monotone_even_syllables_have_no_stress() -> None:
    assert extract_features(make_bursts(4.0, 3.0), SR).energy.stress == ()


def test_other_sample_rates_give_the_same_answer() -> None:
    signal = make_bursts(4.0, 3.0, f0_hz=(140.0, 180.0))
    at_16k = extract_features(signal, SR)
    at_44k = extract_features(scipy.signal.resample_poly(signal, 441, 160).astype(np.float32), 44_100)
    assert at_44k.sample_rate == SR
    assert at_44k.pitch.median_hz == pytest.approx(at_16k.pitch.median_hz, rel=0.005)
    assert at_44k.rate.syllable_count == at_16k.rate.syllable_count


def test_contours_share_one_grid_and_serialise(tone_220: tuple[np.ndarray, int]) -> None:
    dna = extract_features(*tone_220)
    contour = dna.pitch.contour
    n = len(contour.times_s)
    assert n == len(dna.energy.rms_db) == len(contour.f0_hz) == len(contour.voiced) == 200
    assert np.array_equal(contour.times_s, dna.energy.times_s)
    assert np.array_equal(np.isnan(contour.f0_hz), ~contour.voiced)
    d = json.loads(json.dumps(dna.to_dict(contours=True)))
    assert len(d["pitch"]["contour"]["f0_hz"]) == n and d["pitch"]["register"] == "mezzo"


# --- bad input --------------------------------------------------------------------------------


def _noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(3).standard_normal(2 * SR)).astype(np.float32)


@pytest.mark.parametrize(
    "samples,sr,error,match",
    [
        # stereo must be downmixed by load_audio first
        (np.zeros((SR, 2), np.float32), SR, AudioInputError, "1-D mono"),
        # a plain list is not an array
        ([0.0] * SR, SR, AudioInputError, "1-D mono"),
        # integer PCM must be scaled by load_audio first
        (np.zeros(SR, np.int16), SR, AudioInputError, "float samples"),
        # nothing to analyse
        (np.zeros(0, np.float32), SR, AudioInputError, "empty"),
        # damaged samples
        (np.full(SR, np.nan, np.float32), SR, AudioInputError, "NaN or infinite"),
        (np.r_[make_tone(200.0, 2.0), np.float32(np.inf)], SR, AudioInputError, "NaN or infinite"),
        # digital silence
        (np.zeros(2 * SR, np.float32), SR, AudioInputError, "silent"),
        # half a second of voice, then silence: too little speech
        (np.r_[make_bursts(4.0, 0.5), np.zeros(SR, np.float32)], SR, AudioInputError, r"only 0\.\d+ s of"),
        # rates outside 8-192 kHz, or not an integer
        (make_tone(200.0, 2.0), 4_000, AudioInputError, "sample rate 4000"),
        (make_tone(200.0, 2.0), 16_000.0, AudioInputError, "sample rate 16000.0"),
        # loud but aperiodic: nothing voiced
        (_noise(), SR, FeatureExtractionError, "no voiced speech"),
    ],
)
def test_bad_input_is_rejected(samples: np.ndarray, sr: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        extract_features(samples, sr)


@pytest.mark.parametrize("fmin,fmax", [(300.0, 200.0), (20.0, 500.0), (75.0, 2000.0)])
def test_bad_pitch_range_is_rejected(fmin: float, fmax: float) -> None:
    with pytest.raises(AudioInputError, match="pitch range"):
        extract_features(make_tone(200.0, 2.0), SR, fmin_hz=fmin, fmax_hz=fmax)


# --- real speech ----------------------------------------------------------------------------


def _voice_files(speech_data: Path) -> list[Path]:
    files = sorted((speech_data / "voices").glob("*.flac"))
    assert len(files) == 15
    return files


def _emotion_sample(shared_data: Path) -> list[tuple[Path, np.ndarray]]:
    """N_EMOTION_CLIPS clips, round-robin over the 13 (corpus, emotion) groups, each group
    shuffled with a fixed seed; a clip load_audio rejects (< 1 s of speech) gives way to the next."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for corpus in ("emodb", "ravdess"):
        folder = shared_data / "emotion" / corpus
        with open(folder / "labels.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                groups.setdefault((corpus, row["emotion7"]), []).append(folder / row["file"])
    rng = np.random.default_rng(SAMPLE_SEED)
    queues = [list(rng.permutation(sorted(groups[key]))) for key in sorted(groups)]
    picked: list[tuple[Path, np.ndarray]] = []
    while len(picked) < N_EMOTION_CLIPS and any(queues):
        for queue in queues:
            while queue and len(picked) < N_EMOTION_CLIPS:
                path = Path(queue.pop(0))
                try:
                    picked.append((path, load_audio(path).samples))
                    break
                except AudioInputError:
                    continue
    return picked


def test_median_f0_matches_praat_on_every_voice_clip(speech_data: Path) -> None:
    errors = {}
    for path in _voice_files(speech_data):
        samples, sr = load_audio(path)
        errors[path.name] = extract_features(samples, sr).pitch.median_hz / _praat_median_f0(samples, sr) - 1
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < F0_TOL, f"{worst}: {errors[worst]:+.2%} vs Praat"


def test_median_f0_matches_praat_on_the_fixture_emotion_clips(speech_data: Path) -> None:
    """Every EmoDB clip of tests/data (6 emotions x 10 speakers, acted, 1.7-4.0 s): the check of
    the corpus sample below, in any clone."""
    errors = {}
    for path in sorted((speech_data / "emotion" / "emodb").glob("*.flac")):
        samples, sr = load_audio(path)
        errors[path.name] = extract_features(samples, sr).pitch.median_hz / _praat_median_f0(samples, sr) - 1
    assert len(errors) == 59
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < F0_TOL, f"{worst}: {errors[worst]:+.2%} vs Praat"


@pytest.mark.corpus
def test_median_f0_matches_praat_on_emotion_sample(shared_data: Path) -> None:
    sample = _emotion_sample(shared_data)
    assert len(sample) == N_EMOTION_CLIPS
    assert {p.parent.name for p, _ in sample} == {"ravdess", "emodb"}
    errors = {
        p.name: extract_features(x, SR).pitch.median_hz / _praat_median_f0(x, SR) - 1
        for p, x in sample
    }
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < F0_TOL, f"{worst}: {errors[worst]:+.2%} vs Praat"


#: Hand-syllabified transcripts (syllable counts follow the CMU Pronouncing Dictionary:
#: "Whittemore" W IH1 T M AO0 R is two syllables, "etc." is read "et cetera").
SYLLABIFIED = {
    "LJ001-0004.flac": "pro-duced the block books which were the im-me-di-ate pre-de-ces-sors of the true "
    "print-ed book",
    "LJ001-0006.flac": "and it is worth men-tion in pass-ing that as an ex-am-ple of fine ty-pog-ra-phy",
    "cmu_arctic_us_aew_a0001.flac": "au-thor of the dan-ger trail phil-ip steels et-cet-er-a",
    "cmu_arctic_us_aew_a0002.flac": "not at this par-tic-u-lar case tom a-pol-o-gized whitte-more",
    "cmu_arctic_us_axb_a0006.flac": "god bless 'em i hope i'll go on see-ing them for-ev-er",
}


def _transcripts(speech_data: Path) -> dict[str, str]:
    with open(speech_data / "voices" / "transcripts.tsv", newline="") as fh:
        return {row["file"]: row["text"] for row in csv.DictReader(fh, delimiter="\t") if row["text"]}


def test_syllable_table_matches_the_transcripts(speech_data: Path) -> None:
    transcripts = _transcripts(speech_data)
    assert set(transcripts) == set(SYLLABIFIED)
    for name, text in transcripts.items():
        words = re.findall(r"[a-z']+", text.lower().replace("etc.", "etcetera"))
        assert SYLLABIFIED[name].replace("-", "").split() == words, name


@pytest.mark.parametrize("name", sorted(SYLLABIFIED))
def test_articulation_rate_matches_transcript(speech_data: Path, name: str) -> None:
    """Reference rate = transcript syllables / speech duration, the same speech duration that
    articulation_rate divides by (the trimmed clip minus its edge silences and its pauses), so
    the syllable count is what is checked; the speech duration itself is checked against
    Praat's sounding time (de Jong & Wempe's -25 dB silence detection, 0.3 s minimum pause)."""
    samples, sr = load_audio(speech_data / "voices" / name)
    rate = extract_features(samples, sr).rate
    syllables = len(SYLLABIFIED[name].replace("-", " ").split())
    reference = syllables / rate.speech_duration_s
    assert rate.articulation_rate == pytest.approx(reference, rel=RATE_TOL)
    assert rate.syllables_per_s == pytest.approx(syllables / (len(samples) / sr), rel=RATE_TOL)
    assert rate.speech_duration_s == pytest.approx(_praat_sounding_s(samples, sr), rel=RATE_TOL)


def _praat_sounding_s(samples: np.ndarray, sr: int) -> float:
    """Praat's sounding time: the clip minus silences of >= 0.3 s at -25 dB (de Jong & Wempe)."""
    parselmouth = pytest.importorskip("parselmouth")
    call = parselmouth.praat.call
    intensity = parselmouth.Sound(samples.astype(np.float64), sr).to_intensity(minimum_pitch=50.0)
    grid = call(intensity, "To TextGrid (silences)", -25.0, 0.3, 0.1, "silent", "sounding")
    spans = [
        call(grid, "Get end time of interval", 1, i) - call(grid, "Get start time of interval", 1, i)
        for i in range(1, call(grid, "Get number of intervals", 1) + 1)
        if call(grid, "Get label of interval", 1, i) == "sounding"
    ]
    return float(sum(spans))


def test_real_clip_record_is_consistent(speech_data: Path) -> None:
    samples, sr = load_audio(speech_data / "voices" / "LJ001-0006.flac")
    dna = extract_features(samples, sr)
    pitch, energy, rate = dna.pitch, dna.energy, dna.rate
    assert pitch.p5_hz < pitch.median_hz < pitch.p95_hz
    assert pitch.range_semitones == pytest.approx(12 * np.log2(pitch.p95_hz / pitch.p5_hz))
    assert 0.3 < pitch.voiced_fraction < 0.95
    assert rate.pause_count >= 1 and 0 < rate.pause_ratio < 0.3
    assert dna.speech_duration_s == rate.speech_duration_s < dna.duration_s
    assert 0 < len(energy.stress) < rate.syllable_count
    assert all(0.5 <= p.prominence <= 1.0 for p in energy.stress)
    assert max(p.prominence for p in energy.stress) == 1.0
    assert energy.dynamic_range_db > 10.0
