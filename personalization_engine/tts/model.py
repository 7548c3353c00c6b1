"""The resident Qwen3-TTS model: :func:`load_model` and :class:`TTSModel`.

Per segment (see :meth:`TTSModel.generate`): text -> segments (``text_segmenter``) -> talker +
code predictor make codec frames (our decode loop, ``tts.engine``, in ``_segment_frames``,
capped by a budget from the text length) -> the causal 12 Hz decoder makes audio (``_decode``;
in ICL mode with the last 25 reference frames as left context) -> speaker similarity of the
output to the voice. Streaming consumes the same frame generator chunk by chunk and decodes each
chunk as it fills (``tts.stream``: a worker thread runs the generator while the caller's thread
decodes the previous chunk). qwen-tts' own ``generate`` is no longer
called here (``bench/bench_synthesis.py`` calls it directly as the "plain" baseline).
Heavy packages (torch, qwen_tts) are imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioInputError, ModelLoadError, ProfileError, SynthesisError
from ..schema import AudioClip, GenerationResult, VoiceProfile
from ..text_segmenter import frame_budget
from .device import load_qwen, load_with_fallback, report, resolve_device
from .hub import resolve_model
from .inputs import (
    SAMPLE_RATE,
    VoicePrompt,
    analyze_reference,
    build_prompt,
    clone_inputs,
    design_inputs,
    prepare_reference,
    read_reference,
    reference_name,
    reference_sha256,
)
from .options import GenerateOptions, Plan, check_instruct, make_plan
from .quant import QuantReport, apply_quant, check_kernels, check_quant, load_dtype, resolve_quant
from .results import join_results, segment_result
from .runtime import (
    cosine,
    free_memory,
    keep_freed_memory,
    peak_memory_gb,
    reset_peak_memory,
    torch_module,
)
from .stream import decode_whole, stream_chunks
from .voice import Voice, check_voice

_LOGGER = logging.getLogger(__name__)

#: Outputs shorter than this get no similarity (the speaker encoder needs ~0.25 s of audio).
MIN_SIMILARITY_S = 0.25

_resident: TTSModel | None = None
#: Torch threads of the decode loop on CPU (chosen at load; 2 cores: 1 thread is faster, see
#: bench/results/bench_levers.txt, and leaves the other core to the streaming codec decoder).
LOOP_THREADS_CPU = 1
#: Voices whose prefill prefix (``TalkerPrompt.voice_prefix``: header, tags and speaker, and an
#: ICL voice's reference transcript) the decode loop of a quantized model keeps (ICL: about 7 MB
#: each on the 0.6B).
VOICE_PREFIXES = 4


# --- loading -----------------------------------------------------------------------------------


def load_model(
    name_or_path: str = "0.6b",
    *,
    device: str = "auto",
    dtype: str = "auto",
    progress: Callable[[str], None] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    quant: str = "none",
) -> TTSModel:
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
    quant : {"auto", "none", "bf16", "int8", "int4"}
        Compact weights for the talker and code predictor (``tts.quant``): ``auto`` is int8 on
        CPU and unchanged on CUDA (the app's default); ``none`` (the library default) keeps the
        float weights. Packed weights are cached beside the model (second start fast).

    Returns
    -------
    TTSModel
        The same object again when called with the same model, device and dtype; a different
        model replaces (and frees) the resident one.

    Raises
    ------
    ProfileError
        Impossible device/dtype/quant options (checked before any weights are touched).
    ModelLoadError
        Weights missing and not downloadable (the message has the download command), or damaged.
    """
    global _resident
    quant = check_quant(quant)
    dev, dt, warnings = resolve_device(device, dtype)
    mode = resolve_quant(quant, dev)
    folder, model_id = resolve_model(name_or_path, models_dir=models_dir, progress=progress)
    key = (model_id, str(folder.resolve()), dev, dt, mode)
    if _resident is not None and not _resident.closed and _resident._key == key:
        return _resident
    if _resident is not None:
        _LOGGER.info("freeing %s before loading %s", _resident.model_id, model_id)
        _resident.close()
    report(progress, f"loading {model_id} on {dev} ({dt})")
    t0 = time.perf_counter()
    check_kernels(mode)
    qwen, dev, dt, fallback = load_with_fallback(
        lambda d, t: load_qwen(folder, d, load_dtype(folder, resolve_quant(quant, d), d, t)), dev, dt, progress)
    mode = resolve_quant(quant, dev)  # a CUDA out-of-memory fallback runs on CPU
    qreport = apply_quant(qwen, folder, mode, device=dev, dtype=dt, progress=progress)
    model = TTSModel(qwen, model_id=model_id, model_dir=folder, device=dev, dtype=dt, warnings=warnings + fallback,
                     quant=mode)
    model.quant_report = qreport
    model._key = key
    _LOGGER.info("loaded %s on %s (%s, quant %s) in %.1f s", model_id, dev, dt, mode, time.perf_counter() - t0)
    _resident = model
    return model


# --- the resident model --------------------------------------------------------------------------


class TTSModel:
    """A loaded Qwen3-TTS model (Base for cloning, VoiceDesign for designed voices).

    Made by :func:`load_model`; the constructor wraps an already loaded ``qwen_tts.Qwen3TTSModel``
    (``bench/build_full_size.py`` uses it for in-memory random-weight models).
    """

    def __init__(self, qwen: Any, *, model_id: str, model_dir: Path, device: str, dtype: str,
                 warnings: list[str] | None = None, quant: str = "none") -> None:
        cfg = qwen.model.config
        talker = qwen.model.talker
        # The value transformers sets by itself for open-ended generation, minus its warning.
        talker.generation_config.pad_token_id = talker.config.codec_eos_token_id
        self._qwen = qwen
        self.model_id = model_id
        self.model_dir = Path(model_dir)
        self.device = device
        self.dtype = dtype
        #: Talker/code-predictor weights: "none", "bf16", "int8" or "int4" (``tts.quant``);
        #: ``quant_report`` says what was replaced and whether the cache was used.
        self.quant = quant
        self.quant_report: QuantReport | None = None
        self.kind: str = str(cfg.tts_model_type)
        self.size: str = {"0b6": "0.6B", "1b7": "1.7B"}.get(str(cfg.tts_model_size), str(cfg.tts_model_size))
        self.sample_rate = int(qwen.model.speech_tokenizer.get_output_sample_rate())
        self.samples_per_frame = int(qwen.model.speech_tokenizer.get_decode_upsample_rate())
        from .codec import optimize_decoder

        #: What the CPU rewrite of the codec decoder changed (same arithmetic; tts/codec.py).
        self.codec_report = optimize_decoder(qwen.model.speech_tokenizer.model.decoder)
        self.languages: tuple[str, ...] = tuple(sorted(str(x).lower() for x in qwen.get_supported_languages()))
        self.warnings: list[str] = list(warnings or [])
        self._prompts: weakref.WeakKeyDictionary[Voice, VoicePrompt] = weakref.WeakKeyDictionary()
        self._key: tuple[str, ...] | None = None
        self._decoder: Any = None  # tts.engine.Decoder, built on first use
        #: Torch threads of the decode loop (bench/bench_levers.py: one thread beats two on CPU).
        self.loop_threads: int | None = LOOP_THREADS_CPU if device == "cpu" else None
        if device == "cpu":  # loading's garbage released; no page faults per streamed codec chunk
            keep_freed_memory()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.device}, {self.dtype}, quant={self.quant}"
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
        self._decoder = None
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
        clip, transcript, warnings = read_reference(reference, transcript)
        t0 = time.perf_counter()
        prepared = prepare_reference(clip.samples)
        embedding = self._speaker_embedding(clip.samples)
        codes = self._encode_reference(prepared) if transcript else None
        prompt_s = time.perf_counter() - t0
        if profile is None and analyze:
            profile = analyze_reference(clip)
        return Voice(
            mode="icl" if transcript else "xvector", speaker_embedding=embedding, ref_codes=codes,
            transcript=transcript, name=name or reference_name(reference),
            reference_sha256=reference_sha256(reference, clip),
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
        from ..audio_io import check_samples, resample

        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        check_samples(samples, source="audio")
        if sample_rate != SAMPLE_RATE:
            samples = resample(samples, int(sample_rate), SAMPLE_RATE)
        if len(samples) < MIN_SIMILARITY_S * SAMPLE_RATE:
            raise AudioInputError(f"audio is {len(samples) / SAMPLE_RATE:.2f} s; "
                                  f"similarity needs at least {MIN_SIMILARITY_S} s of it")
        return cosine(self._speaker_embedding(samples), voice.speaker_embedding)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, text: str, voice: Voice, options: GenerateOptions | None = None,
                 **overrides: Any) -> Iterator[GenerationResult]:
        """Speak ``text`` in ``voice``: one :class:`GenerationResult` per segment, or per chunk when streaming.

        ``options`` (a :class:`GenerateOptions`; default: its defaults) with any keyword
        ``overrides`` of its fields (``seed=0``, ``stream=True``, ``max_new_frames=N``, ...) is
        checked with the text and the voice before anything runs: errors are raised by this
        call, not by the first ``next``. Long text is split at sentence/clause boundaries (see
        ``text_segmenter``); each segment's (last) result has ``pause_after_s``, the pause to
        leave after it, which :meth:`synthesize` inserts.

        Streaming (``stream=True``) yields audio while the talker is still producing frames: each segment's
        first chunk after ``first_chunk_frames`` frames, then (``adaptive_chunks``, the default) each time the
        decoder is free, with the frames made meanwhile (4 to ``chunk_frames``,
        ``tts.stream.MIN_MERGED_FRAMES``; fewer only at the end), or (``adaptive_chunks=False``) one every
        ``chunk_frames`` frames; the rest last. A chunk's ``audio`` holds only its new samples (``frames x
        1920``); play chunks back to back and a segment's pause after its last chunk. Chunks carry
        ``chunk_idx`` (within the segment), ``segment_final`` (the segment's last chunk, which has the pause
        and the segment's ``similarity``, measured on the whole segment; other chunks have None) and
        ``frame_start``; ``is_final`` is set only on the very last chunk, ``time_to_first_audio_s`` on the
        first. The frames are those of the one-shot call with the same seed, and the joined chunks equal its
        audio within ~1e-4 (see ``tts.stream``). Stop early by closing the generator (``gen.close()``, or
        leaving a ``for`` loop and dropping it): generation stops at its next step.

        Parameters
        ----------
        text : str
            1 to MAX_TEXT_CHARS characters.
        voice : Voice
            From :meth:`create_voice` or ``Voice.load`` (made with a model of the same width).
        options : GenerateOptions, optional
            Language, sampling, seed, frame caps, streaming (see its fields).
        **overrides
            Fields of GenerateOptions replacing those of ``options`` (``_min_new_frames`` is
            the benchmark-only ``min_new_frames``).
        """
        self._require("base", "generate")
        plan = self._plan(text, GenerateOptions.build(options, overrides))
        prompt = self._prompt_for(voice)
        return self._run(plan, functools.partial(self._clone_inputs, prompt=prompt), prompt.context_codes, voice)

    def synthesize(self, text: str, voice: Voice, options: GenerateOptions | None = None,
                   **overrides: Any) -> GenerationResult:
        """:meth:`generate` with the segments (or streamed chunks) joined by their pauses into one final result."""
        results = list(self.generate(text, voice, options, **overrides))
        return join_results(results, text=text, similarity=lambda audio: self._output_similarity(audio, voice))

    def generate_design(self, text: str, instruct: str, options: GenerateOptions | None = None,
                        **overrides: Any) -> Iterator[GenerationResult]:
        """Speak ``text`` in a voice described by ``instruct`` (VoiceDesign model only).

        The options are :meth:`generate`'s (streaming included; no similarity: there is no voice).

        ``instruct`` is natural language, e.g. from :func:`describe_voice`; empty means none.
        Design then clone: ``synthesize_design`` here, then ``create_voice`` on a Base model
        from the designed audio, to keep that voice for every later line.
        """
        self._require("voice_design", "generate_design")
        check_instruct(instruct)
        plan = self._plan(text, GenerateOptions.build(options, overrides))
        q = self._qwen
        instruct_ids = q._tokenize_texts([q._build_instruct_text(instruct)])[0] if instruct.strip() else None
        return self._run(plan, functools.partial(self._design_inputs, instruct_ids=instruct_ids), None, None)

    def synthesize_design(self, text: str, instruct: str, options: GenerateOptions | None = None,
                          **overrides: Any) -> GenerationResult:
        """:meth:`generate_design` joined into one final result."""
        return join_results(list(self.generate_design(text, instruct, options, **overrides)), text=text)

    # -- internals -----------------------------------------------------------------------------

    def _require(self, kind: str, what: str) -> None:
        if self._qwen is None:
            raise ModelLoadError(f"{self.model_id} was closed; call load_model() again before {what}")
        if self.kind != kind:
            need = "a Base model ('0.6b' or '1.7b')" if kind == "base" else "the VoiceDesign model ('1.7b-design')"
            raise ProfileError(f"{what} needs {need}; {self.model_id} is a {self.kind} model")

    def _plan(self, text: str, options: GenerateOptions) -> Plan:
        return make_plan(text, options, languages=self.languages, model_id=self.model_id)

    def _check_voice(self, voice: Voice) -> None:
        check_voice(voice, self._qwen.model.config.talker_config, self.model_id)

    def _prompt_for(self, voice: Voice) -> VoicePrompt:
        """The voice as device tensors, built on first use and cached for the voice's lifetime."""
        self._check_voice(voice)
        cached = self._prompts.get(voice)
        if cached is None:
            cached = self._prompts[voice] = build_prompt(self._qwen, voice)
        return cached

    def _clone_inputs(self, text: str, language: str, *, prompt: VoicePrompt) -> dict[str, Any]:
        return clone_inputs(self._qwen, text, language, prompt)

    def _design_inputs(self, text: str, language: str, *, instruct_ids: Any) -> dict[str, Any]:
        return design_inputs(self._qwen, text, language, instruct_ids)

    def _run(self, plan: Plan, make_inputs: Callable[[str, str], dict[str, Any]], context: Any,
             voice: Voice | None) -> Iterator[GenerationResult]:
        """The segment loop: frames -> audio -> similarity -> result(s) (a generator)."""
        start = time.perf_counter()
        for idx, seg in enumerate(plan.segments):
            reset_peak_memory(self.device)
            budget = frame_budget(seg.text, cap=plan.options.max_new_frames)
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
        """One segment as chunks: the decode loop's frames, each chunk decoded as soon as it is full."""
        assert plan.stream is not None
        from .engine import DecodeStats

        stats = DecodeStats()
        audios: list[np.ndarray] = []
        frame_start = 0
        t0 = time.perf_counter()
        frames = self._segment_frames(inputs, plan, budget, idx, stats)
        with contextlib.closing(stream_chunks(self._qwen.model, frames, stats, plan.stream, context=context,
                                              samples_per_frame=self.samples_per_frame)) as chunks:
            for chunk_idx, (n, audio, last) in enumerate(chunks):
                audios.append(audio)
                sim = self._output_similarity(np.concatenate(audios), voice) if last else None
                yield self._result(plan, idx, audio, n, t0, start, budget, sim, chunk=(chunk_idx, last, frame_start))
                frame_start += n
                t0 = time.perf_counter()

    def _result(self, plan: Plan, idx: int, audio: np.ndarray, frames: int, t0: float, start: float, budget: int,
                sim: float | None, chunk: tuple[int, bool, int] | None = None) -> GenerationResult:
        """The record of a segment, or (``chunk`` = (index, last in segment, first frame)) of a chunk."""
        return segment_result(plan, idx, audio, frames, t0, start, budget, sim, chunk,
                              sample_rate=self.sample_rate,
                              peak_memory_gb=functools.partial(peak_memory_gb, self.device))

    def _segment_frames(self, inputs: dict[str, Any], plan: Plan, budget: int, idx: int,
                        stats: Any = None) -> Iterator[Any]:
        """The segment's codec frames, each a LongTensor (16,), as our decode loop makes them.

        Sampling as qwen-tts ``generate`` with the same keywords (checkpoint defaults merged in);
        segment ``idx`` of a seeded call uses seed + idx; ``min_new_frames`` holds end of speech
        off as ``fixed_min_frames`` does on the plain path.
        """
        from .engine import DEFAULT_MIN_NEW_TOKENS, Decoder
        from .prompt import prompt_from_generate_kwargs
        from .sampling import SamplingConfig

        q = self._qwen
        if self._decoder is None:
            # A quantized talker keeps its voices' prefixes (most of an x-vector prefill, a third
            # of an ICL one); an unquantized one prefills whole, in qwen-tts' arithmetic (its
            # greedy codes, tested).
            self._decoder = Decoder(q.model, threads=self.loop_threads,
                                    voice_prefixes=VOICE_PREFIXES if self.quant != "none" else 0)
        config = SamplingConfig.from_generate_kwargs(q._merge_generate_kwargs(**plan.sampling))
        opts = plan.options
        min_tokens = opts.min_new_frames + 1 if opts.min_new_frames else DEFAULT_MIN_NEW_TOKENS
        seed = None if opts.seed is None else (opts.seed + idx) % 2**63
        try:
            prompt = prompt_from_generate_kwargs(q.model, inputs)
        except ValueError as exc:  # languages are checked by make_plan; this is a safety net
            raise SynthesisError(str(exc)) from exc
        return self._decoder.frames(prompt, config, max_frames=budget, min_new_tokens=min_tokens, seed=seed,
                                    stats=stats)

    def _segment_codes(self, inputs: dict[str, Any], plan: Plan, budget: int, idx: int) -> Any:
        """All frames of a segment: codes shaped (frames, 16)."""
        torch = torch_module()
        try:
            frames = list(self._segment_frames(inputs, plan, budget, idx))
        except torch.cuda.OutOfMemoryError as exc:
            free_memory()
            raise SynthesisError(f"the GPU ran out of memory on a {budget}-frame segment; use shorter text, "
                                 "the 0.6b model, or device='cpu'") from exc
        if not frames:
            groups = int(self._qwen.model.config.talker_config.num_code_groups)
            return torch.zeros((0, groups), dtype=torch.long, device=self._qwen.model.talker.device)
        return torch.stack(frames)

    def _decode(self, codes: Any, context: Any) -> np.ndarray:
        """Codec frames -> float32 waveform of exactly frames x samples_per_frame samples."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        whole = decode_whole(self._qwen.model.speech_tokenizer.model.decoder, codes, context, self.samples_per_frame)
        if whole is not None:
            return whole
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
