"""The REPL end to end: the real script in a pseudo-terminal, its batch mode, and the real audio path.

The PTY tests start ``run_qwen_interactive.py`` itself under pexpect with the tiny
real-architecture checkpoint (``tiny_checkpoint`` in conftest.py) and type into it like a user;
the audio test also runs a private PulseAudio null sink, records a real speech clip through the
REPL's ``/record`` path, and listens to the sink (with ``parec``) while a typed line streams into
it: the line is heard before its pair is written, the prompt is back while it plays, ``/stop``
cuts it short, ``/play 1`` replays it and Ctrl-C cancels a line being streamed. The rendering and
the commands have their own StringIO-console tests (test_repl_render.py, test_repl_commands.py).
"""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from personalization_engine import repl
from personalization_engine.analysis import analyze_voice
from personalization_engine.voice_library import VoiceLibrary

from ._repl_helpers import REPO, SCRIPT, check_pairs, make_test_console, scripted

ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


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
    data = check_pairs(tmp_path / "outputs", 2)  # the default --out is ./outputs
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

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], Any] | None = None) -> None:
        pexpect = pytest.importorskip("pexpect")
        self.pexpect = pexpect
        self.log = io.StringIO()
        full_env = {**os.environ, "TERM": "xterm", **(env or {})}
        full_env.pop("NO_COLOR", None)
        self.p = pexpect.spawn(sys.executable, [str(SCRIPT), *args], cwd=str(cwd), env=full_env,
                               encoding="utf-8", timeout=240, dimensions=(50, 160), preexec_fn=preexec_fn)
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


def test_pty_session_survives_everything_and_writes_twopairs(tmp_path, tiny_checkpoint, voices_dir):
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
    # Several sentences: a one-sentence line takes ~0.5 s on a fast CPU, and Ctrl-C then came after it.
    t.type("This line is long enough to take a while, so that Ctrl-C arrives in the middle of it. "
           "It has a second sentence to make sure of that. And a third one. And a fourth, for a fast "
           "machine. And a fifth, which is never spoken.")
    t.expect("synthesizing")
    time.sleep(0.3)
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
    data = check_pairs(tmp_path / "outputs", 2)
    assert [d["text"] for d in data] == ["Hi.", "Bye now."]


def test_pty_ctrl_c_cancels_even_when_launched_with_sigint_ignored(tmp_path, tiny_checkpoint, voices_dir):
    """Bug: started from a shell's background job (SIGINT inherited as "ignore", which Python
    keeps), Ctrl-C did nothing and a line could not be cancelled. The REPL restores it."""
    t = Term(["--model", str(tiny_checkpoint), "--ref", str(voices_dir / "LJ001-0004.flac"), "--no-play",
              "--seed", "1"], cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    t.expect("voice prompt ready")
    t.prompt()
    t.type("This line is long enough to take a while, so that Ctrl-C arrives in the middle of it. "
           "It has a second sentence to make sure of that. And a third one. And a fourth, for a fast "
           "machine. And a fifth, which is never spoken.")
    t.expect("synthesizing")
    time.sleep(0.3)
    t.p.sendintr()
    t.expect("cancelled: back to the prompt (nothing was written)")
    t.prompt()
    t.type("/quit")
    assert t.finish() == 0


def test_pty_lines_typed_while_speaking_are_queued_and_stop_drops_them(tmp_path, tiny_checkpoint, voices_dir):
    """Bug (issue 12): lines typed while a line was being made printed over the spinner. They
    are read without echo and queued ("2 lines queued"), run in order after the line, and a
    queued /stop drops the lines queued after it."""
    t = Term(["--model", str(tiny_checkpoint), "--ref", str(voices_dir / "LJ001-0004.flac"), "--no-play",
              "--seed", "1"], cwd=tmp_path)
    t.expect("voice prompt ready")
    t.prompt()
    t.type("This line is long enough to take a while, so that two more lines are typed while it is made. "
           "It goes on for a second sentence too. And a third, and a fourth, for a fast machine.")
    t.expect("synthesizing")
    t.type("/stop")
    t.type("Never spoken.")
    t.expect("2 lines queued")
    t.expect("✔ 1: cloned_")
    t.expect("/stop")  # the queued line, shown at the prompt as it runs
    t.expect("■ stopped · 1 queued line dropped")
    t.prompt()
    t.type("/quit")
    t.expect("(1 pair written this session)")
    assert t.finish() == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", t.log.getvalue())
    assert "Never spoken." not in screen.split("2 lines queued")[0].split("synthesizing")[-1]  # not echoed
    check_pairs(tmp_path / "outputs", 1)


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
    (fa,), (fb,) = check_pairs(tmp_path / "out_a", 1), check_pairs(tmp_path / "out_b", 1)
    assert fb["reference"]["kind"] == "voice" and fb["reference"]["name"] == "anna"
    assert fa["reference"]["sha256"] == fb["reference"]["sha256"]
    assert fa["audio"]["sha256"] == fb["audio"]["sha256"]  # the very same samples


# --------------------------------------------------------------------------- the real audio path


@pytest.fixture()
def null_sink(tmp_path: Path):
    from ._pulse import null_sink_server, portaudio_env

    with null_sink_server(tmp_path / "pulse") as env, portaudio_env(env):
        yield env


def test_banner_devices_and_bad_device_names(tmp_path, null_sink):
    """--list-devices, /devices, the banner, and a typo in --input-device/--output-device: the
    session says what is off and why, once, and goes on."""
    console, buf = make_test_console(width=300)
    assert repl.run(repl.ReplOptions(list_devices=True), console=console) == 0
    listing = buf.getvalue()
    assert "Audio devices" in listing and "default" in listing

    console, buf = make_test_console(width=300)
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", voices_dir=tmp_path / "v",
                               input_device="no such mic", output_device="no such speaker", seed=4)
    assert repl.run(options, console=console, input_fn=scripted(["/devices", "/record", "/quit"])) == 0
    text = buf.getvalue()
    assert "device   cpu · CPU," in text and "mode xvector · seed 4" in text  # the banner
    assert f"outputs  {(tmp_path / 'out').resolve()}/" in text
    assert text.count("microphone off: input device 'no such mic' matches no microphone") == 1
    assert "playback off: output device 'no such speaker' matches no speaker" in text
    assert "outputs are still written" in text
    assert "Audio devices" in text  # /devices
    assert "use /load PATH instead" in text  # /record without a microphone

    console, buf = make_test_console(width=300)
    options = repl.ReplOptions(ref=str(tmp_path / "none.wav"), out_dir=tmp_path / "out", input_device="default",
                               output_device="default")
    assert repl.run(options, console=console, input_fn=scripted(["/quit"])) == 0
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
    console, buf = make_test_console()
    options = repl.ReplOptions(ref=str(voices_dir / "LJ001-0006.flac"), model=str(tiny_checkpoint),
                               text_file=tmp_path / "lines.txt", out_dir=tmp_path / "out", seed=8)
    with MonitorRecorder(null_sink, tmp_path / "sink.raw") as sink:
        assert repl.run(options, console=console) == 0, buf.getvalue()
    assert "2 of 2 lines written" in buf.getvalue()
    data = check_pairs(tmp_path / "out", 2)
    sos = butter(8, 4_000, fs=24_000, output="sos")  # see the PTY test below for why 4 kHz
    heard = sosfiltfilt(sos, sink.audio())
    first, second = (sf.read(str(tmp_path / "out" / d["audio"]["file"]), dtype="float32")[0]
                     for d in sorted(data, key=lambda d: d["audio"]["file"]))
    first, second = sosfiltfilt(sos, first), sosfiltfilt(sos, second)
    # The first line is in the sink, sample for sample (the earliest match: with one seed the
    # random-weight model starts every line alike). Its first 0.1 s is left out: the batch starts
    # so soon after the stream opened that its first tens of ms may fall in the null sink's
    # start-up (see Player._wait_running).
    # The window ends inside the first streamed chunk (2 frames = 0.16 s), so a late second chunk
    # on a loaded machine cannot split it.
    head = first[int(0.1 * 24_000) : int(0.155 * 24_000)]
    energy = np.concatenate([[0.0], np.cumsum(heard.astype(np.float64) ** 2)])
    window_norm = np.sqrt(np.maximum(energy[len(head):] - energy[: -len(head)], 1e-12))
    ncc = correlate(heard, head, mode="valid", method="fft") / (window_norm * np.linalg.norm(head))
    matches = np.flatnonzero(ncc > 0.9)
    assert matches.size, f"the first line is not in the sink (best match {ncc.max():.2f})"
    # ... and the sink got both lines whole: as much sound as the two wavs hold, counted over the
    # whole recording. (Compared by amount, not by position: with one seed the random-weight model
    # speaks every line alike, and on a loaded machine a late chunk leaves a gap of silence inside
    # a line, which moves the rest of it but takes no sound away.)
    rms = np.sqrt(np.mean(heard[: len(heard) // 240 * 240].reshape(-1, 240) ** 2, axis=1))
    expected = [np.sqrt(np.mean(w[: len(w) // 240 * 240].reshape(-1, 240) ** 2, axis=1)) for w in (first, second)]
    sounding = lambda env: int(np.sum(env > 1e-3))  # noqa: E731 (10 ms windows with sound)
    assert sounding(rms) == pytest.approx(sum(sounding(e) for e in expected), rel=0.05)


def test_pty_record_stream_and_stop_through_a_null_sink(tmp_path, tiny_checkpoint, voices_dir, null_sink):
    """/record hears speech played into the sink (median F0 within 5 %), with play back and a
    Ctrl-C that cancels a recording; a typed line streams into the sink before its pair is
    written, the prompt is back while it plays, /stop cuts it short and /play 1 replays it."""
    from personalization_engine import playback

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
        t.expect("RTF")  # the progress display
        t.expect("✔ 1:")
        t_result = time.monotonic()
        t.expect("first audio")
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
    saved = VoiceLibrary(tmp_path / "voices").entry("rec").profile  # format 2: in the prompt's voice.json
    _, original = analyze_voice(clip, emotion=False)
    assert saved is not None
    assert saved.prosody.pitch.median_hz == pytest.approx(original.prosody.pitch.median_hz, rel=0.05)

    (data,) = check_pairs(tmp_path / "outputs", 1)
    assert data["reference"]["kind"] == "recording"
    wav, wav_sr = sf.read(str(tmp_path / "outputs" / data["audio"]["file"]), dtype="float32")
    heard = sink.audio()
    # The line's start is in the sink, sample for sample: find the written wav's first 0.16 s
    # (the first streamed chunk; on a loaded machine the next may come late, after a silent gap).
    # Both are low-passed at 4 kHz: the sink runs at 48 kHz, so the recording may be half a
    # 24 kHz sample late, which decorrelates the top octaves of the random-weight model's
    # noise-like output (to 0.76 at 9 kHz; 0.95 at 4 kHz).
    from scipy.signal import butter, correlate, sosfiltfilt

    sos = butter(8, 4_000, fs=wav_sr, output="sos")
    head, heard_lp = sosfiltfilt(sos, wav[: int(0.16 * wav_sr)]), sosfiltfilt(sos, heard)
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
    assert ttfa < 0.6 * synth  # chunks played while later frames were still being made

