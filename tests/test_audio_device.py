"""Recording and playback through a real audio stack: PortAudio -> ALSA -> PulseAudio null sink.

Real speech from ``../shared/data/voices`` is played into the null sink by the :class:`Player`
while :func:`record` records the sink's monitor at the device's own rate (44.1 kHz); the recording
must keep the clip's Voice DNA. No mocks: only the missing-PortAudio test hides the library (in a
child process) to check the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from personalization_engine import audio_device
from personalization_engine.analysis import analyze_voice
from personalization_engine.errors import DeviceError

from ._pulse import null_sink_server, portaudio_env

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def null_sink(tmp_path_factory: pytest.TempPathFactory):
    """A private PulseAudio null sink that this process's PortAudio uses (module-wide)."""
    with null_sink_server(tmp_path_factory.mktemp("pulse")) as env:
        with portaudio_env(env):
            yield env


def _play_and_record(samples: np.ndarray, sr: int, *, extra_s: float = 1.0):
    """Play ``samples`` into the sink while recording its monitor; returns (audio, rate, levels, play_call_s)."""
    out: dict[str, object] = {}
    levels: list[audio_device.RecordingLevel] = []

    def rec() -> None:
        out["audio"] = audio_device.record(len(samples) / sr + extra_s, on_level=levels.append)

    t = threading.Thread(target=rec)
    t.start()
    time.sleep(0.3)  # let the input stream start before the sound does
    player = audio_device.Player()
    player.open()
    t0 = time.perf_counter()
    player.play(samples, sr)
    play_call_s = time.perf_counter() - t0
    t.join(timeout=60)
    player.close()
    audio, rate = out["audio"]  # type: ignore[misc]
    return audio, rate, levels, play_call_s


@pytest.mark.parametrize("clip", ["LJ001-0004.flac", "cmu_arctic_us_aew_a0001.flac"])
def test_recording_keeps_the_voice_dna_of_played_speech(null_sink, voices_dir, clip):
    """Female (LJ Speech) and male (ARCTIC aew) speech survive the trip within 5 % median F0."""
    samples, sr = sf.read(str(voices_dir / clip), dtype="float32")
    recorded, rate, levels, play_call_s = _play_and_record(samples, sr)
    assert play_call_s < 0.2  # playback never blocks the caller
    dev = audio_device.find_device(None, kind="input")
    assert rate == int(dev.default_sample_rate)  # recorded at the device's own rate ...
    _, original = analyze_voice(voices_dir / clip, emotion=False)
    _, copy = analyze_voice((recorded, rate), emotion=False)  # ... and resampled by the analysis
    ratio = copy.prosody.pitch.median_hz / original.prosody.pitch.median_hz
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert copy.prosody.pitch.register == original.prosody.pitch.register
    assert len(levels) > 20 and max(lv.rms_db for lv in levels) > -40


def test_level_meter_flags_clipping(null_sink):
    sr = 48_000
    t = np.arange(int(1.0 * sr)) / sr
    square = np.sign(np.sin(2 * np.pi * 200 * t)).astype(np.float32)  # full scale
    _, _, levels, _ = _play_and_record(square, sr, extra_s=0.8)
    assert levels[-1].clipped
    assert max(lv.peak for lv in levels) >= audio_device.CLIP_LEVEL


def test_stop_silences_playback_quickly(null_sink, voices_dir):
    samples, sr = sf.read(str(voices_dir / "LJ001-0006.flac"), dtype="float32")
    player = audio_device.Player()
    player.open()
    try:
        player.play(samples, sr)
        time.sleep(0.5)
        assert player.is_playing
        player.stop()
        assert player.wait(timeout=3.0)  # far less than the 5.7 s clip
        assert player.error is None
        player.play(samples[: sr // 2], sr)  # still usable after a stop
        assert player.wait(timeout=5.0)
    finally:
        player.close()


def test_device_lookup_by_name_and_index(null_sink):
    devices = audio_device.list_devices()
    default = next(d for d in devices if d.is_default_input)
    assert audio_device.find_device(default.index, kind="input") == default
    assert audio_device.find_device(default.name.upper(), kind="output").index == default.index


@pytest.mark.parametrize(
    "spec, match",
    [
        ("no such microphone", "matches no"),  # a name nobody has
        (99, "matches no"),  # an index past the end
    ],
)
def test_unknown_device_is_a_clear_error(null_sink, spec, match):
    with pytest.raises(DeviceError, match=match):
        audio_device.find_device(spec, kind="input")


@pytest.mark.parametrize("seconds", [0.0, -1.0, 500.0])
def test_recording_length_is_checked(seconds):
    with pytest.raises(DeviceError, match="out of range"):
        audio_device.record(seconds)


_NO_DEVICES = r"""
import sys
sys.path.insert(0, sys.argv[1])
import personalization_engine.audio_device as ad
if ad.list_devices():
    print("HAS DEVICES")
    sys.exit(0)
for kind, call in (("input", lambda: ad.find_device(None, kind="input")), ("output", lambda: ad.Player().open())):
    try:
        call()
    except ad.DeviceError as exc:
        print(kind, "DeviceError:", exc)
"""


def test_no_devices_at_all_says_what_to_do(tmp_path):
    """A machine without sound hardware: ALSA's own configuration, no sound server reachable."""
    pytest.importorskip("sounddevice", exc_type=OSError)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALSA_", "PULSE_"))}
    env.update(HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path), PULSE_SERVER=f"unix:{tmp_path}/none")
    proc = subprocess.run([sys.executable, "-c", _NO_DEVICES, str(REPO)], capture_output=True, text=True,
                          timeout=120, env=env)
    if "HAS DEVICES" in proc.stdout:
        pytest.skip("this machine has sound hardware")
    assert proc.returncode == 0, proc.stderr
    assert "input DeviceError: no microphone (input device) found" in proc.stdout
    assert "--ref FILE" in proc.stdout
    assert "output DeviceError: no speaker (output device) found" in proc.stdout and "--no-play" in proc.stdout


_NO_PORTAUDIO = r"""
import ctypes.util, sys
sys.path.insert(0, sys.argv[1])
real = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if "portaudio" in name else real(name)  # hide PortAudio
import personalization_engine, personalization_engine.audio_device as ad, personalization_engine.repl
assert "sounddevice" not in sys.modules, "importing the package must not import sounddevice"
try:
    ad.list_devices()
except ad.DeviceError as exc:
    print("DeviceError:", exc)
"""


def test_missing_portaudio_is_a_device_error_with_the_install_hint():
    proc = subprocess.run([sys.executable, "-c", _NO_PORTAUDIO, str(REPO)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "DeviceError: audio devices unavailable: PortAudio library not found" in proc.stdout
    assert "apt-get install libportaudio2" in proc.stdout and "brew install portaudio" in proc.stdout
