"""repl/commands.py and the prompt loop, driven by scripted input on a StringIO console.

Scripted sessions run :func:`repl.run` with a Console writing to a StringIO and a list of typed
lines: every command, bad arguments, Ctrl-D/Ctrl-C, a bug, and a session on the tiny
real-architecture checkpoint (``tiny_checkpoint`` in conftest.py).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from personalization_engine import repl

from ._repl_helpers import check_pairs, make_test_console, pairs, scripted


def test_bad_commands_and_inputs_never_end_the_session(tmp_path, voices_dir):
    """Regression guard: typos, bad arguments and missing voices print a one-line hint."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    steps = [
        ("", None),
        ("/bogus", "unknown command /bogus"),
        ("/infp", "did you mean /info?"),
        ("hello", "no voice yet"),
        ("//slash", "no voice yet"),
        (f"/load {tmp_path / 'missing.wav'}", "file not found"),
        (f"/load {corrupt}", "not a readable audio file or corrupt"),
        ('/load "unclosed', "cannot parse"),
        ("/load", "usage: /load PATH"),
        ("/mode icl", "ICL mode needs the reference's transcript"),
        ("/mode loud", "unknown mode 'loud'"),
        ("/lang klingon", "unknown language 'klingon'"),
        ("/lang en", "language: en"),
        ("/play", "nothing to play yet"),
        ("/stop", "stopped"),
        ("/record 0.2", "out of range 1-60"),
        ("/record soon", "is not a number"),
        ("/voice save anna", "no voice to save yet"),
        ("/voice save ../evil", "invalid voice name"),
        ("/voice use nobody", "no voice named 'nobody'"),
        ("/voice dance", "usage: /voice save NAME"),
        ("/voices", "no saved voices"),
        ("/info", "no voice yet"),
        ("/model", "usage: /model NAME|DIR"),
        ("/transcript", "transcript cleared; mode xvector"),
        ("/help", "/voice save NAME [--force]"),
    ]
    console, buf = make_test_console()
    options = repl.ReplOptions(ref=str(tmp_path / "typo.wav"), out_dir=tmp_path / "out", voices_dir=tmp_path / "voices",
                               play=False, model=str(tmp_path / "no-model"))
    assert repl.run(options, console=console, input_fn=scripted([s for s, _ in steps] + ["/quit"])) == 0
    text = buf.getvalue()
    assert "typo.wav: file not found" in text  # a bad --ref is reported, the session goes on
    pos = 0
    for typed, expected in steps:
        if expected:
            found = text.find(expected, pos)
            assert found >= 0, f"{typed!r}: {expected!r} not in output after position {pos}:\n{text[pos:]}"
            pos = found
    assert "Outputs are in" in text and "(0 pairs written this session)" in text
    assert not (tmp_path / "out").exists() or pairs(tmp_path / "out") == []


@pytest.mark.parametrize("end", [EOFError, KeyboardInterrupt])
def test_ctrl_d_and_ctrl_c_at_the_prompt_exit_cleanly(tmp_path, end):
    console, buf = make_test_console()
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", play=False)
    assert repl.run(options, console=console, input_fn=scripted(["/help", end])) == 0
    assert f"Outputs are in {(tmp_path / 'out').resolve()}/" in buf.getvalue()


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_prints_one_line_and_the_traceback_only_with_debug(tmp_path, debug):
    console, buf = make_test_console()
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", play=False, debug=debug)
    assert repl.run(options, console=console, input_fn=scripted([42, "/help"])) == 0  # 42: not a str
    text = buf.getvalue()
    assert "unexpected error: AttributeError" in text or "AttributeError" in text
    assert ("Traceback" in text) == debug
    assert "/voice save NAME" in text  # the session went on


# --------------------------------------------------------------------------- with the tiny model


def test_scripted_session_with_the_tiny_model(tmp_path, tiny_checkpoint, voices_dir):
    """Two lines -> two valid pairs; mode and transcript commands rebuild the voice prompt."""
    ref = voices_dir / "LJ001-0004.flac"
    transcript = dict(line.split("\t")[::2] for line in (voices_dir / "transcripts.tsv").read_text().splitlines()[1:])
    console, buf = make_test_console()
    lines = ["Hello there.", f"/transcript {transcript['LJ001-0004.flac']}", "/info", "Second line!",
             "/play 3", "/play 1", "/lang en", f"/model {tiny_checkpoint}", "/mode xvector", "Third line.", "/quit"]
    options = repl.ReplOptions(ref=str(ref), model=str(tiny_checkpoint), out_dir=tmp_path / "out",
                               voices_dir=tmp_path / "voices", play=False, seed=5)
    assert repl.run(options, console=console, input_fn=scripted(lines)) == 0
    text = buf.getvalue()
    assert "3 is out of range 1-2; usage: /play [N]" in text
    assert "playback is off (--no-play); cannot play cloned_" in text
    assert text.count("✔ model ") == 2 and text.count("voice prompt ready: LJ001-0004.flac · xvector") == 2
    # Not played (--no-play): no "first audio", which would only repeat the synthesis time.
    assert re.search(r"✔ 1: cloned_\d{8}_\d{6}_\d{3}_\d{2}\.wav · \d+\.\d s · RTF \d+\.\d\d · similarity", text)
    assert "first audio" not in text and "TTFA" not in text
    assert "voice prompt ready: LJ001-0004.flac · icl" in text and "transcript “produced the block" in text
    first, second, third = check_pairs(tmp_path / "out", 3)
    assert (first["model"]["mode"], second["model"]["mode"], third["model"]["mode"]) == ("xvector", "icl", "xvector")
    assert (first["language"], third["language"]) == ("auto", "en")
    assert second["reference"]["transcript"] == transcript["LJ001-0004.flac"]
    assert first["reference"]["sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert first["reference"]["voice_dna"]["pitch"]["register"] in ("alto", "mezzo", "soprano")
    assert first["model"]["seed"] == 5 and first["timings"]["synthesis_s"] > 0
    assert 0 < first["timings"]["time_to_first_audio_s"] <= first["timings"]["synthesis_s"]


# --------------------------------------------------------------------------- issue 12: rough edges


def _run_lines(tmp_path, lines, **options):
    console, buf = make_test_console()
    options.setdefault("model", str(tmp_path / "no-model"))
    opts = repl.ReplOptions(out_dir=tmp_path / "out", voices_dir=tmp_path / "voices", play=False, **options)
    code = repl.run(opts, console=console, input_fn=scripted([*lines, "/quit"]))
    return code, buf.getvalue()


def test_play_refuses_a_fraction(tmp_path, tiny_checkpoint, voices_dir):
    """Bug (issue 12): `/play 1.5` played output 1 (int() ran before the whole-number check)."""
    code, text = _run_lines(tmp_path, ["One.", "/play 1.5", "/play 1"], ref=str(voices_dir / "LJ001-0004.flac"),
                            model=str(tiny_checkpoint))
    assert code == 0
    assert "1.5 is not a whole number; usage: /play [N]" in text
    assert "cannot play cloned_" in text  # /play 1 is accepted (and says playback is off)


@pytest.mark.parametrize(("typed", "expected", "unexpected"), [
    ("/mode", "mode xvector (choices: xvector, icl; /mode NAME to switch)", "unknown mode ''"),  # no argument
    ("/foo", "unknown command /foo; type /help", "did you mean"),  # no close command
    ("/mdoe", "did you mean /mode?", None),  # two letters swapped
    ("/hepl", "did you mean /help?", None),
])
def test_mode_alone_and_only_close_suggestions(tmp_path, typed, expected, unexpected):
    """Bugs (issue 12): `/mode` alone said "unknown mode ''"; `/foo` suggested /info."""
    _, text = _run_lines(tmp_path, [typed])
    assert expected in text
    assert unexpected is None or unexpected not in text


def test_help_explains_the_double_slash_and_the_speed_unit(tmp_path):
    """Issue 12: /help did not say how to speak a line that starts with "/", nor what RTF is."""
    _, text = _run_lines(tmp_path, ["/help"])
    assert "start it with // to speak it" in text
    assert "Speed is RTF: processing time / audio duration (lower is faster" in text


def test_missing_weights_are_in_the_banner_before_anything_else(tmp_path, voices_dir):
    """Bug (issue 12): without weights the app recorded (or loaded) first and said nothing until
    a line was typed, then repeated a three-line error per line. The banner says it, the
    reference still gives its Voice DNA, and each line gets one line."""
    code, text = _run_lines(tmp_path, ["Hello.", "Hello again.", "..."], ref=str(voices_dir / "LJ001-0004.flac"))
    assert code == 0
    text = re.sub(r"[│\s]+", " ", text)  # the banner's borders and wrapping out of the way
    weights = text.index("weights not found: model folder")
    assert weights < text.index("Voice DNA · LJ001-0004.flac")  # said before the reference is analysed
    assert "does not exist" in text[weights:text.index("╰")]
    assert "Voice DNA still works" in text[:text.index("╰")]
    assert "loading model" not in text
    assert text.count("speaking needs the model weights of") == 2  # one line per typed line
    assert text.count("does not exist") == 1  # the long reason only in the banner
    assert "nothing to speak: '...' has no letters or digits" in text  # said before the weights are
    assert not (tmp_path / "out").exists()


def test_a_recording_says_clipping_once_and_names_the_recording(tmp_path, voices_dir, monkeypatch):
    """Bug (issue 12): the clipping warning was printed twice (by the recorder and by the
    analysis), and recording messages said "<array>"."""
    import numpy as np
    import soundfile as sf

    from personalization_engine import audio_device
    from personalization_engine.repl import commands
    from personalization_engine.repl.loop import Repl

    speech, sr = sf.read(str(voices_dir / "LJ001-0004.flac"), dtype="float32")
    takes = iter([np.zeros(sr * 2, dtype=np.float32), np.clip(speech * 40.0, -1.0, 1.0)])
    monkeypatch.setattr(audio_device, "record", lambda seconds, **kw: (next(takes), sr))  # the microphone
    console, buf = make_test_console()
    opts = repl.ReplOptions(out_dir=tmp_path / "out", voices_dir=tmp_path / "voices", play=False, countdown=0,
                            model=str(tmp_path / "no-model"))
    app = Repl(opts, console, scripted(["r", "k"]))
    app.audio.mic = audio_device.AudioDevice(0, "test mic", "test", 1, 0, float(sr))
    assert commands.record_reference(app, 2.0)
    text = buf.getvalue()
    assert "the recording: all silence" in text and "<array>" not in text
    assert text.count("clipped") == 1 and "the recording: " in text.split("clipped")[0].splitlines()[-1]
