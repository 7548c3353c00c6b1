"""The records a generate call yields: one per segment (or streamed chunk), and their join.

:func:`segment_result` turns one generated segment, or one streamed chunk of it, into its
:class:`~personalization_engine.schema.GenerationResult`, with the chunk facts as typed fields
(``pause_after_s``, ``segment_final``, ``chunk_idx``, ``frame_start``, ``hit_budget``);
:func:`join_results` joins such records, with the segments' pauses, into one final result
(what ``TTSModel.synthesize`` returns). No torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SynthesisError
from ..schema import GenerationResult
from .options import Plan

_LOGGER = logging.getLogger(__name__)


def segment_result(plan: Plan, idx: int, audio: np.ndarray, frames: int, t0: float, start: float, budget: int,
                   sim: float | None, chunk: tuple[int, bool, int] | None = None, *, sample_rate: int,
                   peak_memory_gb: Callable[[], float]) -> GenerationResult:
    """The record of segment ``idx``, or (``chunk`` = (index, last in segment, first frame)) of a chunk.

    ``t0`` is when this record's work began and ``start`` when the call began (both
    ``time.perf_counter``); ``budget`` is the segment's frame budget, ``sim`` its similarity.
    """
    chunk_idx, segment_final, frame_start = chunk if chunk is not None else (0, True, 0)
    seg = plan.segments[idx]
    elapsed = time.perf_counter() - t0
    hit = segment_final and frame_start + frames >= budget
    if hit and not plan.options.min_new_frames:
        _LOGGER.warning("segment %d stopped at its budget of %d frames (no end-of-speech): %r",
                        idx, budget, seg.text[:60])
    duration = len(audio) / sample_rate
    extra: dict[str, Any] = {"frame_budget": budget, "language": plan.language,
                             "seed": None if plan.options.seed is None else plan.options.seed + idx}
    return GenerationResult(
        audio=audio, sample_rate=sample_rate, segment_idx=idx, frames=frames,
        audio_duration_s=duration, processing_time_s=elapsed,
        real_time_factor=elapsed / duration if duration > 0 else float("inf"),
        peak_memory_gb=peak_memory_gb(), is_final=segment_final and idx == len(plan.segments) - 1,
        text=seg.text, similarity=sim,
        time_to_first_audio_s=time.perf_counter() - start if idx == 0 and chunk_idx == 0 else None, extra=extra,
        pause_after_s=seg.pause_after_s if segment_final else 0.0, segment_final=segment_final,
        chunk_idx=chunk_idx, frame_start=frame_start, hit_budget=hit,
    )


def join_results(results: list[GenerationResult], *, text: str = "",
                 similarity: Callable[[np.ndarray], float | None] | None = None) -> GenerationResult:
    """Join segment results, or streamed chunks, into one final result.

    Chunks of a segment are concatenated directly; a segment's pause (``pause_after_s``)
    follows its last record (``segment_final``, which a non-streamed result is), except after
    the final one. ``similarity`` measures the joined audio when there is more than one
    segment; with one segment its own value is kept. ``hit_budget`` is set when any segment
    stopped at its frame budget; ``extra`` lists the segments' frames, similarities and pauses.
    """
    if not results:
        raise SynthesisError("nothing was generated")
    sr = results[0].sample_rate
    parts: list[np.ndarray] = []
    finals: list[GenerationResult] = []
    seg_frames: dict[int, int] = {}
    for r in results:
        parts.append(r.audio)
        seg_frames[r.segment_idx] = seg_frames.get(r.segment_idx, 0) + r.frames
        if r.segment_final:
            finals.append(r)
            pause = float(r.pause_after_s) if not r.is_final else 0.0
            parts.append(np.zeros(int(round(pause * sr)), dtype=np.float32))
    audio = np.concatenate(parts).astype(np.float32)
    duration = len(audio) / sr
    elapsed = sum(r.processing_time_s for r in results)
    if len(seg_frames) == 1:
        sim = finals[-1].similarity if finals else None
    else:
        sim = similarity(audio) if similarity is not None else None
    return GenerationResult(
        audio=audio, sample_rate=sr, segment_idx=0, frames=sum(r.frames for r in results), audio_duration_s=duration,
        processing_time_s=elapsed, real_time_factor=elapsed / duration if duration > 0 else float("inf"),
        peak_memory_gb=max(r.peak_memory_gb for r in results), is_final=True,
        text=text or " ".join(r.text for r in finals), similarity=sim,
        time_to_first_audio_s=results[0].time_to_first_audio_s,
        extra={"segments": len(seg_frames), "segment_frames": list(seg_frames.values()), "chunks": len(results),
               "segment_similarity": [r.similarity for r in finals],
               "pauses_s": [float(r.pause_after_s) for r in finals[:-1]]},
        hit_budget=any(r.hit_budget for r in results),
    )
