"""Fingerprints and the atomic pair writer, on real speech.

Every written JSON is validated against the committed JSON Schema. Failures are real where the
machine allows it (a folder under a file, a read-only folder, a file-size limit that makes the
second write fail for real) and injected through the writer's fault hook otherwise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from personalization_engine import fingerprint as fpmod
from personalization_engine.analysis import analyze_voice
from personalization_engine.errors import OutputWriteError
from personalization_engine.fileio import move_noreplace
from personalization_engine.schema import (
    FINGERPRINT_SCHEMA_VERSION,
    GenerationResult,
    ModelInfo,
    ReferenceInfo,
    SynthesisTimings,
)

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def validator() -> object:
    schema = fpmod.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def reference(voices_dir: Path) -> ReferenceInfo:
    """A real reference (LJ Speech, female) with its Voice DNA."""
    _, profile = analyze_voice(voices_dir / "LJ001-0004.flac")
    return ReferenceInfo(name="LJ001-0004.flac", kind="file", sha256="ab" * 32, profile=profile,
                         emotion_unavailable=None if profile.emotion else "no emotion model in this test")


@pytest.fixture(scope="module")
def speech_24k(voices_dir: Path) -> GenerationResult:
    """The reference clip itself standing in for a perfect clone (24 kHz)."""
    from personalization_engine.audio_io import load_audio

    clip = load_audio(voices_dir / "LJ001-0004.flac", sample_rate=24_000)
    return _result(clip.samples, 24_000)


def _result(audio: np.ndarray, sr: int) -> GenerationResult:
    dur = len(audio) / sr
    return GenerationResult(audio=audio.astype(np.float32), sample_rate=sr, segment_idx=0, frames=int(dur * 12.5),
                            audio_duration_s=dur, processing_time_s=dur / 2, real_time_factor=0.5,
                            peak_memory_gb=0.0, is_final=True, text="x", similarity=0.8)


def _fingerprint(reference: ReferenceInfo, result: GenerationResult, *, analyze: bool = True) -> fpmod.Fingerprint:
    return fpmod.build_fingerprint(
        text="Printing, in the only sense with which we are at present concerned.",
        result=result, reference=reference,
        model=ModelInfo("tiny-test", "tiny", "float32", "cpu", "xvector", seed=7),
        timings=SynthesisTimings(synthesis_s=1.2, real_time_factor=0.5, time_to_first_audio_s=0.3,
                                 analysis_s=0.4, prompt_s=0.2),
        analyze_output=analyze,
    )


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_pair_is_complete_and_matches_the_schema(tmp_path, reference, speech_24k, validator):
    pair = fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k), speech_24k.audio, 24_000)
    assert pair.wav_path.stem == pair.json_path.stem and pair.stem.startswith("cloned_")
    assert _listing(tmp_path) == sorted([pair.wav_path.name, pair.json_path.name])  # no temp or lock file
    data = json.loads(pair.json_path.read_text(encoding="utf-8"))
    validator.validate(data)
    info = sf.info(str(pair.wav_path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (24_000, 1, "PCM_16", "WAV")
    assert data["audio"]["file"] == pair.wav_path.name
    assert data["audio"]["sha256"] == hashlib.sha256(pair.wav_path.read_bytes()).hexdigest()
    assert data["audio"]["duration_s"] == pytest.approx(info.frames / 24_000, abs=1e-3)
    assert data["schema_version"] == FINGERPRINT_SCHEMA_VERSION
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert data["model"]["seed"] == 7 and data["similarity"] == pytest.approx(0.8)
    # The clone's own Voice DNA is measured and compared with the reference's. The "clone" is
    # the reference resampled 16 -> 24 -> 16 kHz, so pitch and rate must agree closely.
    assert data["output"]["voice_dna"]["pitch"]["register"] == data["reference"]["voice_dna"]["pitch"]["register"]
    assert abs(data["comparison"]["pitch_median_semitones"]) < 0.2
    assert data["comparison"]["speaking_rate_ratio"] == pytest.approx(1.0, abs=0.1)
    assert data["timings"]["output_analysis_s"] > 0
    back = fpmod.verify_pair(pair.json_path)
    assert isinstance(back, fpmod.Fingerprint) and back.text.startswith("Printing")
    assert back.to_dict() == data  # the records read back write the same JSON


def test_unanalysable_output_records_null_and_the_reason(tmp_path, reference, validator, rng):
    """Noise (what a random-weight model makes) gives a null Voice DNA plus why, not a crash."""
    noise = _result((0.01 * rng.standard_normal(12_000)).astype(np.float32), 24_000)
    pair = fpmod.write_pair(tmp_path, _fingerprint(reference, noise), noise.audio, 24_000)
    data = json.loads(pair.json_path.read_text(encoding="utf-8"))
    validator.validate(data)
    assert data["output"]["voice_dna"] is None
    assert "Error" in data["output"]["voice_dna_error"]
    assert data["comparison"]["pitch_median_semitones"] is None


def test_other_sample_rates_are_written_at_24k(tmp_path, reference, speech_24k, validator):
    from personalization_engine.audio_io import resample

    audio16 = resample(speech_24k.audio, 24_000, 16_000)
    pair = fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k, analyze=False), audio16, 16_000)
    info = sf.info(str(pair.wav_path))
    assert info.samplerate == 24_000
    assert info.frames == pytest.approx(len(speech_24k.audio), abs=5)
    validator.validate(json.loads(pair.json_path.read_text()))


def test_many_writers_in_the_same_millisecond_never_collide(tmp_path, reference, speech_24k, validator):
    fp = _fingerprint(reference, speech_24k, analyze=False)
    short = speech_24k.audio[:2400]
    pairs: list[fpmod.OutputPair] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(10):
            pair = fpmod.write_pair(tmp_path, fp, short, 24_000)
            with lock:
                pairs.append(pair)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stems = {p.stem for p in pairs}
    assert len(stems) == 40
    names = _listing(tmp_path)
    assert len(names) == 80 and not [n for n in names if n.startswith(".")]
    for p in pairs:
        validator.validate(fpmod.verify_pair(p.json_path).to_dict())


def test_existing_files_are_never_overwritten(tmp_path):
    """Regression guard: a stem whose wav or json already exists is skipped, never reused."""
    now = datetime(2026, 1, 25, 10, 15, 30, 123000)
    (tmp_path / "cloned_20260125_101530_123_00.wav").write_bytes(b"keep me")
    (tmp_path / "cloned_20260125_101530_123_01.json").write_bytes(b"keep me too")
    stem, lock = fpmod._reserve_stem(tmp_path, "cloned", now)
    assert stem == "cloned_20260125_101530_123_02"
    assert lock.exists()
    src = tmp_path / "new.tmp"
    src.write_bytes(b"new")
    with pytest.raises(FileExistsError):
        move_noreplace(src, tmp_path / "cloned_20260125_101530_123_00.wav")
    assert (tmp_path / "cloned_20260125_101530_123_00.wav").read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "stage",
    [
        "wav_tmp",  # the wav is written to its temporary name, the json is not yet
        "json_tmp",  # both temporaries exist, nothing renamed
        "wav_final",  # between the two renames: the final wav exists, its json does not
    ],
)
def test_disk_full_at_any_step_leaves_nothing(tmp_path, reference, speech_24k, stage):
    def fail(at: str) -> None:
        if at == stage:
            raise OSError(errno.ENOSPC, "No space left on device")

    fp = _fingerprint(reference, speech_24k, analyze=False)
    with pytest.raises(OutputWriteError, match="disk is full.*Nothing was kept"):
        fpmod.write_pair(tmp_path, fp, speech_24k.audio, 24_000, fault_hook=fail)
    assert _listing(tmp_path) == []


def test_ctrl_c_between_the_renames_leaves_nothing(tmp_path, reference, speech_24k):
    def interrupt(at: str) -> None:
        if at == "wav_final":
            assert any(p.suffix == ".wav" for p in tmp_path.iterdir())  # the wav had been moved
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k, analyze=False), speech_24k.audio,
                         24_000, fault_hook=interrupt)
    assert _listing(tmp_path) == []


def test_output_folder_under_a_file_is_a_clear_error(tmp_path, reference, speech_24k):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputWriteError, match="cannot create the output folder.*not_a_folder"):
        fpmod.write_pair(blocker / "out", _fingerprint(reference, speech_24k, analyze=False),
                         speech_24k.audio, 24_000)


@pytest.mark.skipif(sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="root can write into read-only folders")
def test_read_only_folder_is_a_clear_error(tmp_path, reference, speech_24k):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputWriteError, match="permission denied"):
            fpmod.write_pair(folder, _fingerprint(reference, speech_24k, analyze=False), speech_24k.audio, 24_000)
        assert _listing(folder) == []
    finally:
        folder.chmod(0o755)


_FSIZE_SCRIPT = r"""
import json, resource, signal, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from personalization_engine import fingerprint as f
from personalization_engine.errors import OutputWriteError
from personalization_engine.schema import GenerationResult, ModelInfo, ReferenceInfo, SynthesisTimings

audio = (0.1 * np.sin(np.arange(1000) / 10.0)).astype(np.float32)  # 42 ms: a 2 KB wav
res = GenerationResult(audio, 24000, 0, 1, 0.042, 0.02, 0.5, 0.0, True)
fp = f.build_fingerprint(text="a line " * 500, result=res, reference=ReferenceInfo("r.wav", "file", None),
                         model=ModelInfo("m", "tiny", "float32", "cpu", "xvector"),
                         timings=SynthesisTimings(0.05, 0.5), analyze_output=False)
wav_bytes, _ = f._encode_wav(audio, 24000)
assert len(wav_bytes) < 3000
# Files may grow to 3000 bytes: the wav fits, the json (with its 3500-character text) does not,
# so the second write fails for real (EFBIG) after the wav was written.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
try:
    f.write_pair(sys.argv[1], fp, audio, 24000)
except OutputWriteError as exc:
    print("ERROR", exc)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_real_write_failure_of_the_json_leaves_no_wav(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(out), str(REPO)], capture_output=True,
                          text=True, timeout=120)
    assert "ERROR could not write" in proc.stdout, proc.stdout + proc.stderr
    assert _listing(out) == []


def test_verify_pair_detects_a_changed_wav(tmp_path, reference, speech_24k):
    pair = fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k, analyze=False), speech_24k.audio, 24_000)
    data = bytearray(pair.wav_path.read_bytes())
    data[-1] ^= 0xFF
    pair.wav_path.write_bytes(bytes(data))
    with pytest.raises(OutputWriteError, match="differs from its fingerprint"):
        fpmod.verify_pair(pair.json_path)


def test_verify_pair_refuses_a_json_that_is_not_a_fingerprint(tmp_path, reference, speech_24k):
    pair = fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k, analyze=False), speech_24k.audio, 24_000)
    data = json.loads(pair.json_path.read_text(encoding="utf-8"))
    del data["model"]
    pair.json_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(OutputWriteError, match="not a readable output pair.*KeyError.*model"):
        fpmod.verify_pair(pair.json_path)


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros(0, dtype=np.float32), "empty"),  # nothing synthesized
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),  # a diverged model
    ],
)
def test_bad_audio_is_refused_before_anything_is_written(tmp_path, reference, speech_24k, audio, match):
    from personalization_engine.errors import AudioInputError

    with pytest.raises(AudioInputError, match=match):
        fpmod.write_pair(tmp_path, _fingerprint(reference, speech_24k, analyze=False), audio, 24_000)
    assert _listing(tmp_path) == []
