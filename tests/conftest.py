"""Shared fixtures: the real speech data beside the repo, a fixed-seed RNG and synthetic signals."""

from __future__ import annotations

import os
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
