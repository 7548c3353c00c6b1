"""The voice library (voices/NAME/): names, save/load round trips, and damaged folders.

The voices are the adapter's real ``Voice`` records (speaker embedding + Voice DNA of real
speech); the end-to-end "save in one session, use in the next" test with the tiny model is in
``test_repl.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from personalization_engine.analysis import analyze_voice
from personalization_engine.errors import ProfileError
from personalization_engine.fileio import sha256_file
from personalization_engine.voice_library import MANIFEST, PROMPT, REFERENCE, VoiceLibrary, validate_name


@pytest.fixture(scope="module")
def reference(voices_dir: Path) -> tuple[np.ndarray, int, object]:
    """Real speech (ARCTIC aew, male) at its own rate, and its Voice DNA."""
    samples, sr = sf.read(str(voices_dir / "cmu_arctic_us_aew_a0001.flac"), dtype="float32")
    _, profile = analyze_voice((samples, sr), emotion=False)
    return samples, sr, profile


def _voice(profile: object, *, seed: int = 0, mode: str = "xvector") -> object:
    from personalization_engine.tts.voice import Voice

    rng = np.random.default_rng(seed)
    return Voice(
        mode=mode,
        speaker_embedding=rng.standard_normal(64).astype(np.float32),
        ref_codes=rng.integers(0, 2048, size=(40, 16)).astype(np.int64) if mode == "icl" else None,
        transcript="Author of the danger trail, Philip Steels, etc." if mode == "icl" else None,
        name="aew",
        reference_sha256="cd" * 32,
        profile=profile,
        model_id="tiny-test",
    )


@pytest.fixture()
def library(tmp_path: Path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


@pytest.fixture()
def saved(library: VoiceLibrary, reference) -> Path:
    samples, sr, profile = reference
    return library.save("aew", _voice(profile), reference_audio=(samples, sr), reference_name="a0001.flac",
                        model_id="tiny-test")


@pytest.mark.parametrize("name", ["anna", "studio_take-2", "A1", "x" * 64])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",  # empty
        "../evil",  # path traversal
        "a/b",  # a sub-folder
        "..",  # the parent folder
        ".hidden",  # a hidden folder (and the library's own temporaries)
        "-x",  # looks like an option
        "two words",  # a space
        "x" * 65,  # too long
        "café",  # non-ASCII letters
        "voice.json",  # a dot
        "C:\\x",  # a Windows path
    ],
)
def test_invalid_names_are_refused(library, reference, name):
    with pytest.raises(ProfileError, match="invalid voice name"):
        validate_name(name)
    samples, sr, profile = reference
    with pytest.raises(ProfileError, match="invalid voice name"):
        library.save(name, _voice(profile), reference_audio=(samples, sr))
    assert not library.root.exists() or not any(library.root.iterdir())


@pytest.mark.parametrize("mode", ["xvector", "icl"])
def test_save_then_load_gives_back_the_same_voice(library, reference, mode):
    samples, sr, profile = reference
    voice = _voice(profile, mode=mode)
    folder = library.save("aew", voice, reference_audio=(samples, sr), reference_name="a0001.flac",
                          model_id="tiny-test")
    assert folder == library.root / "aew"
    # The Voice DNA is stored once, in the prompt's voice.json (no profile.json, none in the manifest).
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, REFERENCE, PROMPT])
    assert "voice_dna" not in json.loads((folder / MANIFEST).read_text())
    loaded, entry = library.load("aew")
    np.testing.assert_array_equal(loaded.speaker_embedding, voice.speaker_embedding)
    assert (loaded.mode, loaded.transcript, loaded.reference_sha256) == (mode, voice.transcript, voice.reference_sha256)
    if mode == "icl":
        np.testing.assert_array_equal(loaded.ref_codes, voice.ref_codes)
    assert loaded.profile.prosody.pitch.median_hz == pytest.approx(profile.prosody.pitch.median_hz, abs=0.01)
    assert (entry.name, entry.mode, entry.model_id, entry.reference_name) == ("aew", mode, "tiny-test", "a0001.flac")
    assert entry.voice_dna["pitch"]["register"] == profile.prosody.pitch.register
    assert entry.profile is not None and entry.profile.to_dict(contours=True) == loaded.profile.to_dict(contours=True)
    back, back_sr = sf.read(str(entry.reference_path), dtype="float32")
    assert back_sr == sr and np.max(np.abs(back - samples)) < 1e-4  # PCM 16
    assert json.loads((folder / PROMPT / "voice.json").read_text())["profile"]["pitch"]["contour"]["f0_hz"]


def _save_format_1(folder: Path, voice, samples: np.ndarray, sr: int) -> None:
    """A voice folder exactly as format 1 wrote it: the Voice DNA in profile.json, the manifest and the prompt."""
    folder.mkdir(parents=True)
    sf.write(folder / REFERENCE, samples, sr, subtype="PCM_16")
    voice.save(folder / PROMPT)
    (folder / "profile.json").write_text(json.dumps(voice.profile.to_dict(contours=True), indent=2) + "\n")
    files = sorted(str(p.relative_to(folder)).replace("\\", "/") for p in folder.rglob("*") if p.is_file())
    manifest = {
        "format": 1, "name": folder.name, "created_at": "2026-01-25T10:15:30+00:00", "mode": voice.mode,
        "transcript": voice.transcript, "model_id": "tiny-test",
        "reference": {"name": "a0001.flac", "sha256": voice.reference_sha256},
        "voice_dna": voice.profile.prosody.to_dict(),
        "files": {rel: sha256_file(folder / rel) for rel in files},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_format_1_folders_still_load(library, reference):
    """Regression guard for the one-copy layout: voices saved with profile.json + manifest voice_dna still load."""
    samples, sr, profile = reference
    voice = _voice(profile, mode="icl")
    _save_format_1(library.root / "old", voice, samples, sr)
    loaded, entry = library.load("old")
    np.testing.assert_array_equal(loaded.ref_codes, voice.ref_codes)
    assert (entry.mode, entry.transcript, entry.reference_name) == ("icl", voice.transcript, "a0001.flac")
    assert entry.voice_dna == json.loads((library.root / "old" / MANIFEST).read_text())["voice_dna"]
    (library.root / "old" / "profile.json").write_text("{}")  # still hash-checked, like every listed file
    with pytest.raises(ProfileError, match="profile.json was changed"):
        library.load("old")


def test_unknown_manifest_format_is_refused(library, saved):
    manifest = json.loads((saved / MANIFEST).read_text())
    (saved / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ProfileError, match="format 99; this engine reads"):
        library.entry("aew")


def test_existing_voice_needs_force_and_is_replaced_whole(library, reference, saved):
    samples, sr, profile = reference
    with pytest.raises(ProfileError, match="already exists.*--force"):
        library.save("aew", _voice(profile, seed=1), reference_audio=(samples, sr))
    library.save("aew", _voice(profile, seed=1), reference_audio=(samples, sr), overwrite=True)
    loaded, _ = library.load("aew")
    np.testing.assert_array_equal(loaded.speaker_embedding, _voice(profile, seed=1).speaker_embedding)
    assert [p.name for p in library.root.iterdir()] == ["aew"]  # no temporary or old folders left


def test_a_failed_save_leaves_no_folder(library, reference):
    samples, _, profile = reference
    with pytest.raises(sf.LibsndfileError):
        library.save("broken", _voice(profile), reference_audio=(samples, 0))  # sample rate 0: sf.write fails
    assert library.names() == [] and list(library.root.iterdir()) == []


def test_listing_shows_damaged_voices_as_errors(library, reference, saved):
    samples, sr, profile = reference
    library.save("second", _voice(profile), reference_audio=(samples, sr))
    (library.root / "second" / MANIFEST).write_text("{not json")
    (library.root / "not a voice").mkdir()  # invalid names are ignored
    assert library.names() == ["aew", "second"]
    entries = library.entries()
    assert entries[0].name == "aew"
    assert isinstance(entries[1], ProfileError) and "unreadable" in str(entries[1])


def test_unknown_voice_names_the_saved_ones(library, saved):
    with pytest.raises(ProfileError, match="no voice named 'bob'.*saved voices: aew"):
        library.load("bob")


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_prompt_json_and_rehash(folder: Path) -> None:
    """Damage the prompt's own JSON but update the manifest hash: only the Voice loader can tell."""
    import hashlib

    prompt = folder / PROMPT / "voice.json"
    meta = json.loads(prompt.read_text())
    meta["schema_version"] = "9.0"
    prompt.write_text(json.dumps(meta))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][f"{PROMPT}/voice.json"] = hashlib.sha256(prompt.read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda f: (f / PROMPT / "voice.safetensors").unlink(), "prompt/voice.safetensors is missing"),
        (lambda f: _flip_last_byte(f / PROMPT / "voice.safetensors"), "changed or is corrupt"),
        (lambda f: _flip_last_byte(f / REFERENCE), "reference.wav was changed or is corrupt"),
        (lambda f: (f / MANIFEST).unlink(), "manifest.json is missing"),
        (lambda f: (f / MANIFEST).write_text("{truncated"), "manifest.json is unreadable"),
        (lambda f: (f / MANIFEST).write_text("[1, 2]"), "not a JSON object"),
        (lambda f: (f / MANIFEST).write_text('{"name": "aew", "created_at": "x", "mode": "xvector"}'),
         "lists no files"),
        (lambda f: (f / MANIFEST).write_text('{"name": "aew"}'), "lacks field"),
        (_rewrite_prompt_json_and_rehash, "voice prompt does not load"),
    ],
)
def test_damaged_voice_folder_is_a_clear_error(library, saved, damage, match):
    damage(saved)
    with pytest.raises(ProfileError, match=f"voice .aew. in .* is damaged: .*{match}.*/voice save aew --force"):
        library.load("aew")
