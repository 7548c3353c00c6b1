"""audio_io.load_audio: formats, rates, channels, trimming and every rejected input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from personalization_engine.audio_io import load_audio, speech_mask
from personalization_engine.errors import AudioInputError, PersonalizationError

from .conftest import make_tone

VOICE = "LJ001-0004.flac"


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(shared_data / "voices" / VOICE), dtype="float32")
    return data, sr


def _write(path: Path, data: np.ndarray, sr: int, subtype: str | None = None, fmt: str | None = None) -> Path:
    sf.write(str(path), data, sr, subtype=subtype, format=fmt)
    return path


@pytest.mark.parametrize(
    "suffix,subtype",
    [
        (".wav", "PCM_U8"),  # 8-bit unsigned
        (".wav", "PCM_16"),
        (".wav", "PCM_24"),
        (".wav", "PCM_32"),
        (".wav", "FLOAT"),
        (".flac", "PCM_16"),
        (".flac", "PCM_24"),
        (".ogg", "VORBIS"),
    ],
)
def test_formats_and_bit_depths_load_to_same_audio(tmp_path, speech, suffix, subtype):
    data, sr = speech
    path = _write(tmp_path / f"clip{suffix}", data, sr, subtype)
    clip = load_audio(path, sample_rate=16_000, trim=False)
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.sample_rate == 16_000
    n = min(len(clip.samples), len(data))
    # 8-bit and Vorbis are lossy; the others are near-exact.
    tol = 0.25 if subtype in ("PCM_U8", "VORBIS") else 1e-3
    err = np.sqrt(np.mean((clip.samples[:n] - data[:n]) ** 2)) / np.sqrt(np.mean(data**2))
    assert err < tol


def test_mp3_where_libsndfile_supports_it(tmp_path, speech):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    data, sr = speech
    path = _write(tmp_path / "clip.mp3", data, sr, fmt="MP3")
    clip = load_audio(path)
    assert abs(clip.original_duration_s - len(data) / sr) < 0.2


@pytest.mark.parametrize("sr_in", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000])
def test_any_sample_rate_resamples_to_requested(tmp_path, sr_in):
    tone = make_tone(220.0, 2.0, sr=sr_in)
    path = _write(tmp_path / "tone.wav", tone, sr_in, "PCM_16")
    clip = load_audio(path, sample_rate=24_000, trim=False)
    assert clip.sample_rate == 24_000 and clip.original_sample_rate == sr_in
    assert abs(len(clip.samples) - 48_000) <= 2
    spectrum = np.abs(np.fft.rfft(clip.samples * np.hanning(len(clip.samples))))
    peak_hz = np.argmax(spectrum) * 24_000 / len(clip.samples)
    assert abs(peak_hz - 220.0) < 1.0


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_downmixed(tmp_path, channels):
    tone = make_tone(300.0, 2.0)
    multi = np.stack([tone * (1.0 if c == 0 else 0.5) for c in range(channels)], axis=1)
    clip = load_audio(_write(tmp_path / "multi.wav", multi, 16_000, "FLOAT"), trim=False)
    expected = multi.mean(axis=1)
    assert np.allclose(clip.samples, expected, atol=1e-6)


def test_array_inputs_int16_and_channels_first():
    tone = make_tone(200.0, 2.0)
    as_int = (tone * 32767).astype(np.int16)
    clip = load_audio(as_int, input_sample_rate=16_000, trim=False)
    assert np.allclose(clip.samples, tone, atol=1e-4)
    stereo_first = np.stack([tone, tone])  # (channels, n)
    clip2 = load_audio((stereo_first, 16_000), trim=False)
    assert clip2.samples.shape == tone.shape
    samples, sr = clip2  # unpacks like a tuple
    assert sr == 16_000 and samples is clip2.samples


def test_trims_leading_and_trailing_silence_and_measures_speech():
    sr = 16_000
    tone = make_tone(180.0, 2.0, sr=sr)
    quiet = np.zeros(sr, dtype=np.float32)
    clip = load_audio(np.concatenate([quiet, tone, quiet]), input_sample_rate=sr)
    assert 2.0 <= clip.duration_s <= 2.0 + 2 * 0.05 + 0.03
    assert abs(clip.speech_duration_s - 2.0) < 0.05
    assert clip.original_duration_s == pytest.approx(4.0)


def test_real_speech_trimmed_speech_duration(shared_data):
    clip = load_audio(shared_data / "voices" / VOICE)
    assert 3.0 < clip.speech_duration_s <= clip.duration_s <= clip.original_duration_s
    assert clip.warnings == ()


def test_clipped_audio_warns_but_loads():
    sr = 16_000
    tone = np.clip(make_tone(150.0, 2.0, sr=sr, amplitude=2.0), -1.0, 1.0)
    clip = load_audio(tone, input_sample_rate=sr)
    assert any("clipped" in w for w in clip.warnings)


def test_peak_normalised_file_is_not_called_clipped():
    """EmoDB files touch full scale once: a single full-scale sample is not clipping."""
    tone = make_tone(150.0, 2.0, amplitude=0.5)
    tone[1000] = 1.0
    assert load_audio(tone, input_sample_rate=16_000).warnings == ()


def test_long_clip_uses_best_window(speech):
    data, sr = speech
    gap = np.zeros(int(0.4 * sr), dtype=np.float32)
    long = np.concatenate([np.concatenate([data, gap]) for _ in range(8)])  # ~48 s
    clip = load_audio(long, input_sample_rate=sr)
    assert 3.0 <= clip.duration_s <= 15.0
    assert any("best" in w and "window" in w for w in clip.warnings)
    assert clip.speech_duration_s >= 3.0


# A table of bad inputs, each row with the message it must produce.
BAD_ARRAYS = [
    (np.zeros(0, dtype=np.float32), "empty"),  # no samples at all
    (np.array([0.1, np.nan, 0.2] * 8000, dtype=np.float32), "NaN or infinite"),  # NaN
    (np.array([0.1, np.inf] * 8000, dtype=np.float32), "NaN or infinite"),  # inf
    (np.zeros(32_000, dtype=np.float32), "all silence"),  # digital silence
    (np.full(32_000, 1e-5, dtype=np.float32), "all silence"),  # below the -60 dBFS floor
    (make_tone(200.0, 0.5), r"only 0.5\d? s of speech"),  # too short
    (np.zeros((2, 3, 4), dtype=np.float32), "1-D or 2-D"),  # wrong shape
    (np.array(["a"] * 100), "must be numbers"),  # not numbers
]


@pytest.mark.parametrize("array,message", BAD_ARRAYS)
def test_bad_arrays_are_rejected_with_specific_messages(array, message):
    with pytest.raises(AudioInputError, match=message):
        load_audio(array, input_sample_rate=16_000)


def test_missing_file(tmp_path):
    with pytest.raises(AudioInputError, match="file not found"):
        load_audio(tmp_path / "nope.wav")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(AudioInputError, match="is a folder"):
        load_audio(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioInputError, match="file is empty"):
        load_audio(path)


def test_not_audio_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 50)
    with pytest.raises(AudioInputError, match="not a readable audio file or corrupt"):
        load_audio(path)


def test_truncated_file_is_corrupt(tmp_path, speech):
    data, sr = speech
    path = _write(tmp_path / "clip.flac", data, sr, "PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[:40])  # header only, cut mid-stream
    with pytest.raises(AudioInputError, match="(not a readable audio file or corrupt|empty|only)"):
        load_audio(path)


def test_wav_with_zero_frames(tmp_path):
    path = _write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16_000, "PCM_16")
    with pytest.raises(AudioInputError, match="empty"):
        load_audio(path)


def test_unsupported_sample_rates(tmp_path):
    with pytest.raises(AudioInputError, match="sample rate 4000 Hz is not supported"):
        load_audio(make_tone(200.0, 2.0, sr=4000), input_sample_rate=4000)
    with pytest.raises(AudioInputError, match="requested sample rate"):
        load_audio(make_tone(200.0, 2.0), sample_rate=1000)


def test_wrong_type():
    with pytest.raises(AudioInputError, match="cannot load audio from a dict"):
        load_audio({"samples": []})  # type: ignore[arg-type]


def test_errors_share_the_base_class():
    assert issubclass(AudioInputError, PersonalizationError)
    assert issubclass(AudioInputError, ValueError)


def test_speech_mask_marks_tone_not_silence():
    sr = 16_000
    sig = np.concatenate([np.zeros(sr, np.float32), make_tone(200.0, 1.0, sr=sr)])
    mask = speech_mask(sig, sr)
    assert not mask[:90].any() and mask[110:190].all()


def test_importing_the_package_never_needs_portaudio():
    """Importing the package and audio_io must not import sounddevice (PortAudio may be absent)."""
    code = (
        "import sys, personalization_engine, personalization_engine.audio_io, "
        "personalization_engine.feature_extractor; "
        "assert 'sounddevice' not in sys.modules, 'sounddevice imported'; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
