"""A private PulseAudio server with a null sink, for real recording and playback tests.

Whatever is played into the sink can be recorded back from its monitor source (see
``../shared/AUDIO_TESTING.md``). The server, its sockets, its state and the ALSA configuration
that routes ALSA's ``default`` device to it all live in a temporary folder: the user's
``~/.asoundrc`` and any running sound server are never touched. Tests skip (with the reason)
when pulseaudio, pactl or PortAudio is not installed; CI installs them with
``apt-get install -y libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ASOUNDRC = "pcm.!default { type pulse }\nctl.!default { type pulse }\n"
APT_HINT = "apt-get install -y libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins"


def _require_tools() -> None:
    for tool in ("pulseaudio", "pactl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed ({APT_HINT})")
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        pytest.skip(f"PortAudio is not installed: {exc} ({APT_HINT})")
    if not any(Path(p).glob("libasound_module_pcm_pulse.so") for p in _alsa_plugin_dirs()):
        pytest.skip(f"the ALSA PulseAudio plugin is not installed ({APT_HINT})")


def _alsa_plugin_dirs() -> list[str]:
    return [str(p) for p in Path("/usr/lib").glob("*/alsa-lib")] + ["/usr/lib/alsa-lib", "/usr/lib64/alsa-lib"]


@contextmanager
def null_sink_server(folder: Path) -> Iterator[dict[str, str]]:
    """Start PulseAudio with a null sink as the default sink and its monitor as the default source.

    Yields the environment variables that point PortAudio/ALSA (in this process or a child) at
    the server. The server is stopped by its process id on exit.
    """
    _require_tools()
    runtime = folder / "pulse-run"
    runtime.mkdir(parents=True, exist_ok=True)
    (folder / "asoundrc").write_text(ASOUNDRC)
    env = {
        "PULSE_RUNTIME_PATH": str(runtime),
        "PULSE_STATE_PATH": str(folder / "pulse-state"),
        "PULSE_SERVER": f"unix:{runtime}/native",
        "ALSA_CONFIG_PATH": str(folder / "asoundrc"),
    }
    full_env = {**os.environ, **env}
    with open(folder / "pulseaudio.log", "w") as log:
        proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no",
             "--load=module-null-sink sink_name=nullsink rate=48000",
             f"--load=module-native-protocol-unix auth-anonymous=1 socket={runtime}/native",
             "--load=module-always-sink"],
            env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(proc, full_env, folder)
            for cmd in (["pactl", "set-default-sink", "nullsink"], ["pactl", "set-default-source", "nullsink.monitor"]):
                subprocess.run(cmd, env=full_env, check=True, capture_output=True, timeout=10)
            yield env
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen[bytes], env: dict[str, str], folder: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"pulseaudio exited at start: {(folder / 'pulseaudio.log').read_text()[-500:]}")
        if subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    pytest.skip("pulseaudio did not start within 15 s")


@contextmanager
def portaudio_env(env: dict[str, str]) -> Iterator[None]:
    """Point this process's PortAudio at ``env`` (re-initialising it), and back afterwards."""
    import sounddevice as sd

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sd._terminate()
    sd._initialize()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sd._terminate()
        sd._initialize()


class MonitorRecorder:
    """Record the null sink's monitor with ``parec`` (PulseAudio's own client, not PortAudio).

    Used to check what a player sent to the sink sample by sample: ``parec`` delivers the
    monitor's samples in order, with none lost at its start, so a played signal can be found in
    the recording by cross-correlation. (PortAudio's ALSA input through the pulse plugin may
    start late or deliver a backlog in a burst, which is fine for pitch checks but not for
    sample-exact ones.) The sink runs only while something plays, so the recording holds the
    played sound plus a little silence around it. A thread notes when the file grows, so
    :meth:`time_of` tells when a recorded sample had reached the sink (``time.monotonic``).
    """

    def __init__(self, env: dict[str, str], path: Path, *, sample_rate: int = 24_000) -> None:
        self.env, self.path, self.sample_rate = {**os.environ, **env}, path, sample_rate
        self._file: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._timeline: list[tuple[float, int]] = []  # (monotonic time, bytes written by then)
        self._watching = False
        self._watcher: Any = None

    def __enter__(self) -> MonitorRecorder:
        if shutil.which("parec") is None:
            pytest.skip(f"parec is not installed ({APT_HINT})")
        self._file = open(self.path, "wb")
        self._proc = subprocess.Popen(
            ["parec", "--device=nullsink.monitor", f"--rate={self.sample_rate}", "--channels=1",
             "--format=float32le", "--latency-msec=20", "--raw"],
            env=self.env, stdout=self._file, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # connected once the server lists the recording stream
            out = subprocess.run(["pactl", "list", "short", "source-outputs"], env=self.env,
                                 capture_output=True, text=True, timeout=10).stdout
            if out.strip():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        import threading

        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        last = -1
        while self._watching:
            size = self.path.stat().st_size
            if size != last:
                self._timeline.append((time.monotonic(), size))
                last = size
            time.sleep(0.005)

    def samples_by(self, when: float) -> int:
        """How many samples had been recorded at time ``when``."""
        return max([size // 4 for t, size in self._timeline if t <= when], default=0)

    def time_of(self, sample: int) -> float:
        """When sample ``sample`` was in the file: an upper bound on when it reached the sink."""
        for t, size in self._timeline:
            if size >= (sample + 1) * 4:
                return t
        raise AssertionError(f"sample {sample} was never recorded")

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # the last played samples reach the monitor
        assert self._proc is not None and self._file is not None
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._watching = False
        self._watcher.join(timeout=5)
        self._file.close()

    def audio(self) -> np.ndarray:
        """The recorded samples (float32 mono at ``sample_rate``)."""
        return np.fromfile(self.path, dtype="<f4")
