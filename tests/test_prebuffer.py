"""The pre-buffer arithmetic of :mod:`personalization_engine.prebuffer` (no device needed)."""

from __future__ import annotations

import numpy as np
import pytest

from personalization_engine.errors import ProfileError
from personalization_engine.prebuffer import PrebufferPolicy, expected_line_s
from personalization_engine.rates import FRAMES_PER_S


def _late(queued_s: float, remaining_s: float, audio_per_s: float, chunk_s: float) -> bool:
    """Simulate the stream: does any chunk arrive after the player reached its start?"""
    n = int(np.ceil(remaining_s / chunk_s - 1e-9))
    for j in range(1, n + 1):
        arrives = min(j * chunk_s, remaining_s) / audio_per_s
        starts = queued_s + (j - 1) * chunk_s
        if arrives > starts + 1e-9:
            return True
    return False


def test_faster_than_real_time_needs_only_the_next_chunk():
    """r = 2 s of audio per s: the first chunk binds, Q = c / r (+ margin)."""
    policy = PrebufferPolicy(frames_per_s=2 * FRAMES_PER_S, chunk_frames=16, safety=1.0, margin_s=0.1)
    assert policy.required_s(10.0) == pytest.approx(1.28 / 2 + 0.1)


def test_slower_than_real_time_covers_the_remaining_generation_time():
    """r = 0.5: 10 s still to generate take 20 s; 10 s of it arrive while playing, so the
    queue must hold the other 10 s plus one chunk."""
    policy = PrebufferPolicy(frames_per_s=0.5 * FRAMES_PER_S, chunk_frames=16, safety=1.0, margin_s=0.0)
    assert policy.remaining_generation_s(10.0) == pytest.approx(20.0)
    assert policy.required_s(10.0) == pytest.approx(20.0 - 10.0 + 1.28)


def test_nothing_left_to_generate_needs_no_buffer():
    policy = PrebufferPolicy(frames_per_s=1.0)
    assert policy.required_s(0.0) == 0.0
    assert policy.required_s(-3.0) == 0.0  # the line came out longer than predicted


def test_a_short_remainder_counts_as_one_short_chunk():
    policy = PrebufferPolicy(frames_per_s=FRAMES_PER_S, chunk_frames=16, safety=1.0, margin_s=0.0)
    assert policy.required_s(0.5) == pytest.approx(0.5)  # arrives in 0.5 s at real time


def test_safety_factor_slows_the_assumed_generator():
    base = PrebufferPolicy(frames_per_s=FRAMES_PER_S / 0.9, safety=1.0, margin_s=0.0)
    safe = PrebufferPolicy(frames_per_s=FRAMES_PER_S / 0.9, safety=1.2, margin_s=0.0)
    assert safe.audio_per_s == pytest.approx(base.audio_per_s / 1.2)
    assert safe.required_s(10.0) > base.required_s(10.0)


def test_observed_speed_overrides_the_policy():
    policy = PrebufferPolicy(frames_per_s=2 * FRAMES_PER_S, safety=1.0, margin_s=0.0)
    assert policy.required_s(10.0, audio_per_s=0.5) == pytest.approx(20.0 - 10.0 + 1.28)


@pytest.mark.parametrize("audio_per_s", [0.3, 0.7, 0.9, 1.0, 1.1, 2.5])
@pytest.mark.parametrize("remaining_s", [0.3, 1.28, 3.84, 5.0, 8.96, 9.68])
def test_required_buffer_is_enough_and_tight(audio_per_s, remaining_s):
    """Against a chunk-by-chunk simulation: the computed queue never lets a chunk come late.
    When the remainder is whole chunks the bound is tight (50 ms less is late); otherwise the
    last, shorter chunk is counted as a whole one (the predicted length is only a guess)."""
    policy = PrebufferPolicy(frames_per_s=audio_per_s * FRAMES_PER_S, chunk_frames=16, safety=1.0, margin_s=0.0)
    need = policy.required_s(remaining_s)
    assert not _late(need, remaining_s, audio_per_s, policy.chunk_s)
    chunks = remaining_s / policy.chunk_s
    whole = abs(chunks - round(chunks)) < 1e-9 or remaining_s < policy.chunk_s
    if whole:
        assert _late(need - 0.05, remaining_s, audio_per_s, policy.chunk_s)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames_per_s": 0.0}, "frames_per_s"),  # no measured speed: pass None to begin_line instead
        ({"frames_per_s": float("nan")}, "frames_per_s"),  # a failed measurement
        ({"frames_per_s": 10.0, "chunk_frames": 0}, "chunk_frames"),  # chunks hold at least a frame
        ({"frames_per_s": 10.0, "safety": 0.5}, "safety"),  # would assume a faster generator
        ({"frames_per_s": 10.0, "margin_s": -1.0}, "margin_s"),  # negative margin
        ({"frames_per_s": "fast"}, "frames_per_s"),  # not a number
    ],
)
def test_bad_policy_is_rejected(kwargs, match):
    with pytest.raises(ProfileError, match=match):
        PrebufferPolicy(**kwargs)


def test_expected_line_length_follows_the_segmenter():
    """14 Latin characters are about a second of English speech (0.9 frames per character)."""
    assert expected_line_s("x" * 140) == pytest.approx(140 * 0.9 / FRAMES_PER_S)
    assert expected_line_s("") == 0.0
