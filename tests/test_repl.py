"""The Rich UI: rendering, scripted sessions, batch mode, and the real REPL in a pseudo-terminal.

Scripted sessions run :func:`repl.run` with a Console writing to a StringIO and a list of typed
lines. The PTY tests start ``run_qwen_interactive.py`` itself under pexpect with the tiny
real-architecture checkpoint (``tiny_checkpoint`` in conftest.py) and type into it like a user;
the audio test also runs a private PulseAudio null sink, records a real speech clip through the
REPL's ``/record`` path, and listens to the sink (with ``parec``) while a typed line streams into
it: the line is heard before its pair is written, the prompt is back while it plays, ``/stop``
cuts it short, ``/play 1`` replays it and Ctrl-C cancels a line being streamed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytest
import soundfile as sf

from personalization_engine import repl
from personalization_engine.analysis import analyze_voice
from personalization_engine.fingerprint import load_schema, verify_pair
from personalization_engine.schema import EMOTION_LABELS, EmotionEstimate

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "run_qwen_interactive.py"
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


# --------------------------------------------------------------------------- helpers


def _console(width: int = 120) -> tuple[Any, io.StringIO]:
    buf = io.StringIO()
    return repl.make_console(file=buf, width=width, force_terminal=False), buf


def _scripted(lines: Iterable[Any]):
    """An input function typing ``lines``; an exception class in the list is raised instead."""
    it = iter(lines)

    def ask(prompt: str) -> str:
        try:
            item = next(it)
        except StopIteration:
            raise EOFError from None
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    return ask


def _pairs(folder: Path) -> list[Path]:
    return sorted(folder.glob("cloned_*.json"))


def _check_pairs(folder: Path, n: int) -> list[dict[str, Any]]:
    """Exactly ``n`` complete pairs, schema-valid, and nothing else in the folder."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(load_schema())
    found = _pairs(folder)
    assert len(found) == n, sorted(p.name for p in folder.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in found] + [p.with_suffix(".wav").name for p in found])
    out = []
    for path in found:
        data = verify_pair(path).to_dict()
        validator.validate(data)
        out.append(data)
    return out


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
    assert repl.sparkline(values, width=width) == expected


def test_sparkline_keeps_gaps_when_binning():
    contour = np.concatenate([np.linspace(100, 200, 100), np.full(50, np.nan), np.linspace(200, 100, 100)])
    line = repl.sparkline(contour, width=25)
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

    text = _render(repl._meter(RecordingLevel(*level), 5.0))
    assert "● REC" in text and f"{level[0]:4.1f} / 5.0 s" in text and expected in text
    assert unexpected is None or unexpected not in text


@pytest.fixture(scope="module")
def profile(voices_dir: Path):
    _, prof = analyze_voice(voices_dir / "2609-156975-0005.flac", emotion=False)  # LibriSpeech, male
    return prof


def _render(renderable: Any) -> str:
    console, buf = _console()
    console.print(renderable)
    return buf.getvalue()


def test_profile_panel_shows_the_voice_dna(profile):
    text = _render(repl.render_profile(profile, title="2609-156975-0005", emotion_note="no model in this test"))
    p = profile.prosody
    assert "Voice DNA · 2609-156975-0005" in text
    assert p.pitch.register in text and f"median {p.pitch.median_hz:.0f} Hz" in text
    assert f"{len(p.energy.stress)} stressed syllables" in text
    assert f"{p.rate.syllables_per_s:.1f} syllables/s" in text
    assert "emotion" not in text.lower() or "unavailable (no model in this test)" in text
    contour_line = next(line for line in text.splitlines() if "Contour" in line)
    assert any(c in contour_line for c in repl.SPARK_CHARS)


def test_profile_panel_charts_the_seven_emotions(profile):
    dist = dict(zip(EMOTION_LABELS, [0.05, 0.1, 0.5, 0.05, 0.1, 0.1, 0.1]))
    prof = replace(profile, emotion=EmotionEstimate(label="sad", probability=0.5, distribution=dist, uncertain=True))
    text = _render(repl.render_profile(prof, title="x"))
    for label in EMOTION_LABELS:
        assert re.search(rf"{label}\s+[█▏▎▍▌▋▊▉ ]+\s+\d+%", text), label
    assert "sad 50%" in text and "uncertain" in text
    bar = re.search(r"sad\s+([█▏▎▍▌▋▊▉]+)", text.split("sad 50%")[1]).group(1)
    assert len(bar) == 10  # half of the 20-cell bar


def test_print_analysis_adds_file_facts(profile, voices_dir):
    clip, prof = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    console, buf = _console()
    repl.print_analysis(console, "LJ001-0004.flac", clip, prof, emotion_note="off")
    assert "16000 Hz" in buf.getvalue() and "s analysed" in buf.getvalue()


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "text file not found"),  # no such file
        (b"\n  \n\n", "no non-empty lines"),  # only blank lines
        (b"\xff\xfe\x00bad", "must be UTF-8"),  # not UTF-8 text
    ],
)
def test_text_file_errors(tmp_path, content, match):
    from personalization_engine.errors import ProfileError

    path = tmp_path / "lines.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProfileError, match=match):
        repl.read_text_file(path)


# --------------------------------------------------------------------------- scripted sessions


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
    console, buf = _console()
    options = repl.ReplOptions(ref=str(tmp_path / "typo.wav"), out_dir=tmp_path / "out", voices_dir=tmp_path / "voices",
                               play=False, model=str(tmp_path / "no-model"))
    assert repl.run(options, console=console, input_fn=_scripted([s for s, _ in steps] + ["/quit"])) == 0
    text = buf.getvalue()
    assert "typo.wav: file not found" in text  # a bad --ref is reported, the session goes on
    pos = 0
    for typed, expected in steps:
        if expected:
            found = text.find(expected, pos)
            assert found >= 0, f"{typed!r}: {expected!r} not in output after position {pos}:\n{text[pos:]}"
            pos = found
    assert "Outputs are in" in text and "(0 pairs written this session)" in text
    assert not (tmp_path / "out").exists() or _pairs(tmp_path / "out") == []


@pytest.mark.parametrize("end", [EOFError, KeyboardInterrupt])
def test_ctrl_d_and_ctrl_c_at_the_prompt_exit_cleanly(tmp_path, end):
    console, buf = _console()
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", play=False)
    assert repl.run(options, console=console, input_fn=_scripted(["/help", end])) == 0
    assert f"Outputs are in {(tmp_path / 'out').resolve()}/" in buf.getvalue()


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_prints_one_line_and_the_traceback_only_with_debug(tmp_path, debug):
    console, buf = _console()
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", play=False, debug=debug)
    assert repl.run(options, console=console, input_fn=_scripted([42, "/help"])) == 0  # 42: not a str
    text = buf.getvalue()
    assert "unexpected error: AttributeError" in text or "AttributeError" in text
    assert ("Traceback" in text) == debug
    assert "/voice save NAME" in text  # the session went on


# --------------------------------------------------------------------------- with the tiny model


def test_scripted_session_with_the_tiny_model(tmp_path, tiny_checkpoint, voices_dir):
    """Two lines -> two valid pairs; mode and transcript commands rebuild the voice prompt."""
    ref = voices_dir / "LJ001-0004.flac"
    transcript = dict(line.split("\t")[::2] for line in (voices_dir / "transcripts.tsv").read_text().splitlines()[1:])
    console, buf = _console()
    lines = ["Hello there.", f"/transcript {transcript['LJ001-0004.flac']}", "/info", "Second line!",
             "/play 3", "/play 1", "/lang en", f"/model {tiny_checkpoint}", "/mode xvector", "Third line.", "/quit"]
    options = repl.ReplOptions(ref=str(ref), model=str(tiny_checkpoint), out_dir=tmp_path / "out",
                               voices_dir=tmp_path / "voices", play=False, seed=5)
    assert repl.run(options, console=console, input_fn=_scripted(lines)) == 0
    text = buf.getvalue()
    assert "3 is out of range 1-2; usage: /play [N]" in text
    assert "playback is off (--no-play); cannot play cloned_" in text
    assert text.count("✔ model ") == 2 and text.count("voice prompt ready: LJ001-0004.flac · xvector") == 2
    assert re.search(r"✔ 1: cloned_\d{8}_\d{6}_\d{3}_\d{2}\.wav · \d+\.\d s · RTF \d+\.\d\d · TTFA \d+\.\d\d s · "
                     r"similarity", text)
    assert "voice prompt ready: LJ001-0004.flac · icl" in text and "transcript “produced the block" in text
    first, second, third = _check_pairs(tmp_path / "out", 3)
    assert (first["model"]["mode"], second["model"]["mode"], third["model"]["mode"]) == ("xvector", "icl", "xvector")
    assert (first["language"], third["language"]) == ("auto", "en")
    assert second["reference"]["transcript"] == transcript["LJ001-0004.flac"]
    assert first["reference"]["sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert first["reference"]["voice_dna"]["pitch"]["register"] in ("alto", "mezzo", "soprano")
    assert first["model"]["seed"] == 5 and first["timings"]["synthesis_s"] > 0
    assert 0 < first["timings"]["time_to_first_audio_s"] <= first["timings"]["synthesis_s"]


def test_clone_command_runs_the_batch(tmp_path, tiny_checkpoint, voices_dir):
    """``python -m personalization_engine clone`` goes through the same run_batch."""
    console, buf = _console()
    rc = repl.run_clone_command(ref=str(voices_dir / "cmu_arctic_us_aew_a0001.flac"), lines=["One.", "Two."],
                                model=str(tiny_checkpoint), out_dir=tmp_path / "out", seed=1, console=console)
    assert rc == 0, buf.getvalue()
    texts = [d["text"] for d in _check_pairs(tmp_path / "out", 2)]
    assert sorted(texts) == ["One.", "Two."]
    assert "2 of 2 lines written" in buf.getvalue()


def test_batch_mode_of_the_script(tmp_path, tiny_checkpoint, voices_dir):
    import subprocess

    """The script's options reach the session: --transcript (ICL mode), --lang, --seed, --text-file."""
    transcripts = dict(line.split("\t")[::2] for line in (voices_dir / "transcripts.tsv").read_text().splitlines()[1:])
    (tmp_path / "lines.txt").write_text("First line.\n\n   \nSecond line.\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--ref", str(voices_dir / "LJ001-0006.flac"), "--text-file", "lines.txt",
         "--no-play", "--model", str(tiny_checkpoint), "--seed", "2", "--lang", "en",
         "--transcript", transcripts["LJ001-0006.flac"]],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 lines written" in proc.stdout
    data = _check_pairs(tmp_path / "outputs", 2)  # the default --out is ./outputs
    assert sorted(d["text"] for d in data) == ["First line.", "Second line."]
    assert {(d["language"], d["model"]["mode"], d["model"]["seed"]) for d in data} == {("en", "icl", 2)}
    assert data[0]["reference"]["transcript"] == transcripts["LJ001-0006.flac"]


def test_list_devices_option_of_the_script(tmp_path, null_sink):
    import subprocess

    proc = subprocess.run([sys.executable, str(SCRIPT), "--list-devices"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **null_sink, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Audio devices" in proc.stdout and "default" in proc.stdout


# --------------------------------------------------------------------------- the real REPL in a PTY


class Term:
    """``run_qwen_interactive.py`` in a pseudo-terminal, typed into like a user."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        pexpect = pytest.importorskip("pexpect")
        self.pexpect = pexpect
        self.log = io.StringIO()
        full_env = {**os.environ, "TERM": "xterm", **(env or {})}
        full_env.pop("NO_COLOR", None)
        self.p = pexpect.spawn(sys.executable, [str(SCRIPT), *args], cwd=str(cwd), env=full_env,
                               encoding="utf-8", timeout=240, dimensions=(50, 160))
        self.p.logfile_read = self.log

    def expect(self, text: str, timeout: float | None = None) -> None:
        """Wait for ``text`` (colour codes between its characters are allowed)."""
        pattern = ANSI.join(re.escape(c) for c in text)
        try:
            self.p.expect(pattern, timeout=timeout if timeout is not None else -1)
        except (self.pexpect.TIMEOUT, self.pexpect.EOF) as exc:
            tail = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.log.getvalue())[-3000:]
            raise AssertionError(f"{text!r} did not appear ({type(exc).__name__}); screen:\n{tail}") from None

    def prompt(self) -> None:
        self.expect("› ")

    def type(self, line: str) -> None:
        self.p.sendline(line)

    def finish(self) -> int:
        self.p.expect(self.pexpect.EOF, timeout=60)
        self.p.close()
        return int(self.p.exitstatus if self.p.exitstatus is not None else -1)


def test_pty_session_survives_everything_and_writes_two_pairs(tmp_path, tiny_checkpoint, voices_dir):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    t = Term(["--model", str(tiny_checkpoint), "--ref", str(voices_dir / "LJ001-0004.flac"), "--no-play",
              "--seed", "1"], cwd=tmp_path)
    t.expect("Voice DNA · LJ001-0004.flac")
    t.expect("voice prompt ready")
    t.prompt()
    t.type("Hi.")
    t.expect("✔ 1: cloned_")
    t.prompt()
    for typed, answer in [("/bogus", "unknown command /bogus"), ("/load missing.wav", "missing.wav: file not found"),
                          ("/load corrupt.wav", "corrupt.wav: not a readable audio file or corrupt"),
                          ("", "› "), ("   ", "› ")]:
        t.type(typed)
        t.expect(answer)
        if answer != "› ":
            t.prompt()
    t.type("This line is long enough to take a while, so that Ctrl-C arrives in the middle of it.")
    t.expect("synthesizing")
    time.sleep(0.5)
    t.p.sendintr()
    t.expect("cancelled: back to the prompt (nothing was written)")
    t.prompt()
    t.type("Bye now.")
    t.expect("✔ 2: cloned_")
    t.prompt()
    t.p.send("half a line")
    time.sleep(0.3)
    t.p.sendintr()  # Ctrl-C with text on the line only discards the line
    t.expect("line discarded")
    t.prompt()
    t.p.sendintr()  # Ctrl-C at the empty prompt leaves
    t.expect(f"Outputs are in {(tmp_path / 'outputs').resolve()}/ (2 pairs written this session)")
    assert t.finish() == 0
    data = _check_pairs(tmp_path / "outputs", 2)
    assert [d["text"] for d in data] == ["Hi.", "Bye now."]


def test_pty_saved_voice_is_the_same_voice_in_a_new_session(tmp_path, tiny_checkpoint, voices_dir):
    """/voice save in one session, /voice use in the next: same prompt, so the same audio."""
    a = Term(["--model", str(tiny_checkpoint), "--ref", str(voices_dir / "LJ001-0004.flac"), "--no-play",
              "--seed", "7", "--out", "out_a"], cwd=tmp_path)
    a.prompt()
    a.type("/voice save anna")
    a.expect("saved voice 'anna'")
    a.prompt()
    a.type("Same words.")
    a.expect("✔ 1:")
    a.prompt()
    a.type("/quit")
    assert a.finish() == 0
    b = Term(["--model", str(tiny_checkpoint), "--ref", str(voices_dir / "2609-156975-0005.flac"), "--no-play",
              "--seed", "7", "--out", "out_b"], cwd=tmp_path)
    b.prompt()
    b.type("/voices")
    b.expect("anna")
    b.prompt()
    b.type("/voice use anna")
    b.expect("Voice DNA · anna")
    b.expect("using saved voice 'anna'")
    b.prompt()
    b.type("Same words.")
    b.expect("✔ 1:")
    b.prompt()
    b.p.sendeof()  # Ctrl-D leaves
    b.expect("Outputs are in")
    assert b.finish() == 0
    (fa,), (fb,) = _check_pairs(tmp_path / "out_a", 1), _check_pairs(tmp_path / "out_b", 1)
    assert fb["reference"]["kind"] == "voice" and fb["reference"]["name"] == "anna"
    assert fa["reference"]["sha256"] == fb["reference"]["sha256"]
    assert fa["audio"]["sha256"] == fb["audio"]["sha256"]  # the very same samples


# --------------------------------------------------------------------------- the real audio path


@pytest.fixture()
def null_sink(tmp_path: Path):
    from ._pulse import null_sink_server, portaudio_env

    with null_sink_server(tmp_path / "pulse") as env:
        with portaudio_env(env):
            yield env


def test_banner_devices_and_bad_device_names(tmp_path, null_sink):
    """--list-devices, /devices, the banner, and a typo in --input-device/--output-device: the
    session says what is off and why, once, and goes on."""
    console, buf = _console(width=300)
    assert repl.run(repl.ReplOptions(list_devices=True), console=console) == 0
    listing = buf.getvalue()
    assert "Audio devices" in listing and "default" in listing

    console, buf = _console(width=300)
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", voices_dir=tmp_path / "v",
                               input_device="no such mic", output_device="no such speaker", seed=4)
    assert repl.run(options, console=console, input_fn=_scripted(["/devices", "/record", "/quit"])) == 0
    text = buf.getvalue()
    assert "device   cpu · CPU," in text and "mode xvector · seed 4" in text  # the banner
    assert f"outputs  {(tmp_path / 'out').resolve()}/" in text
    assert text.count("microphone off: input device 'no such mic' matches no microphone") == 1
    assert "playback off: output device 'no such speaker' matches no speaker" in text
    assert "outputs are still written" in text
    assert "Audio devices" in text  # /devices
    assert "use /load PATH instead" in text  # /record without a microphone

    console, buf = _console(width=300)
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", input_device="default",
                               output_device="default")
    assert repl.run(options, console=console, input_fn=_scripted(["/quit"])) == 0
    assert re.search(r"mic: default \(\d+ Hz\) · playback: default", buf.getvalue())


_NO_PORTAUDIO_SESSION = r"""
import ctypes.util, io, sys
sys.path.insert(0, sys.argv[1])
real = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if "portaudio" in name else real(name)  # hide PortAudio
from pathlib import Path
from personalization_engine import repl
lines = iter(["/devices", "/record", "/quit"])
def ask(prompt):
    return next(lines)
console = repl.make_console(file=sys.stdout, width=300, force_terminal=False)
rc = repl.run(repl.ReplOptions(ref=sys.argv[2], out_dir=Path(sys.argv[3])), console=console, input_fn=ask)
print("RC", rc)
print("LIST RC", repl.run(repl.ReplOptions(list_devices=True), console=console))
"""


def test_missing_portaudio_is_said_once_and_the_session_goes_on(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _NO_PORTAUDIO_SESSION, str(REPO), str(tmp_path / "none.wav"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "microphone off: audio devices unavailable: PortAudio library not found" in out
    assert "playback off (same reason); outputs are still written." in out
    assert "apt-get install libportaudio2" in out
    # Once at the start (for microphone and playback together), then once for each thing that
    # asked for a device: /devices, /record and --list-devices.
    assert out.count("PortAudio library not found") == 4
    assert "RC 0" in out and "LIST RC 2" in out


def test_batch_mode_streams_each_line_into_the_sink(tmp_path, tiny_checkpoint, voices_dir, null_sink):
    """--text-file without --no-play: each line streams into the player as it is made, queued
    behind the previous one, and the batch waits for the sound to end; the pairs are the same."""
    from scipy.signal import butter, correlate, sosfiltfilt

    from ._pulse import MonitorRecorder

    (tmp_path / "lines.txt").write_text("The first line.\nAnd the second one.\n", encoding="utf-8")
    console, buf = _console()
    options = repl.ReplOptions(ref=str(voices_dir / "LJ001-0006.flac"), model=str(tiny_checkpoint),
                               text_file=tmp_path / "lines.txt", out_dir=tmp_path / "out", seed=8)
    with MonitorRecorder(null_sink, tmp_path / "sink.raw") as sink:
        assert repl.run(options, console=console) == 0, buf.getvalue()
    assert "2 of 2 lines written" in buf.getvalue()
    data = _check_pairs(tmp_path / "out", 2)
    sos = butter(8, 4_000, fs=24_000, output="sos")  # see the PTY test below for why 4 kHz
    heard = sosfiltfilt(sos, sink.audio())
    first, second = (sf.read(str(tmp_path / "out" / d["audio"]["file"]), dtype="float32")[0]
                     for d in sorted(data, key=lambda d: d["audio"]["file"]))
    first, second = sosfiltfilt(sos, first), sosfiltfilt(sos, second)
    # The first line is in the sink, sample for sample (the earliest match: with one seed the
    # random-weight model starts every line alike). Its first 0.1 s is left out: the batch starts
    # so soon after the stream opened that its first tens of ms may fall in the null sink's
    # start-up (see Player._wait_running).
    head = first[int(0.1 * 24_000) : int(0.42 * 24_000)]
    energy = np.concatenate([[0.0], np.cumsum(heard.astype(np.float64) ** 2)])
    window_norm = np.sqrt(np.maximum(energy[len(head):] - energy[: -len(head)], 1e-12))
    ncc = correlate(heard, head, mode="valid", method="fft") / (window_norm * np.linalg.norm(head))
    matches = np.flatnonzero(ncc > 0.9)
    assert matches.size, f"the first line is not in the sink (best match {ncc.max():.2f})"
    at = max(0, int(matches[0] + np.argmax(ncc[matches[0] : matches[0] + 240])) - int(0.1 * 24_000))
    # ... and from there on the sink got both lines whole: as much sound as the two wavs hold.
    # (Compared by amount, not by content: with one seed the random-weight model speaks every
    # line alike, and a late chunk on a loaded machine would shift the second line.)
    rms = np.sqrt(np.mean(heard[at : at + (len(heard) - at) // 240 * 240].reshape(-1, 240) ** 2, axis=1))
    expected = [np.sqrt(np.mean(w[: len(w) // 240 * 240].reshape(-1, 240) ** 2, axis=1)) for w in (first, second)]
    sounding = lambda env: int(np.sum(env > 1e-3))  # noqa: E731 (10 ms windows with sound)
    assert sounding(rms) == pytest.approx(sum(sounding(e) for e in expected), rel=0.05)


def test_pty_record_stream_and_stop_through_a_null_sink(tmp_path, tiny_checkpoint, voices_dir, null_sink):
    """/record hears speech played into the sink (median F0 within 5 %), with play back and a
    Ctrl-C that cancels a recording; a typed line streams into the sink before its pair is
    written, the prompt is back while it plays, /stop cuts it short and /play 1 replays it."""
    from personalization_engine import playback
    from personalization_engine.cloning import supports_streaming
    from personalization_engine.qwen_adapter import TTSModel

    from ._pulse import MonitorRecorder

    clip = voices_dir / "LJ001-0004.flac"
    samples, sr = sf.read(str(clip), dtype="float32")
    with MonitorRecorder(null_sink, tmp_path / "sink.raw") as sink:
        t = Term(["--model", str(tiny_checkpoint), "--seconds", "6.5", "--countdown", "1", "--seed", "3"],
                 cwd=tmp_path, env=null_sink)
        t.expect("mic: default")
        t.expect("playback: default")
        t.expect("recording in 1…")  # the countdown
        t.expect("● REC")
        player = playback.Player()
        player.play(samples, sr)  # the "user" speaks into the microphone
        t.expect("dBFS", timeout=30)  # the live level meter moves
        t.expect("Voice DNA · your recording", timeout=60)
        t.expect("[p]lay back")
        t.type("p")  # hear the take, then decide
        t.expect("[k]eep")
        t.type("k")
        t.expect("voice prompt ready: recording")
        t.prompt()
        player.close()
        t.type("/voice save rec")
        t.expect("saved voice 'rec'")
        t.prompt()
        t.type("/record 3")  # Ctrl-C while recording: back to the prompt, the voice unchanged
        t.expect("● REC")
        time.sleep(0.5)
        t.p.sendintr()
        t.expect("cancelled: back to the prompt")
        t.prompt()
        t.type("This sentence is long enough for six seconds.")
        t.expect("× real-time")  # the progress display
        t.expect("✔ 1:")
        t_result = time.monotonic()
        t.expect("TTFA")
        t.expect("♪")
        t.prompt()
        t_prompt = time.monotonic()
        time.sleep(0.5)
        t.type("/stop")
        t_stop = time.monotonic()
        t.expect("stopped")
        t.prompt()
        time.sleep(1.0)
        t_replay = time.monotonic()
        t.type("/play 1")  # replay the line
        t.expect("▶ 1: cloned_")
        t.prompt()
        time.sleep(1.5)
        t_long = time.monotonic()
        t.type("A much longer line this time, so that Ctrl-C arrives while it is still being made and played.")
        t.expect("first audio")  # streaming has begun ...
        t.p.sendintr()  # ... and Ctrl-C cancels it: nothing written, the sound stops, the app lives
        t_cancel = time.monotonic()
        t.expect("cancelled: back to the prompt (nothing was written)")
        t.prompt()
        time.sleep(1.0)
        t.type("/quit")
        assert t.finish() == 0
    # The recording kept the clip's Voice DNA (median F0 within 5 %).
    saved = json.loads((tmp_path / "voices" / "rec" / "profile.json").read_text())
    _, original = analyze_voice(clip, emotion=False)
    assert saved["pitch"]["median_hz"] == pytest.approx(original.prosody.pitch.median_hz, rel=0.05)

    (data,) = _check_pairs(tmp_path / "outputs", 1)
    assert data["reference"]["kind"] == "recording"
    wav, wav_sr = sf.read(str(tmp_path / "outputs" / data["audio"]["file"]), dtype="float32")
    heard = sink.audio()
    # The line's start is in the sink, sample for sample: find the written wav's first 0.32 s
    # (the first streamed chunk; on a loaded machine the next may come late, after a silent gap).
    # Both are low-passed at 4 kHz: the sink runs at 48 kHz, so the recording may be half a
    # 24 kHz sample late, which decorrelates the top octaves of the random-weight model's
    # noise-like output (to 0.76 at 9 kHz; 0.95 at 4 kHz).
    from scipy.signal import butter, correlate, sosfiltfilt

    sos = butter(8, 4_000, fs=wav_sr, output="sos")
    head, heard_lp = sosfiltfilt(sos, wav[: int(0.32 * wav_sr)]), sosfiltfilt(sos, heard)
    replay_from, long_from = sink.samples_by(t_replay), sink.samples_by(t_long)
    at = int(np.argmax(correlate(heard_lp[:replay_from], head, mode="valid", method="fft")))
    got = heard_lp[at : at + len(head)]
    assert float(np.dot(got, head) / (np.linalg.norm(got) * np.linalg.norm(head))) > 0.9
    t_sound = sink.time_of(at)
    loud = np.flatnonzero(np.abs(heard[at:replay_from]) > 1e-3)
    t_end = sink.time_of(at + int(loud[-1]))
    ttfa, synth = data["timings"]["time_to_first_audio_s"], data["timings"]["synthesis_s"]
    print(f"sound {t_sound - t_result:+.2f} .. {t_end - t_result:+.2f} s around the result line; prompt "
          f"{t_prompt - t_result:+.2f} s; /stop {t_stop - t_result:+.2f} s; TTFA {ttfa:.2f} s of {synth:.2f} s "
          f"synthesis; the line is {data['audio']['duration_s']:.2f} s")
    assert t_sound < t_result  # playback began before the pair was written and reported
    assert t_end > t_prompt + 0.3  # the prompt was back while the line still played
    assert t_end < t_stop + 0.5 < t_sound + data["audio"]["duration_s"]  # and /stop cut it short
    # /play 1 played the written line again.
    again = int(np.argmax(correlate(heard_lp[replay_from:long_from], head, mode="valid", method="fft")))
    got = heard_lp[replay_from + again : replay_from + again + len(head)]
    assert float(np.dot(got, head) / (np.linalg.norm(got) * np.linalg.norm(head))) > 0.9
    # The cancelled line: silent again soon after the Ctrl-C.
    after = np.flatnonzero(np.abs(heard[long_from:]) > 1e-3)
    assert after.size == 0 or sink.time_of(long_from + int(after[-1])) < t_cancel + 1.0
    if supports_streaming(TTSModel):  # chunks played while later frames were still being made
        assert ttfa < 0.6 * synth
