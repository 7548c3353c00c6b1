"""The Rich UI: rendering, scripted sessions, batch mode, and the real REPL in a pseudo-terminal.

Scripted sessions run :func:`repl.run` with a Console writing to a StringIO and a list of typed
lines. The PTY tests start ``run_qwen_interactive.py`` itself under pexpect with the tiny
real-architecture checkpoint (``tiny_checkpoint`` in conftest.py) and type into it like a user;
the audio test also runs a private PulseAudio null sink, records a real speech clip through the
REPL's ``/record`` path and checks that auto-play does not block the prompt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import threading
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


def _console() -> tuple[Any, io.StringIO]:
    buf = io.StringIO()
    return repl.make_console(file=buf, width=120, force_terminal=False), buf


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
        data = verify_pair(path)
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
    lines = ["Hello there.", f"/transcript {transcript['LJ001-0004.flac']}", "/info", "Second line!", "/quit"]
    options = repl.ReplOptions(ref=str(ref), model=str(tiny_checkpoint), out_dir=tmp_path / "out",
                               voices_dir=tmp_path / "voices", play=False, seed=5)
    assert repl.run(options, console=console, input_fn=_scripted(lines)) == 0
    text = buf.getvalue()
    assert re.search(r"✔ 1: cloned_\d{8}_\d{6}_\d{3}_\d{2}\.wav · \d+\.\d s · RTF \d+\.\d\d · similarity", text)
    assert "voice prompt ready: LJ001-0004.flac · icl" in text and "transcript “produced the block" in text
    first, second = _check_pairs(tmp_path / "out", 2)
    assert (first["model"]["mode"], second["model"]["mode"]) == ("xvector", "icl")
    assert second["reference"]["transcript"] == transcript["LJ001-0004.flac"]
    assert first["reference"]["sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert first["reference"]["voice_dna"]["pitch"]["register"] in ("alto", "mezzo", "soprano")
    assert first["model"]["seed"] == 5 and first["timings"]["synthesis_s"] > 0


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

    (tmp_path / "lines.txt").write_text("First line.\n\n   \nSecond line.\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--ref", str(voices_dir / "LJ001-0006.flac"), "--text-file", "lines.txt",
         "--no-play", "--model", str(tiny_checkpoint), "--seed", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 lines written" in proc.stdout
    data = _check_pairs(tmp_path / "outputs", 2)  # the default --out is ./outputs
    assert sorted(d["text"] for d in data) == ["First line.", "Second line."]


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


def test_pty_record_and_autoplay_through_a_null_sink(tmp_path, tiny_checkpoint, voices_dir, null_sink):
    """/record hears speech played into the sink; auto-play reaches the sink without blocking the prompt."""
    from personalization_engine import audio_device

    clip = voices_dir / "LJ001-0004.flac"
    samples, sr = sf.read(str(clip), dtype="float32")
    t = Term(["--model", str(tiny_checkpoint), "--seconds", "6.5", "--countdown", "0", "--seed", "3"],
             cwd=tmp_path, env=null_sink)
    t.expect("mic: default")
    t.expect("● REC")
    player = audio_device.Player()
    player.play(samples, sr)  # the "user" speaks into the microphone
    t.expect("dBFS", timeout=30)  # the live level meter moves
    t.expect("Voice DNA · your recording", timeout=60)
    t.expect("[k]eep")
    t.type("k")
    t.expect("voice prompt ready: recording")
    t.prompt()
    player.close()
    t.type("/voice save rec")
    t.expect("saved voice 'rec'")
    t.prompt()
    # The recording kept the clip's Voice DNA (median F0 within 5 %).
    saved = json.loads((tmp_path / "voices" / "rec" / "profile.json").read_text())
    _, original = analyze_voice(clip, emotion=False)
    assert saved["pitch"]["median_hz"] == pytest.approx(original.prosody.pitch.median_hz, rel=0.05)

    # Auto-play: listen to the sink while a line is spoken, played, and stopped with /stop.
    blocks: list[tuple[float, float]] = []  # (arrival time, RMS) of each recorded block
    rec_done = threading.Event()

    def on_block(data: np.ndarray, n: int, ti: Any, status: Any) -> None:
        blocks.append((time.monotonic(), float(np.sqrt(np.mean(data[:, 0] ** 2)))))

    def listen() -> None:
        sd = audio_device._sounddevice()
        with sd.InputStream(samplerate=24_000, channels=1, blocksize=1200, callback=on_block):
            rec_done.wait(timeout=300)

    listener = threading.Thread(target=listen)
    listener.start()
    t.type("This sentence is long enough for six seconds.")
    t.expect("✔ 1:")
    t.expect("♪")
    t.prompt()
    t_prompt = time.monotonic()
    time.sleep(0.5)
    t.type("/stop")
    t_stop = time.monotonic()
    t.expect("stopped")
    t.prompt()
    time.sleep(2.0)
    rec_done.set()
    listener.join()
    t.type("/quit")
    assert t.finish() == 0
    (data,) = _check_pairs(tmp_path / "outputs", 1)
    assert data["reference"]["kind"] == "recording"
    duration = data["audio"]["duration_s"]
    loud = [ts for ts, rms in blocks if rms > 1e-3]  # the null sink is digital silence between sounds
    assert loud, "nothing was played into the sink"
    start, end = loud[0], loud[-1]
    print(f"sound {start - t_prompt:+.2f} .. {end - t_prompt:+.2f} s around the prompt; /stop at "
          f"{t_stop - t_prompt:+.2f} s; the line is {duration:.2f} s")
    assert end > t_prompt + 0.3  # the prompt was back while the line still played
    assert end < t_stop + 1.5 < start + duration  # and /stop cut it short
