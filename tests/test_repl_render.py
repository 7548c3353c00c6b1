"""repl/render.py: sparklines, the level meter, the Voice DNA panel, printed on a StringIO console."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalization_engine.analysis import analyze_voice
from personalization_engine.repl import render
from personalization_engine.schema import EMOTION_LABELS, EmotionEstimate

from ._repl_helpers import make_test_console

# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    "values, width, expected",
    [
        (list(range(8)), 40, "▁▂▃▄▅▆▇█"),  # a ramp uses all 8 heights, one per value
        ([1, 2, 3, float("nan"), 3, 2, 1], 7, "▁▅█ █▅▁"),  # unvoiced frames are gaps
        ([5.0] * 10, 10, "▄" * 10),  # a monotone voice is a flat line
        ([float("nan")] * 4, 10, "    "),  # nothing voiced at all
        ([], 10, ""),  # no frames
        (np.repeat([0.0, 1.0], 50), 4, "▁▁██"),  # long contours are averaged into `width` bins
    ],
)
def test_sparkline(values, width, expected):
    assert render.sparkline(values, width=width) == expected


def test_sparkline_keeps_gaps_when_binning():
    contour = np.concatenate([np.linspace(100, 200, 100), np.full(50, np.nan), np.linspace(200, 100, 100)])
    line = render.sparkline(contour, width=25)
    assert len(line) == 25 and line[10:15].strip() == "" and line[0] == "▁" and "█" in line


@pytest.mark.parametrize(
    "level, expected, unexpected",
    [
        ((1.5, -20.0, 0.3, False), "-20.0 dBFS", "CLIPPING"),  # a normal voice
        ((1.5, -100.0, 0.0, False), "silent", "CLIPPING"),  # digital silence (a muted microphone)
        ((2.0, -1.0, 1.0, True), "CLIPPING: move back or lower the input gain", None),  # full scale
    ],
)
def test_level_meter_line(level, expected, unexpected):
    from personalization_engine.audio_device import RecordingLevel

    text = _render(render.render_meter(RecordingLevel(*level), 5.0))
    assert "● REC" in text and f"{level[0]:4.1f} / 5.0 s" in text and expected in text
    assert unexpected is None or unexpected not in text


@pytest.fixture(scope="module")
def profile(voices_dir: Path):
    _, prof = analyze_voice(voices_dir / "2609-156975-0005.flac", emotion=False)  # LibriSpeech, male
    return prof


def _render(renderable: Any) -> str:
    console, buf = make_test_console()
    console.print(renderable)
    return buf.getvalue()


def test_profile_panel_shows_the_voice_dna(profile):
    text = _render(render.render_profile(profile, title="2609-156975-0005", emotion_note="no model in this test"))
    p = profile.prosody
    assert "Voice DNA · 2609-156975-0005" in text
    assert p.pitch.register in text and f"median {p.pitch.median_hz:.0f} Hz" in text
    assert f"{len(p.energy.stress)} stressed syllables" in text
    assert f"{p.rate.syllables_per_s:.1f} syllables/s" in text
    assert "emotion" not in text.lower() or "unavailable (no model in this test)" in text
    contour_line = next(line for line in text.splitlines() if "Contour" in line)
    assert any(c in contour_line for c in render.SPARK_CHARS)


def test_profile_panel_charts_the_seven_emotions(profile):
    dist = dict(zip(EMOTION_LABELS, [0.05, 0.1, 0.5, 0.05, 0.1, 0.1, 0.1], strict=True))
    prof = replace(profile, emotion=EmotionEstimate(label="sad", probability=0.5, distribution=dist, uncertain=True))
    text = _render(render.render_profile(prof, title="x"))
    for label in EMOTION_LABELS:
        assert re.search(rf"{label}\s+[█▏▎▍▌▋▊▉ ]+\s+\d+%", text), label
    assert "sad 50%" in text and "uncertain" in text
    bar = re.search(r"sad\s+([█▏▎▍▌▋▊▉]+)", text.split("sad 50%")[1]).group(1)
    assert len(bar) == 10  # half of the 20-cell bar


def test_print_analysis_adds_file_facts(profile, voices_dir):
    clip, prof = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    console, buf = make_test_console()
    render.print_analysis(console, "LJ001-0004.flac", clip, prof, emotion_note="off")
    assert "16000 Hz" in buf.getvalue() and "s analysed" in buf.getvalue()

