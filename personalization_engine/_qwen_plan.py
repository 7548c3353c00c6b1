"""The checked plan of one Qwen3-TTS generate call, and the records it yields.

:func:`make_plan` checks every argument of ``TTSModel.generate``/``generate_design`` before any
work starts (text, language, sampling, seed, frame caps, streaming options) and splits the text
into segments; :func:`segment_result` turns one generated segment (or streamed chunk) into its
:class:`GenerationResult`. No torch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._qwen_inputs import check_int, check_sampling, check_text
from ._qwen_stream import StreamOptions, check_stream_options
from .errors import ProfileError, SynthesisError
from .schema import GenerationResult
from .text_segmenter import Segment, split_text

_LOGGER = logging.getLogger(__name__)

MAX_NEW_FRAMES_LIMIT = 8_192
LANGUAGE_CODES = {
    "zh": "chinese", "en": "english", "de": "german", "it": "italian", "pt": "portuguese",
    "es": "spanish", "ja": "japanese", "ko": "korean", "fr": "french", "ru": "russian",
}


@dataclass(frozen=True)
class Plan:
    """Checked arguments of one generate call."""

    text: str
    segments: tuple[Segment, ...]
    language: str
    sampling: dict[str, Any]
    seed: int | None
    max_new_frames: int | None
    min_new_frames: int | None
    stream: StreamOptions | None = None
    """Chunking when streaming; None for one result per segment."""


def make_plan(text: str, language: str, temperature: float | None, top_k: int | None, top_p: float | None,
              seed: int | None, max_new_frames: int | None, min_new_frames: int | None,
              streaming: tuple[bool, int, int, int], *, languages: tuple[str, ...], model_id: str) -> Plan:
    """Check every argument of a generate call (text first, then language, sampling, ...) into a :class:`Plan`."""
    segments = tuple(split_text(check_text(text)))
    lang = check_language(language, languages, model_id)
    sampling = check_sampling(temperature, top_k, top_p)
    for name, value, low, high in (("seed", seed, 0, 2**63 - 1), ("max_new_frames", max_new_frames, 1, MAX_NEW_FRAMES_LIMIT),
                                   ("_min_new_frames", min_new_frames, 1, MAX_NEW_FRAMES_LIMIT)):
        check_int(name, value, low, high)
    if min_new_frames and max_new_frames and min_new_frames > max_new_frames:
        raise ProfileError(f"_min_new_frames ({min_new_frames}) exceeds max_new_frames ({max_new_frames})")
    stream, *chunking = streaming
    if not isinstance(stream, bool):
        raise ProfileError(f"stream must be True or False, got {stream!r}")
    options = check_stream_options(*chunking)
    return Plan(text, segments, lang, sampling, seed, max_new_frames, min_new_frames, options if stream else None)


def check_language(language: str, languages: tuple[str, ...], model_id: str) -> str:
    """``language`` (a name or ISO code, any case) as one of ``languages``, the model's own."""
    lang = str(language).strip().lower() if isinstance(language, str) else ""
    lang = LANGUAGE_CODES.get(lang, lang)
    if lang not in languages:
        raise SynthesisError(
            f"language {language!r} is not supported by {model_id}; use 'auto' or one of "
            f"{', '.join(x for x in languages if x != 'auto')} (or their ISO codes, e.g. 'en')."
        )
    return lang


def segment_result(plan: Plan, idx: int, audio: np.ndarray, frames: int, t0: float, start: float, budget: int,
                   sim: float | None, chunk: tuple[int, bool, int] | None = None, *, sample_rate: int,
                   peak_memory_gb: Callable[[], float]) -> GenerationResult:
    """The record of a segment, or (``chunk`` = (index, last in segment, first frame)) of a chunk."""
    chunk_idx, segment_final, frame_start = chunk if chunk is not None else (0, True, 0)
    seg = plan.segments[idx]
    elapsed = time.perf_counter() - t0
    seg_frames = frame_start + frames
    hit = segment_final and seg_frames >= budget
    if hit and not plan.min_new_frames:
        _LOGGER.warning("segment %d stopped at its budget of %d frames (no end-of-speech): %r", idx, budget, seg.text[:60])
    duration = len(audio) / sample_rate
    extra: dict[str, Any] = {"pause_after_s": seg.pause_after_s if segment_final else 0.0, "frame_budget": budget,
                             "hit_budget": hit, "language": plan.language,
                             "seed": None if plan.seed is None else plan.seed + idx}
    if chunk is not None:
        extra.update(chunk_idx=chunk_idx, segment_final=segment_final, frame_start=frame_start)
    return GenerationResult(
        audio=audio, sample_rate=sample_rate, segment_idx=idx, frames=frames,
        audio_duration_s=duration, processing_time_s=elapsed,
        real_time_factor=elapsed / duration if duration > 0 else float("inf"),
        peak_memory_gb=peak_memory_gb(), is_final=segment_final and idx == len(plan.segments) - 1,
        text=seg.text, similarity=sim,
        time_to_first_audio_s=time.perf_counter() - start if idx == 0 and chunk_idx == 0 else None, extra=extra,
    )
