"""Compatibility name of the Qwen3-TTS package: everything here lives in ``personalization_engine.tts``.

Kept so that ``from personalization_engine.qwen_adapter import load_model, Voice, ...`` and
``python -m personalization_engine.qwen_adapter make-tiny DIR`` keep working; new code imports
from :mod:`personalization_engine.tts`.
"""

from __future__ import annotations

import sys

from .rates import SAMPLES_PER_FRAME as SAMPLES_PER_FRAME
from .tts import (
    MODEL_ALIASES,
    SUPPORTED_LANGUAGES,
    GenerateOptions,
    TTSModel,
    Voice,
    describe_voice,
    join_results,
    load_model,
)
from .tts.device import describe_device as describe_device
from .tts.device import load_with_fallback as _load_with_fallback  # noqa: F401 (tests use it)
from .tts.device import resolve_device as resolve_device
from .tts.inputs import (
    LEFT_CONTEXT_FRAMES as LEFT_CONTEXT_FRAMES,
)
from .tts.inputs import (
    MAX_TRANSCRIPT_CHARS as MAX_TRANSCRIPT_CHARS,
)
from .tts.inputs import (
    REF_TAIL_SILENCE_S as REF_TAIL_SILENCE_S,
)
from .tts.inputs import (
    SAMPLE_RATE as SAMPLE_RATE,
)
from .tts.inputs import (
    prepare_reference as prepare_reference,
)
from .tts.model import MIN_SIMILARITY_S as MIN_SIMILARITY_S
from .tts.options import (
    CHUNK_FRAMES as CHUNK_FRAMES,
)
from .tts.options import (
    FIRST_CHUNK_FRAMES as FIRST_CHUNK_FRAMES,
)
from .tts.options import (
    LANGUAGE_CODES as LANGUAGE_CODES,
)
from .tts.options import (
    LEFT_CONTEXT_FRAMES_STREAM as LEFT_CONTEXT_FRAMES_STREAM,
)
from .tts.options import (
    MAX_INSTRUCT_CHARS as MAX_INSTRUCT_CHARS,
)
from .tts.options import (
    MAX_NEW_FRAMES_LIMIT as MAX_NEW_FRAMES_LIMIT,
)
from .tts.options import (
    MAX_TEXT_CHARS as MAX_TEXT_CHARS,
)
from .tts.options import (
    StreamOptions as StreamOptions,
)
from .tts.runtime import (
    fixed_min_frames as fixed_min_frames,
)
from .tts.runtime import (
    import_qwen_tts as import_qwen_tts,
)
from .tts.runtime import (
    process_peak_rss_gb as process_peak_rss_gb,
)
from .tts.stream import ChunkDecoder as ChunkDecoder
from .tts.stream import chunk_frames as chunk_frames
from .tts.tiny import (
    main as _main,  # python -m personalization_engine.qwen_adapter make-tiny DIR
)

__all__ = [
    "load_model", "TTSModel", "Voice", "GenerateOptions", "describe_voice", "join_results",
    "SUPPORTED_LANGUAGES", "MODEL_ALIASES",
]

if __name__ == "__main__":
    sys.exit(_main())
