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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
    log = open(folder / "pulseaudio.log", "w")
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
        log.close()


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
