"""How much audio to hold back before a streamed line starts playing, so it never stalls.

A streamed line arrives in chunks (``FIRST_CHUNK_FRAMES``, then up to ``CHUNK_FRAMES`` codec frames)
while the model is still generating it. When the generator is slower than real time, or only
just faster, playing the first chunk at once runs the queue dry before the next chunk comes
(an underrun: a gap of silence mid-word). :class:`PrebufferPolicy` says how many seconds of
audio must be queued ahead before the line may start, from the model's measured speed on this
machine (codec frames generated per second of wall time) and the predicted remaining length.

The arithmetic (see :meth:`PrebufferPolicy.required_s`): with ``r`` seconds of audio generated
per second of wall time, ``R`` seconds of audio still to generate and chunks of ``c`` seconds,
chunk ``j`` (1..R/c) arrives ``j*c/r`` from now and starts playing at ``Q + (j-1)*c`` when ``Q``
seconds are queued ahead. No chunk comes late when ``Q >= j*c/r - (j-1)*c`` for every ``j``:

* faster than real time (``r >= 1``) the first chunk binds: ``Q >= c/r``;
* slower (``r < 1``) the last one binds: ``Q >= R/r - R + c``: the queued audio plus the audio
  still to come covers the predicted remaining generation time ``R/r``, with one chunk spare
  (the audio of the chunk being generated is not there yet).

A safety factor (the generator runs that much slower than measured) and a fixed margin (the
player's own device latency and scheduling jitter on a loaded machine) are added on top.
Pure arithmetic: no device, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProfileError
from .rates import FRAMES_PER_S
from .text_segmenter import FRAMES_PER_UNIT, text_units

#: Codec frames per streamed chunk after the first (the adapter's ``CHUNK_FRAMES``: 1.28 s).
DEFAULT_CHUNK_FRAMES = 16
#: The generator is assumed this much slower than its measured speed (load varies on a
#: shared machine; 1.15 covers the spread of repeated RTF measurements here).
DEFAULT_SAFETY = 1.15
#: Extra audio held back (s): the output latency (0.1 s) and thread scheduling jitter.
DEFAULT_MARGIN_S = 0.25


@dataclass(frozen=True)
class PrebufferPolicy:
    """When a streamed line may start playing (see the module docstring for the derivation)."""

    frames_per_s: float
    """Measured generation speed of this model on this machine: codec frames per second of
    wall time (12.5 frames = 1 s of audio, so 12.5 / frames_per_s is the real-time factor)."""
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    """Frames per streamed chunk (the largest chunk the producer hands out)."""
    safety: float = DEFAULT_SAFETY
    """Factor (>= 1) by which the generator may run slower than ``frames_per_s``."""
    margin_s: float = DEFAULT_MARGIN_S
    """Seconds of audio held back on top of the computed need."""

    def __post_init__(self) -> None:
        checks = (("frames_per_s", self.frames_per_s, 1e-3, 1e6), ("chunk_frames", self.chunk_frames, 1, 10_000),
                  ("safety", self.safety, 1.0, 100.0), ("margin_s", self.margin_s, 0.0, 60.0))
        for name, value, low, high in checks:
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise ProfileError(f"prebuffer {name} must be a number in [{low}, {high}], got {value!r}")

    @property
    def audio_per_s(self) -> float:
        """Seconds of audio the generator is assumed to produce per second (safety included)."""
        return self.frames_per_s / FRAMES_PER_S / self.safety

    @property
    def chunk_s(self) -> float:
        return self.chunk_frames / FRAMES_PER_S

    def required_s(self, remaining_audio_s: float, *, audio_per_s: float | None = None) -> float:
        """Seconds of audio that must be queued ahead before playback starts.

        ``remaining_audio_s``: audio of the line not generated yet (predicted length minus what
        was fed); ``audio_per_s`` overrides the generator speed (e.g. one observed on this line).
        0 when nothing remains (the whole line is there).
        """
        remaining = max(0.0, float(remaining_audio_s))
        if remaining <= 0.0:
            return 0.0
        r = self.audio_per_s if audio_per_s is None else max(float(audio_per_s), 1e-6)
        c = min(self.chunk_s, remaining)
        return max(c / r, remaining / r - remaining + c) + self.margin_s

    def remaining_generation_s(self, remaining_audio_s: float) -> float:
        """Predicted wall time until the line is fully generated (s)."""
        return max(0.0, float(remaining_audio_s)) / self.audio_per_s


def expected_line_s(text: str) -> float:
    """Predicted audio length of ``text`` (s): the segmenter's expected frames per length unit
    (English ~14 characters per second), the ``expected_audio_s`` to give ``Player.begin_line``."""
    return text_units(text) * FRAMES_PER_UNIT / FRAMES_PER_S


@dataclass(frozen=True)
class LineStats:
    """Playback facts of one line (``Player.line_stats``), for the result line."""

    underruns: int
    """Times the queue ran dry while the line was still being fed (silence was played)."""
    starved_s: float
    """Seconds of silence those underruns inserted."""
    held_s: float
    """Seconds the line's start was held back to pre-buffer (0 without a policy)."""
    prebuffered_s: float
    """Seconds of audio queued when the line started playing."""


@dataclass
class LineGate:
    """The pre-buffer state of the line a :class:`~.playback.Player` began last (``begin_line``):
    its policy, what was fed when, whether it is still held back, and its underruns."""

    policy: PrebufferPolicy | None = None
    expected_s: float = 0.0
    line: int = 0
    begun_at: float = 0.0
    first_at: float = 0.0  # when the line's first chunk was fed
    fed_s: float = 0.0  # audio of the line fed so far
    later_s: float = 0.0  # audio fed after the first chunk, and when the last chunk came
    last_at: float = 0.0
    final: bool = False
    open: bool = False
    held_s: float = 0.0
    prebuffered_s: float = 0.0
    underruns: int = 0
    starved_s: float = 0.0

    def fed(self, seconds: float, now: float) -> None:
        if self.fed_s == 0.0:
            self.first_at = now
        else:
            self.later_s += seconds
        self.fed_s += seconds
        self.last_at = now

    def observed_audio_per_s(self, policy: PrebufferPolicy) -> float:
        """The generator's speed on this line (audio s per s), or the policy's when faster or unknown."""
        span = self.last_at - self.first_at
        if self.later_s <= 0.0 or span <= 0.0:
            return policy.audio_per_s
        return min(policy.audio_per_s, self.later_s / span / policy.safety)
