"""One line of text in, one output pair out: generate, measure, fingerprint, write.

:class:`~personalization_engine.session.CloneSession` speaks every line through
:func:`clone_line` (typed lines, ``--text-file`` batches and ``python -m personalization_engine
clone`` alike), so every door writes the same pairs. The walk of one line::

    clone_line -> synthesize -> TTSModel.generate (chunks) -> tts.join_results
               -> fingerprint.build_fingerprint -> fingerprint.write_pair (through fileio)

Progress is reported through callbacks; this module never prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import PersonalizationError, SynthesisError
from .fingerprint import OutputPair, build_fingerprint, write_pair
from .schema import GenerationResult, ModelInfo, ReferenceInfo, SynthesisTimings
from .tts import GenerateOptions, TTSModel, Voice, join_results

if TYPE_CHECKING:
    from .emotion_detector import EmotionDetector

_LOGGER = logging.getLogger(__name__)

ChunkCallback = Callable[[GenerationResult, "SynthesisProgress"], None]
"""Called with each chunk as it arrives and the running totals."""
AudioCallback = Callable[[GenerationResult], None]
"""Called with the joined result, before it is analysed and written."""


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
    """True when the chunks are pieces of segments, yielded as codec frames were made."""

    @property
    def speed(self) -> float:
        """Seconds of audio made per second of wall time ("x real-time"; higher is faster)."""
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def real_time_factor(self) -> float | None:
        """RTF so far: processing time / audio duration (lower is faster; below 1 keeps up with
        playback). The unit of ``GenerationResult``, the fingerprint and the benchmarks."""
        return self.elapsed_s / self.audio_s if self.audio_s > 0 else None


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
    detector: EmotionDetector | None = None
    """The emotion detector for the output's analysis (default: the shipped one)."""


def model_info(model: TTSModel, voice: Voice, *, seed: int | None) -> ModelInfo:
    """The fingerprint's model block."""
    return ModelInfo(model_id=model.model_id, size=model.size, dtype=str(model.dtype).replace("torch.", ""),
                     device=model.device, mode=voice.mode, seed=seed, kind=model.kind, quant=model.quant)


def clone_line(
    model: TTSModel,
    voice: Voice,
    text: str,
    settings: CloneSettings,
    *,
    on_chunk: ChunkCallback | None = None,
    on_audio: AudioCallback | None = None,
    stream: bool = False,
) -> tuple[OutputPair, GenerationResult]:
    """Speak ``text`` in ``voice`` and write its output pair.

    Parameters
    ----------
    model, voice : TTSModel, Voice
        From :mod:`personalization_engine.tts`.
    text : str
        The line (non-empty).
    settings : CloneSettings
        Output folder, reference, language, seed and the session's earlier timings.
    on_chunk : callable, optional
        Called with each chunk as it arrives (progress, and playback as the audio comes).
    on_audio : callable, optional
        Called with the joined result before analysis and writing.
    stream : bool
        Ask the model for chunks as codec frames are made (see :func:`synthesize`); the
        written pair is the whole utterance either way.

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


def synthesize(
    model: TTSModel,
    voice: Voice,
    text: str,
    *,
    language: str = "auto",
    seed: int | None = None,
    on_chunk: ChunkCallback | None = None,
    stream: bool = False,
) -> tuple[GenerationResult, SynthesisProgress]:
    """Generate ``text`` chunk by chunk, calling ``on_chunk`` after each, and join the chunks.

    With ``stream`` the chunks are pieces of a segment, yielded as codec frames are made;
    otherwise one chunk per segment. Either way each chunk's ``pause_after_s`` is the silence
    that follows it, and the joined result (``tts.join_results``) is the whole utterance. Its
    ``processing_time_s`` is the wall time from this call to the last chunk; the progress's
    ``time_to_first_audio_s`` is the wall time to the first chunk with audio.
    ``KeyboardInterrupt`` closes the generator (the model stays usable) and propagates.
    """
    options = GenerateOptions(language=language, seed=seed, stream=stream)
    t0 = time.perf_counter()
    chunks: list[GenerationResult] = []
    progress = SynthesisProgress(0, 0.0, 0.0, None, 0, stream)
    gen = model.generate(text, voice, options)  # checks the arguments before anything runs
    try:
        for chunk in gen:
            chunks.append(chunk)
            progress = _advance(progress, chunk, time.perf_counter() - t0)
            if on_chunk is not None:
                on_chunk(chunk, progress)
    finally:
        if isinstance(gen, Generator):
            gen.close()  # stops generation at its next step (Ctrl-C, a failing callback)
    if not any(len(c.audio) for c in chunks):
        raise SynthesisError(f"the model produced no audio for {text[:40]!r}; try a longer or different line.")
    sample_rate = chunks[0].sample_rate
    joined = join_results(chunks, text=text, similarity=lambda audio: _similarity(model, voice, audio, sample_rate))
    wall = progress.elapsed_s
    rtf = wall / joined.audio_duration_s if joined.audio_duration_s > 0 else float("inf")
    joined = replace(joined, processing_time_s=wall, time_to_first_audio_s=progress.time_to_first_audio_s,
                     real_time_factor=rtf)
    return joined, progress


def _advance(progress: SynthesisProgress, chunk: GenerationResult, elapsed: float) -> SynthesisProgress:
    """The running totals after one more chunk."""
    ttfa = progress.time_to_first_audio_s
    if ttfa is None and len(chunk.audio):
        ttfa = elapsed
    return SynthesisProgress(progress.frames + int(chunk.frames), progress.audio_s + float(chunk.audio_duration_s),
                             elapsed, ttfa, progress.chunks + 1, progress.streamed)


def _similarity(model: TTSModel, voice: Voice, audio: np.ndarray, sample_rate: int) -> float | None:
    """Speaker similarity of the output to the voice, or None when it cannot be measured."""
    try:
        return float(model.similarity(audio, voice, sample_rate=sample_rate))
    except PersonalizationError as exc:
        _LOGGER.info("similarity unavailable: %s", exc)
        return None
