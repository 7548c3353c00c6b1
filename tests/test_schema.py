"""The typed records: to_dict -> from_dict round trips, and the JSON Schema kept in sync with to_dict.

Why the fingerprint layout is not generated from one side: the records' ``to_dict`` methods write
the JSON (key names, nesting, rounding), and ``fingerprint.schema.json`` is the contract handed
to other programs, holding what a dataclass field cannot say (patterns, ranges, enums, the
"null Voice DNA comes with a reason" rule). Generating the schema would need those constraints
restated in field metadata: the same duplication, less readable. So the writer is the source of
the layout and :func:`test_schema_describes_exactly_what_to_dict_writes` proves, key by key at
every level and in both directions, that the schema describes exactly that layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalization_engine import fingerprint as fpmod
from personalization_engine.analysis import analyze_voice
from personalization_engine.schema import (
    EMOTION_LABELS,
    EmotionEstimate,
    EnergyStats,
    Fingerprint,
    ModelInfo,
    OutputAudio,
    PitchContour,
    PitchStats,
    ProfileComparison,
    ProsodyFeatures,
    RateStats,
    ReferenceInfo,
    StressPoint,
    SynthesisTimings,
    VoiceProfile,
)

jsonschema = pytest.importorskip("jsonschema")


def _profile(median_hz: float, *, emotion: str | None = "calm", nan_pitch: bool = False) -> VoiceProfile:
    """A hand-made profile with awkward values: long decimals, NaN frames, NumPy scalars."""
    f0 = np.array([median_hz * 0.98765, np.nan, median_hz * 1.0123456, np.nan])
    nan = float("nan")
    pitch = PitchStats(
        median_hz=nan if nan_pitch else np.float64(median_hz + 0.004567), mean_hz=median_hz * 1.01234,
        std_hz=12.3456789, p5_hz=median_hz * 0.8 + 0.0049, p95_hz=median_hz * 1.3 - 0.0049,
        range_semitones=8.123456, voiced_fraction=0.61234, register="alto",
        contour=PitchContour(times_s=np.arange(4) * 0.01, f0_hz=f0, voiced=np.isfinite(f0)),
    )
    energy = EnergyStats(mean_db=-23.45678, dynamic_range_db=31.2345, times_s=np.arange(3) * 0.0123,
                         rms_db=np.array([-30.04, np.nan, -20.96]),
                         stress=(StressPoint(0.1234, 1.0), StressPoint(0.98765, 0.45678)))
    rate = RateStats(syllable_count=17, syllables_per_s=4.56789, articulation_rate=5.4321, pause_count=2,
                     pause_ratio=0.123456, speech_duration_s=3.3333)
    est = None
    if emotion is not None:
        dist = {label: 0.1 / (len(EMOTION_LABELS) - 1) for label in EMOTION_LABELS}
        dist[emotion] = 0.9
        est = EmotionEstimate(emotion, 0.9, dist, uncertain=False)
    return VoiceProfile(ProsodyFeatures(3.71234, 3.3333, 16_000, pitch, energy, rate), est, analysis_time_s=0.123456)


def _fingerprint(ref: VoiceProfile | None, out: VoiceProfile | None) -> Fingerprint:
    return Fingerprint(
        created_at="2026-01-25T10:15:30.123+01:00", text="Hello there.", language="english",
        reference=ReferenceInfo("a0001.flac", "file", "ab" * 32, "Hello.", ref,
                                None if ref is not None and ref.emotion else "no emotion model"),
        model=ModelInfo("tiny-test", "tiny", "float32", "cpu", "icl", seed=7),
        timings=SynthesisTimings(1.23456, 0.56789, time_to_first_audio_s=0.3, analysis_s=None, prompt_s=0.2),
        similarity=0.876543, output_profile=out,
        output_analysis_error=None if out is not None else "FeatureExtractionError: no voiced speech",
        output_emotion_unavailable=None if out is not None and out.emotion else "no emotion model",
        audio=OutputAudio("cloned_20260125_101530_123_00.wav", "cd" * 32, 2.5, 24_000),
        comparison=ProfileComparison.between(ref, out),
    )


FINGERPRINTS = {
    "full": lambda: _fingerprint(_profile(210.0), _profile(180.0, emotion="happy")),
    "no profiles": lambda: _fingerprint(None, None),
    "unvoiced clone, no emotion": lambda: _fingerprint(_profile(210.0, emotion=None), _profile(0.0, nan_pitch=True)),
}


@pytest.mark.parametrize("contours", [True, False])
def test_voice_profile_round_trips(contours: bool) -> None:
    profile = _profile(210.0)
    d = profile.to_dict(contours=contours)
    back = VoiceProfile.from_dict(d)
    assert back.to_dict(contours=contours) == d
    assert back.prosody.pitch.median_hz == pytest.approx(profile.prosody.pitch.median_hz, abs=0.005)
    assert back.prosody.rate.syllable_count == 17 and back.prosody.pitch.register == "alto"
    assert back.emotion is not None and profile.emotion is not None
    assert back.emotion.label == profile.emotion.label
    assert back.emotion.distribution == pytest.approx(profile.emotion.distribution, abs=5e-5)  # rounded to 4 places
    assert [s.time_s for s in back.prosody.energy.stress] == [0.123, 0.988]
    if contours:  # NaN (unvoiced) frames come back as NaN, and as unvoiced
        np.testing.assert_array_equal(back.prosody.pitch.contour.voiced, [True, False, True, False])
        assert np.isnan(back.prosody.energy.rms_db[1])


def test_range_hz_is_derived_from_the_written_percentiles() -> None:
    """Regression guard: range_hz was p95 - p5 before rounding, so reading back changed it by 0.01."""
    d = _profile(210.0).to_dict()["pitch"]
    assert d["range_hz"] == round(d["p95_hz"] - d["p5_hz"], 2)


def test_real_speech_profile_round_trips(voices_dir: Path) -> None:
    _, profile = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    d = profile.to_dict(contours=True)
    assert VoiceProfile.from_dict(d).to_dict(contours=True) == d


@pytest.mark.parametrize("case", list(FINGERPRINTS))
def test_fingerprint_round_trips_and_validates(case: str) -> None:
    fp = FINGERPRINTS[case]()
    d = fp.to_dict()
    back = Fingerprint.from_dict(d)
    assert back.to_dict() == d
    assert (back.text, back.model, back.audio, back.reference.name) == (fp.text, fp.model, fp.audio, fp.reference.name)
    assert back.timings == SynthesisTimings.from_dict(fp.timings.to_dict())
    jsonschema.Draft202012Validator(fpmod.load_schema()).validate(d)


def test_comparison_is_computed_at_full_precision_and_kept() -> None:
    """Regression guard: the comparison was recomputed from rounded values on every to_dict."""
    ref, out = _profile(210.0), _profile(180.0)
    comparison = ProfileComparison.between(ref, out)
    expected = 12 * np.log2(out.prosody.pitch.median_hz / ref.prosody.pitch.median_hz)
    assert comparison.pitch_median_semitones == pytest.approx(expected, rel=1e-12)
    assert comparison.emotion_match is True
    assert ProfileComparison.between(ref, None) == ProfileComparison()


@pytest.mark.parametrize(
    "drop",
    [
        ("model",),  # a whole section
        ("audio", "sha256"),  # the hash verify_pair needs
        ("timings", "synthesis_s"),  # a required number
    ],
)
def test_from_dict_refuses_a_missing_key(drop: tuple[str, ...]) -> None:
    d = FINGERPRINTS["full"]().to_dict()
    parent = d
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    with pytest.raises(KeyError, match=drop[-1]):
        Fingerprint.from_dict(d)


def _resolve(schema: dict[str, Any], node: dict[str, Any], value: Any) -> dict[str, Any]:
    """Follow ``$ref`` and pick the non-null branch of an ``anyOf`` for a non-null value."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        return _resolve(schema, schema["$defs"][name], value)
    if "anyOf" in node and value is not None:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        assert len(branches) == 1, node
        return _resolve(schema, branches[0], value)
    return node


def _walk(schema: dict[str, Any], node: dict[str, Any], value: Any, path: str, seen: set[str]) -> None:
    node = _resolve(schema, node, value)
    if isinstance(value, dict) and "properties" in node:
        props = set(node["properties"])
        assert set(value) == props, (
            f"{path or '/'}: to_dict writes {sorted(set(value) - props)} that the schema lacks; "
            f"the schema has {sorted(props - set(value))} that to_dict does not write")
        assert set(node.get("required", ())) <= set(value), path
        seen.add(path)
        for key, sub in value.items():
            _walk(schema, node["properties"][key], sub, f"{path}/{key}", seen)
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            _walk(schema, node["items"], item, f"{path}/{i}", seen)


def test_schema_describes_exactly_what_to_dict_writes() -> None:
    """Every object to_dict writes has exactly the schema's properties, at every level."""
    schema = fpmod.load_schema()
    seen: set[str] = set()
    for make in FINGERPRINTS.values():
        _walk(schema, schema, make().to_dict(), "", seen)
    # The walk reached every object of the layout (a typo in a $ref would silently skip one).
    expected = {"", "/audio", "/reference", "/output", "/comparison", "/model", "/timings"}
    for side in ("/reference", "/output"):
        expected |= {f"{side}/voice_dna", f"{side}/voice_dna/pitch", f"{side}/voice_dna/energy",
                     f"{side}/voice_dna/rate", f"{side}/emotion", f"{side}/emotion/distribution"}
    expected |= {"/reference/voice_dna/energy/stress/0", "/reference/voice_dna/energy/stress/1"}
    assert expected <= seen, sorted(expected - seen)
