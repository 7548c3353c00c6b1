"""The options of one generate call (:class:`GenerateOptions`), checked once, and its plan.

``TTSModel.generate`` and ``generate_design`` take one frozen :class:`GenerateOptions` (or
keyword overrides that build one); the record checks every field when it is made, so an
impossible combination fails before any weights are touched. :func:`make_plan` then checks
what depends on the call (the text, the language against the model's own list) and splits the
text into segments. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ProfileError, SynthesisError
from ..text_segmenter import Segment, split_text

#: Languages of the Qwen3-TTS 12 Hz models ("auto" lets the model decide).
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "auto", "chinese", "english", "german", "italian", "portuguese", "spanish", "japanese",
    "korean", "french", "russian",
)
#: ISO 639-1 codes accepted for the language names above.
LANGUAGE_CODES = {
    "zh": "chinese", "en": "english", "de": "german", "it": "italian", "pt": "portuguese",
    "es": "spanish", "ja": "japanese", "ko": "korean", "fr": "french", "ru": "russian",
}
#: Longest text per generate call (characters), ~6 minutes of speech; split longer documents.
MAX_TEXT_CHARS = 5_000
#: Longest VoiceDesign instruction (characters).
MAX_INSTRUCT_CHARS = 1_000
#: Largest frame cap a caller may ask for (8192 frames = 11 minutes of audio).
MAX_NEW_FRAMES_LIMIT = 8_192
#: Largest top_k: the talker's codec vocabulary (3072 entries).
MAX_TOP_K = 3_072

#: Frames in the first chunk of each streamed segment (80 ms of audio): small, for latency; the
#: player's pre-buffer decides when playback starts. bench_synthesis (int4 0.6B, x-vector, same
#: runs, with the decoder's carried state and adaptive chunks): time to first audio 0.39-0.42 s
#: with 1 frame, 0.60-0.65 s with 2; the total time does not suffer (RTF 1.39-1.62 vs 1.54-1.60).
FIRST_CHUNK_FRAMES = 1
#: Frames in each later chunk (1.28 s); with adaptive chunks (the default) the most a later
#: chunk takes: it holds the frames generated while the chunk before it was decoding.
CHUNK_FRAMES = 16
#: Earlier frames the decoder sees before each chunk where it cannot carry its state (not on
#: CPU). Its transformer's sliding window is 72 frames; 100 brings the joined stream to float
#: precision of the one-shot decode (``stream``). With carried state (CPU) only the reference
#: frames of an ICL voice go in first, at most this many.
LEFT_CONTEXT_FRAMES_STREAM = 100
MAX_CHUNK_FRAMES = 1_000
MAX_LEFT_CONTEXT_FRAMES = 1_000

#: Keyword overrides spelled differently from their field (the benchmark-only ``_min_new_frames``).
_ALIASES = {"_min_new_frames": "min_new_frames"}


@dataclass(frozen=True)
class StreamOptions:
    """Chunking of a streamed generation (see ``TTSModel.generate(stream=True)``)."""

    first_chunk_frames: int = FIRST_CHUNK_FRAMES
    """Frames in the first chunk of each segment (12.5 frames per second of audio)."""
    chunk_frames: int = CHUNK_FRAMES
    """Frames in every later chunk (the segment's last chunk may be shorter); with ``adaptive``
    the most a later chunk holds."""
    left_context_frames: int = LEFT_CONTEXT_FRAMES_STREAM
    """Earlier frames the decoder's transformer sees again before each chunk where the decoder
    cannot carry its state (its convolutions see ``min(left_context_frames,
    CONV_CONTEXT_FRAMES)``; 0 = none, and the chunks click); with carried state (CPU), the
    most reference frames (ICL) that go in before the first chunk."""
    adaptive: bool = True
    """Later chunks take the frames that are ready when the decoder is free (1 to
    ``chunk_frames``; generation and decoding overlapped): small chunks while decoding keeps up,
    so little is left to decode when generation ends. False: exactly ``chunk_frames``."""

    def chunk_size(self, chunk_idx: int) -> int:
        return self.first_chunk_frames if chunk_idx == 0 else self.chunk_frames


@dataclass(frozen=True)
class GenerateOptions:
    """How one ``generate``/``generate_design`` call runs; every field is checked when made.

    Build one and reuse it, or pass keyword overrides to ``generate`` (they replace fields of
    the given record, or of the defaults). A bad value raises :class:`ProfileError` naming the
    option, the value and the allowed range.
    """

    language: str = "auto"
    """``auto`` or one of SUPPORTED_LANGUAGES, any case; ISO codes such as ``en`` work too
    (checked against the loaded model's own list at call time)."""
    temperature: float | None = None
    """Talker sampling temperature in [0, 2]; 0 is greedy decoding (talker and code predictor).
    None: the checkpoint's generation_config.json (0.9)."""
    top_k: int | None = None
    """Top-k of the talker's sampling, 0 to 3072 (None: the checkpoint's, 50)."""
    top_p: float | None = None
    """Top-p of the talker's sampling, in (0, 1] (None: the checkpoint's, 1.0)."""
    seed: int | None = None
    """Makes the output reproducible (segment i uses seed + i; the global RNG is untouched)."""
    max_new_frames: int | None = None
    """Cap on codec frames per segment (12.5 per second), 1 to 8192, on top of the budget
    that ``text_segmenter.frame_budget`` derives from the text length."""
    stream: bool = False
    """Yield chunks while the talker is still producing frames (default: one result per segment)."""
    first_chunk_frames: int = FIRST_CHUNK_FRAMES
    """Streaming: frames in each segment's first chunk, 1 to 1000 (1 = 0.08 s)."""
    chunk_frames: int = CHUNK_FRAMES
    """Streaming: frames in each later chunk, 1 to 1000 (16 = 1.28 s)."""
    left_context_frames: int = LEFT_CONTEXT_FRAMES_STREAM
    """Streaming: earlier frames the decoder sees before each chunk, 0 to 1000 (see
    :attr:`StreamOptions.left_context_frames`). Checked even when not streaming."""
    adaptive_chunks: bool = True
    """Streaming: later chunks hold the frames ready when the decoder is free, at least 4
    (``tts.stream.MIN_MERGED_FRAMES``; fewer only at the end) and at most ``chunk_frames``
    (False: exactly ``chunk_frames``)."""
    min_new_frames: int | None = None
    """Benchmark-only (keyword ``_min_new_frames``): suppress end-of-speech until this many
    frames, so random-weight models generate a fixed length. Not for users."""

    def __post_init__(self) -> None:
        if not isinstance(self.language, str):
            raise SynthesisError(
                f"language must be a string such as 'auto' or 'en', got {type(self.language).__name__}")
        check_sampling(self.temperature, self.top_k, self.top_p)
        for name, low, high in (("seed", 0, 2**63 - 1), ("max_new_frames", 1, MAX_NEW_FRAMES_LIMIT),
                                ("min_new_frames", 1, MAX_NEW_FRAMES_LIMIT)):
            check_int("_min_new_frames" if name == "min_new_frames" else name, getattr(self, name), low, high)
        if self.min_new_frames and self.max_new_frames and self.min_new_frames > self.max_new_frames:
            raise ProfileError(
                f"_min_new_frames ({self.min_new_frames}) exceeds max_new_frames ({self.max_new_frames})")
        for name in ("stream", "adaptive_chunks"):
            if not isinstance(getattr(self, name), bool):
                raise ProfileError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, low, high in (("first_chunk_frames", 1, MAX_CHUNK_FRAMES), ("chunk_frames", 1, MAX_CHUNK_FRAMES),
                                ("left_context_frames", 0, MAX_LEFT_CONTEXT_FRAMES)):
            if getattr(self, name) is None:
                raise ProfileError(f"{name} must be an integer in [{low}, {high}], got None")
            check_int(name, getattr(self, name), low, high)
        for name in ("seed", "max_new_frames", "min_new_frames", "top_k", "first_chunk_frames", "chunk_frames",
                     "left_context_frames"):  # NumPy integers -> int, once checked
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))

    @classmethod
    def build(cls, options: GenerateOptions | None = None, overrides: dict[str, Any] | None = None) -> GenerateOptions:
        """``options`` (default: the defaults) with ``overrides`` replacing fields, checked once.

        Raises
        ------
        TypeError
            An override that is not an option (the message lists the options).
        ProfileError
            ``options`` is not a GenerateOptions, or a value is out of range.
        """
        if options is not None and not isinstance(options, GenerateOptions):
            raise ProfileError(f"options must be a GenerateOptions or None, got {type(options).__name__}; "
                               "pass single options as keywords instead (e.g. seed=0)")
        base = options if options is not None else cls()
        if not overrides:
            return base
        fields = {f.name for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            name = _ALIASES.get(key, key)
            if name not in fields:
                allowed = ", ".join(sorted(fields - {"min_new_frames"}))
                raise TypeError(f"generate() got an unexpected keyword argument {key!r}; the options are {allowed}")
            changes[name] = value
        return dataclasses.replace(base, **changes)

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling keywords for qwen-tts ``generate`` (only those that were set)."""
        return check_sampling(self.temperature, self.top_k, self.top_p)

    @property
    def stream_options(self) -> StreamOptions | None:
        """The chunking when streaming; None for one result per segment."""
        if not self.stream:
            return None
        return StreamOptions(self.first_chunk_frames, self.chunk_frames, self.left_context_frames,
                             self.adaptive_chunks)



@dataclass(frozen=True)
class Plan:
    """One generate call, checked: its text in segments, the model's language name, the options."""

    text: str
    segments: tuple[Segment, ...]
    language: str
    """One of the model's languages (an ISO code resolved to its name)."""
    options: GenerateOptions

    @property
    def sampling(self) -> dict[str, Any]:
        return self.options.sampling

    @property
    def stream(self) -> StreamOptions | None:
        """Chunking when streaming; None for one result per segment."""
        return self.options.stream_options


def make_plan(text: str, options: GenerateOptions, *, languages: tuple[str, ...], model_id: str) -> Plan:
    """Check ``text`` and ``options.language`` against the model into a :class:`Plan`."""
    segments = tuple(split_text(check_text(text)))
    return Plan(text, segments, check_language(options.language, languages, model_id), options)


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


def check_text(text: str) -> str:
    if not isinstance(text, str):
        raise SynthesisError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SynthesisError("text is empty (or only whitespace); type what the voice should say")
    if len(text) > MAX_TEXT_CHARS:
        raise SynthesisError(
            f"text is {len(text):,} characters; at most {MAX_TEXT_CHARS:,} per call (~6 minutes of speech). "
            "Split it, e.g. by paragraph, and generate each part."
        )
    return text


def check_instruct(instruct: str) -> str:
    """A VoiceDesign instruction: a string of at most MAX_INSTRUCT_CHARS (empty means none)."""
    if not isinstance(instruct, str) or len(instruct) > MAX_INSTRUCT_CHARS:
        got = type(instruct).__name__ if not isinstance(instruct, str) else f"{len(instruct)} characters"
        raise ProfileError(f"instruct must be a string of at most {MAX_INSTRUCT_CHARS} characters, got {got}")
    return instruct


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None) -> dict[str, Any]:
    """The qwen-tts sampling keywords of the given (checked) values."""
    out: dict[str, Any] = {}
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ProfileError(f"temperature must be a number in [0, 2] (0 = greedy), got {temperature!r}")
        if temperature == 0:
            out.update(do_sample=False, subtalker_dosample=False)
        else:
            out["temperature"] = float(temperature)
    check_int("top_k", top_k, 0, MAX_TOP_K)
    if top_k is not None:
        out["top_k"] = int(top_k)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ProfileError(f"top_p must be in (0, 1], got {top_p!r}")
        out["top_p"] = float(top_p)
    return out


def check_int(name: str, value: int | None, low: int, high: int) -> None:
    """None, or an integer (not a bool) in [low, high]; ProfileError names the option otherwise."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ProfileError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
