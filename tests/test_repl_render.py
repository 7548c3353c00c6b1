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
    prof = replace(profile, emotion=EmotionEstimate(label="sad", probability=0.5, distribution=dist, uncertain=False))
    text = _render(render.render_profile(prof, title="x"))
    for label in EMOTION_LABELS:
        assert re.search(rf"{label}\s+[█▏▎▍▌▋▊▉ ]+\s+\d+%", text), label
    assert "sad 50%" in text
    bar = re.search(r"sad\s+([█▏▎▍▌▋▊▉]+)", text.split("sad 50%")[1]).group(1)
    assert len(bar) == 10  # half of the 20-cell bar


def test_an_uncertain_emotion_is_never_shown_as_a_bare_label(profile):
    """Issue 11: an uncertain estimate was headed "calm 37% (uncertain: low confidence)", a label
    first; the panel now heads it "uncertain (calm 0.37, disgust 0.29, sad 0.15)", as the
    fingerprint's ``emotion.text`` does, and a confident one as "calm 81%"."""
    dist = dict(zip(EMOTION_LABELS, [0.37, 0.06, 0.15, 0.01, 0.06, 0.29, 0.06], strict=True))
    unsure = EmotionEstimate(label="calm", probability=0.37, distribution=dist, uncertain=True)
    text = _render(render.render_profile(replace(profile, emotion=unsure), title="x"))
    assert "uncertain (calm 0.37, disgust 0.29, sad 0.15)" in text and "calm 37%" not in text
    sure = EmotionEstimate(label="calm", probability=0.81, distribution=dist, uncertain=False)
    text = _render(render.render_profile(replace(profile, emotion=sure), title="x"))
    assert "calm 81%" in text and "uncertain" not in text


def test_print_analysis_adds_file_facts(profile, voices_dir):
    clip, prof = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    console, buf = make_test_console()
    render.print_analysis(console, "LJ001-0004.flac", clip, prof, emotion_note="off")
    assert "16000 Hz" in buf.getvalue() and "s analysed" in buf.getvalue()



# --------------------------------------------------------------------------- issue 12


@pytest.mark.parametrize("width", [80, 200])
def test_banner_hint_is_whole_at_any_width(width):
    """Bug (issue 12): the banner's footer hint was cut off ("/help for comm─╯") at 80 and 200
    columns (a subtitle longer than the panel)."""
    console, buf = make_test_console(width=width)
    console.print(render.render_banner(device="NVIDIA H200 (139 GiB) · bfloat16", model="0.6b", mode="xvector",
                                       seed=None, out_dir=Path("outputs"), voices_dir=Path("voices"),
                                       interactive=True))
    flat = " ".join(line.strip("│ ") for line in buf.getvalue().splitlines())
    assert "Type a line to speak it · /help for commands · Ctrl-D to quit" in flat


def test_banner_says_missing_weights_with_the_command():
    """Issue 12: missing weights are said in the banner, with the download command."""
    console, buf = make_test_console(width=100)
    missing = ("Qwen/Qwen3-TTS-12Hz-0.6B-Base is not in models/. Download it on a machine with internet access:\n"
               "    huggingface-cli download Qwen/Qwen3-TTS-12Hz-0.6B-Base --local-dir models/Qwen3-TTS-12Hz-0.6B-Base")
    console.print(render.render_banner(device="cpu", model="0.6b", mode="xvector", seed=None, out_dir=Path("o"),
                                       voices_dir=Path("v"), interactive=True, quant="int8", model_missing=missing))
    text = buf.getvalue()
    assert "0.6b · quant int8 · mode xvector" in text  # the resolved quant mode
    assert "weights" in text and "huggingface-cli download Qwen/Qwen3-TTS-12Hz-0.6B-Base" in text
    assert "Voice DNA still works" in text


@pytest.mark.parametrize(("message", "expected"), [
    # a device error that already says files are written: not said twice, no ".;"
    ("no output device found; use --no-play; files are still written.",
     "no output device found; use --no-play; files are still written."),
    ("PortAudio failed.", "PortAudio failed; outputs are still written."),  # one sentence
])
def test_with_hint_never_glues_sentences(message, expected):
    """Bug (issue 12): "...; files are still written.; outputs are still written." and
    "...or use --ref FILE / /load PATH.; use /load PATH instead."."""
    said = render.with_hint(message, "outputs are still written.", unless="still written")
    assert said == expected and ".;" not in said
    mic = render.with_hint("no microphone (install portaudio), or use --ref FILE / /load PATH instead of the "
                           "microphone", "use /load PATH instead.", unless="/load PATH")
    assert mic.count("/load PATH") == 1


def test_analysis_panel_and_json_say_one_speech_duration(voices_dir):
    """Bug (issue 12): `analyze LJ001-0004.flac` showed 4.9 s of speech in the panel and 4.68 s
    in its JSON (the loader's trim estimate vs the profile's)."""
    clip, prof = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    console, buf = make_test_console()
    render.print_analysis(console, "LJ001-0004.flac", clip, prof, emotion_note="off")
    speech = prof.to_dict()["speech_duration_s"]  # what `analyze --json` writes
    assert f"{speech:.1f} s speech" in buf.getvalue()


def test_result_line_shows_first_audio_and_underruns_only_when_played(tmp_path, tiny_checkpoint, voices_dir):
    """Bug (issue 12): with nothing playing, "TTFA" equalled the whole synthesis time and read as
    a stall. First audio (and the pre-buffer's underrun count) appear only for played lines;
    speed is RTF, as everywhere."""
    from personalization_engine.rates import FRAMES_PER_S
    from personalization_engine.session import CloneSession, SessionConfig

    session = CloneSession(SessionConfig(model=str(tiny_checkpoint), out_dir=tmp_path / "out", seed=1))
    session.load_reference(voices_dir / "LJ001-0004.flac")
    assert session.frames_per_s is None
    spoken = session.speak("One short line.", stream=True)
    session.close()
    rtf = spoken.result.real_time_factor
    assert session.frames_per_s == pytest.approx(FRAMES_PER_S / rtf)  # what the pre-buffer is sized by
    quiet = render.render_result(spoken.n, spoken.pair, spoken.result).plain
    assert f"RTF {rtf:.2f}" in quiet and "first audio" not in quiet and "underrun" not in quiet
    heard = render.render_result(spoken.n, spoken.pair, spoken.result, playing=True, underruns=0).plain
    assert f"first audio {spoken.result.time_to_first_audio_s:.2f} s · 0 underruns" in heard and "♪" in heard
    one = render.render_result(spoken.n, spoken.pair, spoken.result, playing=True, underruns=1).plain
    assert "· 1 underrun ·" in one


def test_progress_speaks_rtf_and_first_audio_only_when_streamed():
    """Bug (issue 12): the spinner said "3.26x real-time" while the result line said "RTF 0.31";
    and first audio was shown for lines not streamed. One unit (RTF), first audio only streamed."""
    from personalization_engine.cloning import SynthesisProgress
    from personalization_engine.repl.view import progress_text

    whole = progress_text(SynthesisProgress(frames=50, audio_s=4.0, elapsed_s=1.24, time_to_first_audio_s=1.24))
    assert whole == "50 frames · 4.0 s audio · RTF 0.31" and "real-time" not in whole
    streamed = progress_text(SynthesisProgress(frames=4, audio_s=0.32, elapsed_s=0.4, time_to_first_audio_s=0.4,
                                               streamed=True))
    assert streamed == "4 frames · 0.3 s audio · RTF 1.25 · first audio 0.40 s"
