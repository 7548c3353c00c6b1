"""Shared fixtures: the real speech data beside the repo, a fixed-seed RNG and synthetic signals."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Keep numerical libraries to one thread per test process: CI has 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly without CUDA, even when selected with -m gpu."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU either way
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real recorded speech; see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real speech data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def voices_dir(shared_data: Path) -> Path:
    return shared_data / "voices"


@pytest.fixture()
def rng() -> np.random.Generator:
    """A fixed-seed random generator, new for each test."""
    return np.random.default_rng(20261125)


def make_tone(freq_hz: float, duration_s: float, sr: int = 16_000, amplitude: float = 0.5) -> np.ndarray:
    """A pure sine tone."""
    t = np.arange(int(round(duration_s * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.fixture()
def tone_220() -> tuple[np.ndarray, int]:
    """A 2 s, 220 Hz tone at 16 kHz."""
    return make_tone(220.0, 2.0), 16_000


def make_glide(
    f_start_hz: float, f_end_hz: float, duration_s: float, *, kind: str = "linear", sr: int = 16_000
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A sine whose frequency glides linearly or exponentially; returns (signal, f0_at(times_s))."""
    if kind == "linear":
        def f0_at(t: np.ndarray) -> np.ndarray:
            return f_start_hz + (f_end_hz - f_start_hz) * np.clip(t, 0.0, duration_s) / duration_s
    else:
        def f0_at(t: np.ndarray) -> np.ndarray:
            return f_start_hz * (f_end_hz / f_start_hz) ** (np.clip(t, 0.0, duration_s) / duration_s)
    t = np.arange(int(round(duration_s * sr))) / sr
    phase = 2 * np.pi * np.cumsum(f0_at(t)) / sr
    return (0.5 * np.sin(phase)).astype(np.float32), f0_at


def make_bursts(
    rate_hz: float,
    duration_s: float,
    *,
    f0_hz: float | Sequence[float] = 150.0,
    amplitudes: Sequence[float] = (1.0,),
    sr: int = 16_000,
) -> np.ndarray:
    """Syllable-like bursts: a 5-harmonic voiced tone under one raised-cosine envelope per
    ``1 / rate_hz`` seconds (burst k peaks at ``(k + 0.5) / rate_hz``). ``f0_hz`` and
    ``amplitudes`` may cycle over the bursts to make pitch accents or loud syllables."""
    t = np.arange(int(round(duration_s * sr))) / sr
    k = np.floor(t * rate_hz).astype(int)
    f0 = np.atleast_1d(np.asarray(f0_hz, dtype=float))[k % np.size(f0_hz)]
    amp = np.asarray(amplitudes, dtype=float)[k % len(amplitudes)]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(h * phase) / h for h in range(1, 6)) / 1.5
    return (0.3 * amp * np.sin(np.pi * rate_hz * t) ** 2 * voice).astype(np.float32)


# --- Qwen3-TTS tiny checkpoints (tests/test_qwen_adapter.py) ---------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen3-TTS Base checkpoint in the hub layout, built once per session
    through the ``make-tiny`` command line (real qwen-tts classes; a few seconds on CPU)."""
    from personalization_engine import qwen_adapter

    folder = tmp_path_factory.mktemp("qwen3_tts_tiny_base")
    if qwen_adapter._main(["make-tiny", str(folder), "--overwrite"]) != 0:
        raise RuntimeError("make-tiny failed")
    return folder


@pytest.fixture(scope="session")
def tiny_design_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VoiceDesign variant of :func:`tiny_checkpoint` (no speaker encoder)."""
    from personalization_engine import qwen_adapter

    folder = tmp_path_factory.mktemp("qwen3_tts_tiny_design")
    if qwen_adapter._main(["make-tiny", str(folder), "--kind", "voice_design", "--overwrite"]) != 0:
        raise RuntimeError("make-tiny --kind voice_design failed")
    return folder
