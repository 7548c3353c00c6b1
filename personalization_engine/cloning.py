"""One line of text in, one output pair out: synthesize, measure, fingerprint, write.

The REPL's typed lines, its ``--text-file`` batch mode and ``python -m personalization_engine
clone`` all go through :func:`clone_line`, so every door writes the same pairs. Progress is
reported through callbacks; this module never prints.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import PersonalizationError, SynthesisError
from .fingerprint import OutputPair, build_fingerprint, write_pair
from .schema import GenerationResult, ModelInfo, ReferenceInfo, SynthesisTimings

_LOGGER = logging.getLogger(__name__)

ChunkCallback = Callable[[GenerationResult, "SynthesisProgress"], None]


@dataclass(frozen=True)
class SynthesisProgress:
    """Running totals while a line is synthesized (for progress displays)."""

    frames: int
    audio_s: float
    elapsed_s: float
    time_to_first_audio_s: float | None
    """Seconds from the call to the first chunk with audio (what a listener waits)."""
    chunks: int = 0
    streamed: bool = False
    """True when the model streamed chunks as frames were made (``generate(stream=True)``)."""

    @property
    def speed(self) -> float:
        """Seconds of audio made per second of wall time ("x real-time"; higher is faster)."""
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class CloneSettings:
    """What stays the same across the lines of one session."""

    out_dir: Path
    reference: ReferenceInfo
    language: str = "auto"
    seed: int | None = None
    analysis_s: float | None = None
    """Seconds the reference analysis took (recorded in every fingerprint)."""
    prompt_s: float | None = None
    """Seconds building the voice prompt took."""
    analyze_output: bool = True
    detector: Any | None = None


def model_info(model: Any, voice: Any, *, seed: int | None) -> ModelInfo:
    """The fingerprint's model block, from an adapter ``TTSModel`` and ``Voice``."""
    return ModelInfo(
        model_id=str(getattr(model, "model_id", "unknown")),
        size=str(getattr(model, "size", "unknown")),
        dtype=str(getattr(model, "dtype", "unknown")).replace("torch.", ""),
        device=str(getattr(model, "device", "unknown")),
        mode=str(getattr(voice, "mode", "xvector")),
        seed=seed,
        kind=str(getattr(model, "kind", "base")),
    )


def supports_streaming(model: Any) -> bool:
    """True when ``model.generate`` takes ``stream=True`` (chunks as codec frames are made)."""
    try:
        params = inspect.signature(model.generate).parameters
        return "stream" in params or "options" in params  # tts.TTSModel: stream is a GenerateOptions field
    except (AttributeError, TypeError, ValueError):  # no generate, or a builtin without a signature
        return False


def synthesize(
    model: Any,
    voice: Any,
    text: str,
    *,
    language: str = "auto",
    seed: int | None = None,
    on_chunk: ChunkCallback | None = None,
    stream: bool = False,
) -> tuple[GenerationResult, SynthesisProgress]:
    """Generate ``text`` chunk by chunk, calling ``on_chunk`` after each, and join the chunks.

    With ``stream`` (and a model that supports it, see :func:`supports_streaming`) the chunks
    are pieces of a segment, yielded as codec frames are made; otherwise one chunk per segment.
    Either way each chunk's ``pause_after_s`` is the silence that follows it, and the
    joined result is the whole utterance. Its ``processing_time_s`` is the wall time from this
    call to the last chunk; the progress's ``time_to_first_audio_s`` is the wall time to the
    first chunk with audio. ``KeyboardInterrupt`` closes the generator (the model stays usable)
    and propagates.
    """
    streamed = bool(stream) and supports_streaming(model)
    t0 = time.perf_counter()
    chunks: list[GenerationResult] = []
    progress = SynthesisProgress(0, 0.0, 0.0, None, 0, streamed)
    # Arguments are checked by this call, before anything runs.
    gen = model.generate(text, voice, language=language, seed=seed, **({"stream": True} if streamed else {}))
    try:
        for chunk in gen:
            chunks.append(chunk)
            elapsed = time.perf_counter() - t0
            ttfa = progress.time_to_first_audio_s
            if ttfa is None and len(chunk.audio):
                ttfa = elapsed
            progress = SynthesisProgress(progress.frames + int(chunk.frames),
                                         progress.audio_s + float(chunk.audio_duration_s), elapsed, ttfa,
                                         len(chunks), streamed)
            if on_chunk is not None:
                on_chunk(chunk, progress)
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()
    if not chunks or not any(len(c.audio) for c in chunks):
        raise SynthesisError(f"the model produced no audio for {text[:40]!r}; try a longer or different line.")
    from .tts import join_results  # segments joined with their pauses

    joined = join_results(chunks, text=text, similarity=lambda audio: _similarity(model, voice, audio, chunks[0].sample_rate))
    wall = progress.elapsed_s
    joined = replace(joined, processing_time_s=wall, time_to_first_audio_s=progress.time_to_first_audio_s,
                     real_time_factor=wall / joined.audio_duration_s if joined.audio_duration_s > 0 else float("inf"))
    return joined, progress


def clone_line(
    model: Any,
    voice: Any,
    text: str,
    settings: CloneSettings,
    *,
    on_chunk: ChunkCallback | None = None,
    on_audio: Callable[[GenerationResult], None] | None = None,
    stream: bool = False,
) -> tuple[OutputPair, GenerationResult]:
    """Speak ``text`` in ``voice`` and write its output pair.

    Parameters
    ----------
    model, voice : TTSModel, Voice
        From :mod:`qwen_adapter`.
    text : str
        The line (non-empty).
    settings : CloneSettings
        Output folder, reference, language, seed and the session's earlier timings.
    on_chunk : callable, optional
        Called with each chunk as it arrives (progress, and playback as the audio comes).
    on_audio : callable, optional
        Called with the joined result before analysis and writing.
    stream : bool
        Ask the model for chunks as codec frames are made, where it can (see :func:`synthesize`);
        the written pair is the whole utterance either way.

    Returns
    -------
    (OutputPair, GenerationResult)

    Raises
    ------
    SynthesisError, OutputWriteError
        Generation failed, or the pair could not be written (nothing is left behind).
    """
    text = text.strip()
    if not text:
        raise SynthesisError("nothing to say: the line is empty. Type some text.")
    result, progress = synthesize(model, voice, text, language=settings.language, seed=settings.seed,
                                  on_chunk=on_chunk, stream=stream)
    if on_audio is not None:
        on_audio(result)
    timings = SynthesisTimings(
        synthesis_s=result.processing_time_s,
        real_time_factor=result.real_time_factor,
        time_to_first_audio_s=progress.time_to_first_audio_s,
        analysis_s=settings.analysis_s,
        prompt_s=settings.prompt_s,
    )
    fp = build_fingerprint(
        text=text, result=result, reference=settings.reference,
        model=model_info(model, voice, seed=settings.seed), timings=timings,
        language=settings.language, similarity=result.similarity,
        analyze_output=settings.analyze_output, detector=settings.detector,
    )
    pair = write_pair(settings.out_dir, fp, result.audio, result.sample_rate)
    return pair, result


def _similarity(model: Any, voice: Any, audio: np.ndarray, sample_rate: int) -> float | None:
    """Speaker similarity of the output to the voice, or None when it cannot be measured."""
    try:
        return float(model.similarity(audio, voice, sample_rate=sample_rate))
    except PersonalizationError as exc:
        _LOGGER.info("similarity unavailable: %s", exc)
        return None
