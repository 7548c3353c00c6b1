"""The Qwen3-TTS adapter: load the model once, turn a reference into a Voice, speak text in it.

Built on the official ``qwen-tts`` package (``Qwen3TTSModel.from_pretrained``, the model's
``generate``, its speaker encoder and 12 Hz speech tokenizer); this module only adds what users
need around it::

    model = load_model("0.6b")                      # resident; device/dtype picked for you
    voice = model.create_voice("me.wav", transcript="What I say in me.wav.")   # once
    for result in model.generate("Any text, as long as you like.", voice):     # per line
        play(result.audio)                           # 24 kHz float32, one segment at a time
    voice.save("voices/me"); Voice.load("voices/me") # safetensors + JSON, no pickle

Generation pipeline per segment (see :meth:`TTSModel.generate`): text -> segments at sentence
and clause boundaries (``text_segmenter``) -> talker + code predictor produce codec frames
(``_segment_codes``, capped by a budget derived from the text length) -> the causal 12 Hz
decoder turns frames into audio (``_decode``; in ICL mode with the last 25 reference frames as
left context) -> speaker similarity of the output to the voice. With ``stream=True`` the same
qwen-tts ``generate`` runs in a worker thread and its frames are decoded in chunks as they
arrive (``_qwen_stream``), so the first audio comes after a few frames::

    for chunk in model.generate(text, voice, stream=True):   # first chunk after 4 frames
        player.play(chunk.audio)                               # then every 16 frames

``GenerationResult.real_time_factor`` is processing time / audio duration (lower is faster;
mlx-audio uses the name for the inverse). ``peak_memory_gb`` is ``torch.cuda.max_memory_allocated``
during the segment on CUDA, and the process's peak resident set size so far (``getrusage``) on
CPU/MPS, in 1e9 bytes.

Heavy packages (torch, qwen_tts) are imported on first use, so importing this module is cheap.
The internals live in private modules next to this one: ``_qwen_device`` (device/dtype, loader
and its CUDA-OOM fallback), ``_qwen_hub`` (finding/downloading weights), ``_qwen_inputs`` and
``_qwen_plan`` (argument checks, result records), ``_qwen_voice``, ``_qwen_stream``,
``_qwen_runtime`` and ``_qwen_tiny`` (the ``make-tiny`` checkpoint and command line).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ._qwen_device import (
    describe_device as describe_device,
    load_qwen as _load_qwen,
    load_with_fallback as _load_with_fallback,
    report as _report,
    resolve_device as resolve_device,
)
from ._qwen_hub import MODEL_ALIASES, resolve_model
# Re-exported helpers ("x as x"): the constants, resolve_device, describe_device,
# prepare_reference, join_results, fixed_min_frames (benchmarks), import_qwen_tts and
# process_peak_rss_gb are public too.
from ._qwen_inputs import (
    MAX_TEXT_CHARS as MAX_TEXT_CHARS,
    MAX_TRANSCRIPT_CHARS as MAX_TRANSCRIPT_CHARS,
    REF_TAIL_SILENCE_S as REF_TAIL_SILENCE_S,
    SAMPLE_RATE,
    analyze_reference,
    check_transcript,
    load_reference,
    prepare_reference as prepare_reference,
    reference_name,
    reference_sha256,
)
from ._qwen_plan import (
    LANGUAGE_CODES as LANGUAGE_CODES,
    MAX_NEW_FRAMES_LIMIT as MAX_NEW_FRAMES_LIMIT,
    Plan,
    make_plan,
    segment_result,
)
from ._qwen_runtime import (
    cosine,
    fixed_min_frames as fixed_min_frames,
    free_memory,
    import_qwen_tts as import_qwen_tts,
    join_results as join_results,
    process_peak_rss_gb as process_peak_rss_gb,
    seeded,
    torch_module,
)
from ._qwen_stream import (
    CHUNK_FRAMES,
    FIRST_CHUNK_FRAMES,
    LEFT_CONTEXT_FRAMES_STREAM,
    ChunkDecoder,
    FrameStream,
    check_streamed,
)
from ._qwen_tiny import main as _main  # python -m personalization_engine.qwen_adapter make-tiny DIR
from ._qwen_voice import Voice, check_voice, describe_voice
from .errors import AudioInputError, ModelLoadError, ProfileError, SynthesisError
from .schema import AudioClip, GenerationResult, VoiceProfile
from .text_segmenter import frame_budget

__all__ = [
    "load_model", "TTSModel", "Voice", "describe_voice", "SUPPORTED_LANGUAGES", "MODEL_ALIASES",
]

_LOGGER = logging.getLogger(__name__)

#: Codec frame size of the 12 Hz tokenizer (24000 / 1920 = 12.5 frames per second).
SAMPLES_PER_FRAME = 1920
#: Reference frames kept as decoder left context in ICL mode: qwen-tts' own chunked decoder
#: uses 25 frames (2 s) of context between chunks, which covers the causal convolutions.
LEFT_CONTEXT_FRAMES = 25
MAX_INSTRUCT_CHARS = 1_000
#: Outputs shorter than this get no similarity (the speaker encoder needs ~0.25 s of audio).
MIN_SIMILARITY_S = 0.25
#: Languages of the Qwen3-TTS 12 Hz models ("auto" lets the model decide).
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "auto", "chinese", "english", "german", "italian", "portuguese", "spanish", "japanese",
    "korean", "french", "russian",
)

_resident: "TTSModel | None" = None


# --- loading -----------------------------------------------------------------------------------


def load_model(
    name_or_path: str = "0.6b",
    *,
    device: str = "auto",
    dtype: str = "auto",
    progress: Callable[[str], None] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
) -> "TTSModel":
    """Load a Qwen3-TTS model once and keep it resident.

    Parameters
    ----------
    name_or_path : str
        ``"0.6b"`` (default), ``"1.7b"``, ``"1.7b-design"``, a hub repo id, or a local folder
        in the hub layout (e.g. one written by ``make-tiny``).
    device : {"auto", "cuda", "cuda:N", "mps", "cpu"}
        ``auto`` picks CUDA > Apple MPS > CPU.
    dtype : {"auto", "bfloat16", "float16", "float32"}
        ``auto``: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on MPS and CPU.
    progress : callable, optional
        Receives short status lines (download progress, loading, fallbacks).
    models_dir : path, optional
        Folder searched first for local weights (default ``./models`` then the repo's ``models/``).

    Returns
    -------
    TTSModel
        The same object again when called with the same model, device and dtype; a different
        model replaces (and frees) the resident one.

    Raises
    ------
    ProfileError
        Impossible device/dtype options (checked before any weights are touched).
    ModelLoadError
        Weights missing and not downloadable (the message has the download command), or damaged.
    """
    global _resident
    dev, dt, warnings = resolve_device(device, dtype)
    folder, model_id = resolve_model(name_or_path, models_dir=models_dir, progress=progress)
    key = (model_id, str(folder.resolve()), dev, dt)
    if _resident is not None and not _resident.closed and _resident._key == key:
        return _resident
    if _resident is not None:
        _LOGGER.info("freeing %s before loading %s", _resident.model_id, model_id)
        _resident.close()
    _report(progress, f"loading {model_id} on {dev} ({dt})")
    t0 = time.perf_counter()
    qwen, dev, dt, fallback = _load_with_fallback(lambda d, t: _load_qwen(folder, d, t), dev, dt, progress)
    model = TTSModel(qwen, model_id=model_id, model_dir=folder, device=dev, dtype=dt, warnings=warnings + fallback)
    model._key = key
    _LOGGER.info("loaded %s on %s (%s) in %.1f s", model_id, dev, dt, time.perf_counter() - t0)
    _resident = model
    return model


# --- the resident model --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    """A Voice as tensors on the model's device, built once per voice."""

    voice_clone_prompt: dict[str, list[Any]]
    ref_ids: Any
    context_codes: Any


class TTSModel:
    """A loaded Qwen3-TTS model (Base for cloning, VoiceDesign for designed voices).

    Made by :func:`load_model`; the constructor wraps an already loaded ``qwen_tts.Qwen3TTSModel``
    (``bench/build_full_size.py`` uses it for in-memory random-weight models).
    """

    def __init__(self, qwen: Any, *, model_id: str, model_dir: Path, device: str, dtype: str,
                 warnings: list[str] | None = None) -> None:
        cfg = qwen.model.config
        talker = qwen.model.talker
        # The value transformers sets by itself for open-ended generation, minus its warning.
        talker.generation_config.pad_token_id = talker.config.codec_eos_token_id
        self._qwen = qwen
        self.model_id = model_id
        self.model_dir = Path(model_dir)
        self.device = device
        self.dtype = dtype
        self.kind: str = str(cfg.tts_model_type)
        self.size: str = {"0b6": "0.6B", "1b7": "1.7B"}.get(str(cfg.tts_model_size), str(cfg.tts_model_size))
        self.sample_rate = int(qwen.model.speech_tokenizer.get_output_sample_rate())
        self.samples_per_frame = int(qwen.model.speech_tokenizer.get_decode_upsample_rate())
        from .tts.codec import optimize_decoder  # torch-side: imported with the model

        #: What the CPU rewrite of the codec decoder changed (same arithmetic; tts/codec.py).
        self.codec_report = optimize_decoder(qwen.model.speech_tokenizer.model.decoder)
        self.languages: tuple[str, ...] = tuple(sorted(str(x).lower() for x in qwen.get_supported_languages()))
        self.warnings: list[str] = list(warnings or [])
        self._prompts: weakref.WeakKeyDictionary[Voice, _Prompt] = weakref.WeakKeyDictionary()
        self._key: tuple[str, ...] | None = None
        # One talker generation at a time (a streaming worker thread and a caller may overlap).
        self._generate_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.device}, {self.dtype}"
        return f"TTSModel({self.model_id!r}, kind={self.kind!r}, size={self.size!r}, {state})"

    @property
    def closed(self) -> bool:
        return self._qwen is None

    def close(self) -> None:
        """Free the weights (and the CUDA cache); the object is unusable afterwards."""
        global _resident
        if self._qwen is None:
            return
        self._prompts = weakref.WeakKeyDictionary()
        self._qwen = None
        if _resident is self:
            _resident = None
        free_memory()

    # -- voices --------------------------------------------------------------------------------

    def create_voice(
        self,
        reference: str | os.PathLike[str] | AudioClip | tuple[np.ndarray, int],
        *,
        transcript: str | None = None,
        name: str | None = None,
        profile: VoiceProfile | None = None,
        analyze: bool = True,
    ) -> Voice:
        """Compute the voice prompt of a reference clip once.

        Parameters
        ----------
        reference : path, AudioClip or (samples, sample_rate)
            3-15 s of one speaker; loaded, validated and trimmed by ``audio_io.load_audio``.
        transcript : str, optional
            What the reference says. Given: ICL mode (speaker embedding + reference codes; the
            closest clone). Omitted: x-vector mode (speaker embedding only).
        name : str, optional
            Label stored with the voice (default: the file name).
        profile : VoiceProfile, optional
            The reference's Voice DNA if already measured; otherwise it is measured here when
            ``analyze`` and the analysis layer is available (failures are logged, not raised).

        Raises
        ------
        AudioInputError
            Missing, silent, or too short (< 1 s of speech) reference.
        ProfileError
            Bad transcript, or a VoiceDesign model (it has no speaker encoder).
        """
        self._require("base", "create_voice")
        transcript = check_transcript(transcript)
        clip = load_reference(reference)
        warnings = list(clip.warnings)
        from .audio_io import MAX_CLIP_S

        if transcript and clip.original_duration_s > MAX_CLIP_S:
            warnings.append(
                f"the reference is {clip.original_duration_s:.0f} s and was cut to its best "
                f"{clip.duration_s:.0f} s, so the transcript no longer matches it; using x-vector mode. "
                "Trim the clip to under 30 s to use the transcript."
            )
            _LOGGER.warning(warnings[-1])
            transcript = None
        t0 = time.perf_counter()
        prepared = prepare_reference(clip.samples)
        embedding = self._speaker_embedding(clip.samples)
        codes = self._encode_reference(prepared) if transcript else None
        prompt_s = time.perf_counter() - t0
        if profile is None and analyze:
            profile = analyze_reference(clip)
        return Voice(
            mode="icl" if transcript else "xvector", speaker_embedding=embedding, ref_codes=codes,
            transcript=transcript, name=name or reference_name(reference), reference_sha256=reference_sha256(reference, clip),
            profile=profile, model_id=self.model_id, reference_duration_s=clip.duration_s,
            created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), warnings=tuple(warnings),
            extra={"prompt_s": round(prompt_s, 4), "prepared_duration_s": len(prepared) / SAMPLE_RATE},
        )

    def similarity(self, audio: np.ndarray, voice: Voice, *, sample_rate: int = SAMPLE_RATE) -> float:
        """Cosine similarity (-1..1) of the speaker embeddings of ``audio`` and of ``voice``.

        Both embeddings come from this Base model's own ECAPA speaker encoder (the one that
        makes the voice prompt), so 1.0 means the encoder hears the same speaker.
        """
        self._require("base", "similarity")
        self._check_voice(voice)
        from .audio_io import check_samples, resample

        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        check_samples(samples, source="audio")
        if sample_rate != SAMPLE_RATE:
            samples = resample(samples, int(sample_rate), SAMPLE_RATE)
        if len(samples) < MIN_SIMILARITY_S * SAMPLE_RATE:
            raise AudioInputError(f"audio is {len(samples) / SAMPLE_RATE:.2f} s; similarity needs at least {MIN_SIMILARITY_S} s of it")
        return cosine(self._speaker_embedding(samples), voice.speaker_embedding)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, text: str, voice: Voice, *, language: str = "auto", temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 max_new_frames: int | None = None, stream: bool = False,
                 first_chunk_frames: int = FIRST_CHUNK_FRAMES, chunk_frames: int = CHUNK_FRAMES,
                 left_context_frames: int = LEFT_CONTEXT_FRAMES_STREAM,
                 _min_new_frames: int | None = None) -> Iterator[GenerationResult]:
        """Speak ``text`` in ``voice``: one :class:`GenerationResult` per segment, or per chunk when streaming.

        All arguments are checked before anything runs (errors are raised by this call, not by
        the first ``next``). Long text is split at sentence/clause boundaries (see
        ``text_segmenter``); each segment's (last) result has ``extra["pause_after_s"]``, the
        pause to leave after it, which :meth:`synthesize` inserts.

        Streaming (``stream=True``) yields audio while the talker is still producing frames:
        each segment's first chunk after ``first_chunk_frames`` frames, then one every
        ``chunk_frames`` frames, the rest last. A chunk's ``audio`` holds only its new samples
        (``frames x 1920``); play chunks back to back and a segment's pause after its last
        chunk. Chunk records carry ``extra["chunk_idx"]`` (within the segment),
        ``extra["segment_final"]`` (the segment's last chunk, which has the pause and the
        segment's ``similarity``, measured on the whole segment; other chunks have None) and
        ``extra["frame_start"]``; ``is_final`` is set only on the very last chunk;
        ``time_to_first_audio_s`` on the first. The frames are those of the one-shot call with
        the same seed, and the joined chunks equal its audio within ~1e-4 (see ``_qwen_stream``).
        Stop early by closing the generator (``gen.close()``, or leaving a ``for`` loop and
        dropping it): generation stops at its next step.

        Parameters
        ----------
        text : str
            1 to MAX_TEXT_CHARS characters.
        voice : Voice
            From :meth:`create_voice` or ``Voice.load`` (made with a model of the same width).
        language : str
            ``auto`` or one of SUPPORTED_LANGUAGES (ISO codes such as ``en`` work too).
        temperature, top_k, top_p : optional
            Talker sampling (defaults from the checkpoint's generation_config.json: 0.9, 50, 1.0).
            ``temperature=0`` is greedy decoding (talker and code predictor).
        seed : int, optional
            Makes the output reproducible (segment i uses seed + i; the global RNG is untouched).
        max_new_frames : int, optional
            Cap on codec frames per segment (12.5 per second) on top of the text-length budget.
        stream : bool
            Yield chunks as frames are generated (default False: one result per segment).
        first_chunk_frames, chunk_frames : int
            Streaming chunk sizes in frames, 1 to 1000 (defaults 4 = 0.32 s and 16 = 1.28 s).
        left_context_frames : int
            Earlier frames the decoder sees again before each streamed chunk, 0 to 1000
            (default 100; 0 makes the chunk boundaries click). Checked even when not streaming.
        _min_new_frames : int, optional
            Benchmark-only: suppress end-of-speech until this many frames, so random-weight
            models generate a fixed length (``bench/bench_synthesis.py``). Not for users.
        """
        self._require("base", "generate")
        plan = self._plan(text, language, temperature, top_k, top_p, seed, max_new_frames, _min_new_frames,
                          (stream, first_chunk_frames, chunk_frames, left_context_frames))
        prompt = self._prompt_for(voice)
        return self._run(plan, functools.partial(self._clone_inputs, prompt=prompt), prompt.context_codes, voice)

    def synthesize(self, text: str, voice: Voice, **kwargs: Any) -> GenerationResult:
        """:meth:`generate` with the segments (or streamed chunks) joined by their pauses into one final result."""
        results = list(self.generate(text, voice, **kwargs))
        return join_results(results, text=text, similarity=lambda audio: self._output_similarity(audio, voice))

    def generate_design(self, text: str, instruct: str, *, language: str = "auto", temperature: float | None = None,
                        top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                        max_new_frames: int | None = None, stream: bool = False,
                        first_chunk_frames: int = FIRST_CHUNK_FRAMES, chunk_frames: int = CHUNK_FRAMES,
                        left_context_frames: int = LEFT_CONTEXT_FRAMES_STREAM,
                        _min_new_frames: int | None = None) -> Iterator[GenerationResult]:
        """Speak ``text`` in a voice described by ``instruct`` (VoiceDesign model only).

        The options are :meth:`generate`'s (streaming included; no similarity: there is no voice).

        ``instruct`` is natural language, e.g. from :func:`describe_voice`; empty means none.
        Design then clone: ``synthesize_design`` here, then ``create_voice`` on a Base model
        from the designed audio, to keep that voice for every later line.
        """
        self._require("voice_design", "generate_design")
        if not isinstance(instruct, str) or len(instruct) > MAX_INSTRUCT_CHARS:
            got = type(instruct).__name__ if not isinstance(instruct, str) else f"{len(instruct)} characters"
            raise ProfileError(f"instruct must be a string of at most {MAX_INSTRUCT_CHARS} characters, got {got}")
        plan = self._plan(text, language, temperature, top_k, top_p, seed, max_new_frames, _min_new_frames,
                          (stream, first_chunk_frames, chunk_frames, left_context_frames))
        q = self._qwen
        instruct_ids = q._tokenize_texts([q._build_instruct_text(instruct)])[0] if instruct.strip() else None
        return self._run(plan, functools.partial(self._design_inputs, instruct_ids=instruct_ids), None, None)

    def synthesize_design(self, text: str, instruct: str, **kwargs: Any) -> GenerationResult:
        """:meth:`generate_design` joined into one final result."""
        return join_results(list(self.generate_design(text, instruct, **kwargs)), text=text)

    # -- internals -----------------------------------------------------------------------------

    def _require(self, kind: str, what: str) -> None:
        if self._qwen is None:
            raise ModelLoadError(f"{self.model_id} was closed; call load_model() again before {what}")
        if self.kind != kind:
            need = "a Base model ('0.6b' or '1.7b')" if kind == "base" else "the VoiceDesign model ('1.7b-design')"
            raise ProfileError(f"{what} needs {need}; {self.model_id} is a {self.kind} model")

    def _plan(self, text: str, language: str, temperature: float | None, top_k: int | None, top_p: float | None,
              seed: int | None, max_new_frames: int | None, min_new_frames: int | None,
              streaming: tuple[bool, int, int, int] = (False, FIRST_CHUNK_FRAMES, CHUNK_FRAMES,
                                                       LEFT_CONTEXT_FRAMES_STREAM)) -> Plan:
        return make_plan(text, language, temperature, top_k, top_p, seed, max_new_frames, min_new_frames, streaming,
                         languages=self.languages, model_id=self.model_id)

    def _check_voice(self, voice: Voice) -> None:
        check_voice(voice, self._qwen.model.config.talker_config, self.model_id)

    def _prompt_for(self, voice: Voice) -> _Prompt:
        """The voice as device tensors, built on first use and cached for the voice's lifetime."""
        self._check_voice(voice)
        cached = self._prompts.get(voice)
        if cached is not None:
            return cached
        torch, q = torch_module(), self._qwen
        model = q.model
        emb = torch.from_numpy(np.array(voice.speaker_embedding, dtype=np.float32)).to(model.device, model.dtype)
        codes = ref_ids = None
        if voice.mode == "icl":
            codes = torch.from_numpy(np.array(voice.ref_codes, dtype=np.int64)).to(model.device)
            ref_ids = q._tokenize_texts([q._build_ref_text(voice.transcript)])[0]
        vcp = {"ref_code": [codes], "ref_spk_embedding": [emb], "x_vector_only_mode": [voice.mode == "xvector"],
               "icl_mode": [voice.mode == "icl"]}
        prompt = _Prompt(vcp, ref_ids, None if codes is None else codes[-LEFT_CONTEXT_FRAMES:])
        self._prompts[voice] = prompt
        return prompt

    def _clone_inputs(self, text: str, language: str, *, prompt: _Prompt) -> dict[str, Any]:
        q = self._qwen
        return {"input_ids": q._tokenize_texts([q._build_assistant_text(text)]), "ref_ids": [prompt.ref_ids],
                "voice_clone_prompt": prompt.voice_clone_prompt, "languages": [language], "non_streaming_mode": False}

    def _design_inputs(self, text: str, language: str, *, instruct_ids: Any) -> dict[str, Any]:
        q = self._qwen
        return {"input_ids": q._tokenize_texts([q._build_assistant_text(text)]), "instruct_ids": [instruct_ids],
                "languages": [language], "non_streaming_mode": True}

    def _run(self, plan: Plan, make_inputs: Callable[[str, str], dict[str, Any]], context: Any,
             voice: Voice | None) -> Iterator[GenerationResult]:
        """The segment loop: frames -> audio -> similarity -> result(s) (a generator)."""
        start = time.perf_counter()
        for idx, seg in enumerate(plan.segments):
            self._reset_peak_memory()
            budget = frame_budget(seg.text, cap=plan.max_new_frames)
            inputs = make_inputs(seg.text, plan.language)
            if plan.stream is None:
                t0 = time.perf_counter()
                codes = self._segment_codes(inputs, plan, budget, idx)
                audio = self._decode(codes, context)
                sim = self._output_similarity(audio, voice)
                yield self._result(plan, idx, audio, int(codes.shape[0]), t0, start, budget, sim)
            else:
                yield from self._stream_segment(plan, idx, inputs, budget, context, voice, start)

    def _stream_segment(self, plan: Plan, idx: int, inputs: dict[str, Any], budget: int, context: Any,
                        voice: Voice | None, start: float) -> Iterator[GenerationResult]:
        """One segment as chunks: qwen-tts generate in a worker thread, each chunk decoded on arrival."""
        torch, model = torch_module(), self._qwen.model
        assert plan.stream is not None
        decoder = ChunkDecoder(model.speech_tokenizer.model.decoder, self.samples_per_frame,
                               plan.stream.left_context_frames, context)
        run = functools.partial(self._segment_codes, inputs, plan, budget, idx)
        groups = int(model.config.talker_config.num_code_groups)
        done: list[Any] = []
        audios: list[np.ndarray] = []
        frame_start = 0
        t0 = time.perf_counter()
        with FrameStream(model.talker, run, eos_id=model.config.talker_config.codec_eos_token_id,
                         max_frames=budget + 1) as frames_stream:
            for chunk_idx, (frames, last) in enumerate(frames_stream.chunks(plan.stream)):
                codes = torch.stack(frames) if frames else torch.zeros((0, groups), dtype=torch.long, device=model.talker.device)
                audio = decoder.decode(codes)
                done.append(codes)
                audios.append(audio)
                sim = None
                if last:
                    check_streamed(torch.cat(done), frames_stream.result)
                    sim = self._output_similarity(np.concatenate(audios), voice)
                yield self._result(plan, idx, audio, int(codes.shape[0]), t0, start, budget, sim,
                                   chunk=(chunk_idx, last, frame_start))
                frame_start += int(codes.shape[0])
                t0 = time.perf_counter()

    def _result(self, plan: Plan, idx: int, audio: np.ndarray, frames: int, t0: float, start: float, budget: int,
                sim: float | None, chunk: tuple[int, bool, int] | None = None) -> GenerationResult:
        """The record of a segment, or (``chunk`` = (index, last in segment, first frame)) of a chunk."""
        return segment_result(plan, idx, audio, frames, t0, start, budget, sim, chunk,
                              sample_rate=self.sample_rate, peak_memory_gb=self._peak_memory_gb)

    def _segment_codes(self, inputs: dict[str, Any], plan: Plan, budget: int, idx: int) -> Any:
        """Run the talker + code predictor (qwen-tts ``generate``): codes shaped (frames, 16)."""
        torch, q = torch_module(), self._qwen
        kwargs = q._merge_generate_kwargs(**plan.sampling, max_new_tokens=budget + 1)  # n tokens -> n-1 frames
        try:
            with self._generate_lock, torch.inference_mode(), seeded(plan.seed, idx, self.device), \
                    fixed_min_frames(q.model.talker, plan.min_new_frames):
                codes_list, _ = q.model.generate(**inputs, **kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            free_memory()
            raise SynthesisError(f"the GPU ran out of memory on a {budget}-frame segment; use shorter text, "
                                 "the 0.6b model, or device='cpu'") from exc
        return codes_list[0]

    def _decode(self, codes: Any, context: Any) -> np.ndarray:
        """Codec frames -> float32 waveform of exactly frames x samples_per_frame samples."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        torch = torch_module()
        n_ctx = 0 if context is None else int(context.shape[0])
        full = codes if context is None else torch.cat([context.to(codes.device), codes], dim=0)
        wavs, _ = self._qwen.model.speech_tokenizer.decode([{"audio_codes": full}])
        return np.ascontiguousarray(wavs[0][n_ctx * self.samples_per_frame:], dtype=np.float32)

    def _output_similarity(self, audio: np.ndarray, voice: Voice | None) -> float | None:
        if voice is None or len(audio) < MIN_SIMILARITY_S * self.sample_rate:
            return None
        return cosine(self._speaker_embedding(audio), voice.speaker_embedding)

    def _speaker_embedding(self, samples: np.ndarray) -> np.ndarray:
        # Clipped to [-1, 1]: qwen-tts' mel front end print()s a warning on stdout otherwise.
        samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        emb = self._qwen.model.extract_speaker_embedding(audio=np.ascontiguousarray(samples), sr=SAMPLE_RATE)
        return emb.float().cpu().numpy().reshape(-1)

    def _encode_reference(self, samples: np.ndarray) -> np.ndarray:
        enc = self._qwen.model.speech_tokenizer.encode(np.ascontiguousarray(samples, dtype=np.float32), sr=SAMPLE_RATE)
        return enc.audio_codes[0].cpu().numpy().astype(np.int64)

    def _reset_peak_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch_module().cuda.reset_peak_memory_stats(self.device)

    def _peak_memory_gb(self) -> float:
        if self.device.startswith("cuda"):
            return torch_module().cuda.max_memory_allocated(self.device) / 1e9
        return process_peak_rss_gb()


if __name__ == "__main__":
    sys.exit(_main())
