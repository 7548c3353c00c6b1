"""Reference preparation for ``TTSModel.create_voice``, and a Voice as model inputs.

The reference clip is loaded and checked once, where it enters (through
``audio_io.load_audio``), with its transcript; then trimmed, given a silent tail, hashed, named
and, when the analysis layer is available, measured (Voice DNA). Errors say what was received,
what is allowed and what to do. Generation options are checked in ``tts.options``.
:func:`build_prompt` turns a Voice into the device tensors of qwen-tts' voice-clone prompt
(torch imported there, on first use).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PersonalizationError, ProfileError
from ..fileio import sha256_bytes, sha256_file
from ..rates import TTS_SAMPLE_RATE
from ..schema import AudioClip, VoiceProfile

_LOGGER = logging.getLogger(__name__)

#: References are prepared at the codec's rate (its encoder and speaker encoder take 24 kHz).
SAMPLE_RATE = TTS_SAMPLE_RATE
#: Silence appended to the trimmed reference before encoding it (s). In ICL mode the model
#: continues the reference codes; ending them in silence keeps the reference's last phoneme
#: from leaking into the output and the first new phoneme from being swallowed.
REF_TAIL_SILENCE_S = 0.5
MAX_TRANSCRIPT_CHARS = 1_000
#: Reference frames kept as decoder left context in ICL mode: qwen-tts' own chunked decoder
#: uses 25 frames (2 s) of context between chunks, which covers the causal convolutions.
LEFT_CONTEXT_FRAMES = 25


def prepare_reference(samples: np.ndarray) -> np.ndarray:
    """The trimmed reference with REF_TAIL_SILENCE_S of silence appended (24 kHz float32)."""
    tail = np.zeros(int(round(REF_TAIL_SILENCE_S * SAMPLE_RATE)), dtype=np.float32)
    return np.concatenate([np.asarray(samples, dtype=np.float32), tail])


def check_transcript(transcript: str | None) -> str | None:
    if transcript is None:
        return None
    if not isinstance(transcript, str):
        raise ProfileError(f"transcript must be a string or None, got {type(transcript).__name__}")
    transcript = " ".join(transcript.split())
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise ProfileError(f"transcript is {len(transcript)} characters; at most {MAX_TRANSCRIPT_CHARS} "
                           "(a reference should be 3-15 s of speech)")
    return transcript or None


def read_reference(reference: Any, transcript: str | None) -> tuple[AudioClip, str | None, list[str]]:
    """The loaded, checked reference clip, its checked transcript, and the warnings about them.

    A transcript is dropped (x-vector mode, with a warning) when the clip was longer than
    ``audio_io.MAX_CLIP_S`` and cut to its best part, since it no longer matches the audio.
    """
    from ..audio_io import MAX_CLIP_S

    transcript = check_transcript(transcript)
    clip = load_reference(reference)
    warnings = list(clip.warnings)
    if transcript and clip.original_duration_s > MAX_CLIP_S:
        warnings.append(
            f"the reference is {clip.original_duration_s:.0f} s and was cut to its best "
            f"{clip.duration_s:.0f} s, so the transcript no longer matches it; using x-vector mode. "
            "Trim the clip to under 30 s to use the transcript."
        )
        _LOGGER.warning(warnings[-1])
        transcript = None
    return clip, transcript, warnings


def load_reference(reference: Any) -> AudioClip:
    from ..audio_io import load_audio

    if isinstance(reference, AudioClip):
        return load_audio(reference.samples, sample_rate=SAMPLE_RATE, input_sample_rate=reference.sample_rate)
    if isinstance(reference, tuple) and len(reference) == 2:
        samples, sr = reference
        return load_audio(np.asarray(samples), sample_rate=SAMPLE_RATE, input_sample_rate=int(sr))
    if isinstance(reference, np.ndarray):
        raise ProfileError("pass a NumPy reference as (samples, sample_rate) so its rate is known")
    return load_audio(reference, sample_rate=SAMPLE_RATE)


def reference_sha256(reference: Any, clip: AudioClip) -> str:
    """SHA-256 of the reference file's bytes, or of the float32 samples of an array."""
    if isinstance(reference, (str, os.PathLike)):
        return sha256_file(reference)
    samples = reference.samples if isinstance(reference, AudioClip) else np.asarray(reference[0])
    return sha256_bytes(np.ascontiguousarray(samples, dtype=np.float32).tobytes())


def reference_name(reference: Any) -> str | None:
    if isinstance(reference, (str, os.PathLike)):
        return Path(reference).stem
    if isinstance(reference, AudioClip) and reference.source != "<array>":
        return Path(reference.source).stem
    return None


def analyze_reference(clip: AudioClip) -> VoiceProfile | None:
    """The reference's Voice DNA and emotion, or None (logged) when the analysis layer fails.

    Emotion is optional: if the emotion detector cannot even be imported, the Voice DNA is
    still measured without it.
    """
    try:
        from ..analysis import analyze_voice
    except ImportError as exc:
        _LOGGER.warning("Voice DNA of the reference is unavailable: %s", exc)
        return None
    source = (clip.samples, clip.sample_rate)
    for emotion in (True, False):
        try:
            return analyze_voice(source, emotion=emotion)[1]
        except ImportError as exc:
            _LOGGER.warning("emotion detection unavailable (%s); measuring the Voice DNA without it", exc)
        except PersonalizationError as exc:
            _LOGGER.warning("Voice DNA of the reference is unavailable: %s", exc)
            return None
    return None


# --- a Voice as model inputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class VoicePrompt:
    """A Voice as tensors on the model's device, built once per voice (``build_prompt``)."""

    voice_clone_prompt: dict[str, list[Any]]
    """qwen-tts' ``voice_clone_prompt``: reference codes, speaker embedding, mode flags."""
    ref_ids: Any
    """Token ids of the reference transcript (ICL mode), else None."""
    context_codes: Any
    """The last LEFT_CONTEXT_FRAMES reference codes, the decoder's left context (ICL), else None."""


def build_prompt(qwen: Any, voice: Any) -> VoicePrompt:
    """``voice`` (a checked Voice) as device tensors for the loaded ``qwen_tts.Qwen3TTSModel``."""
    from .runtime import torch_module

    torch, model = torch_module(), qwen.model
    emb = torch.from_numpy(np.array(voice.speaker_embedding, dtype=np.float32)).to(model.device, model.dtype)
    codes = ref_ids = None
    if voice.mode == "icl":
        codes = torch.from_numpy(np.array(voice.ref_codes, dtype=np.int64)).to(model.device)
        ref_ids = qwen._tokenize_texts([qwen._build_ref_text(voice.transcript)])[0]
    vcp = {"ref_code": [codes], "ref_spk_embedding": [emb], "x_vector_only_mode": [voice.mode == "xvector"],
           "icl_mode": [voice.mode == "icl"]}
    return VoicePrompt(vcp, ref_ids, None if codes is None else codes[-LEFT_CONTEXT_FRAMES:])


def clone_inputs(qwen: Any, text: str, language: str, prompt: VoicePrompt) -> dict[str, Any]:
    """Keywords of qwen-tts ``generate`` for one segment spoken in a cloned voice."""
    return {"input_ids": qwen._tokenize_texts([qwen._build_assistant_text(text)]), "ref_ids": [prompt.ref_ids],
            "voice_clone_prompt": prompt.voice_clone_prompt, "languages": [language], "non_streaming_mode": False}


def design_inputs(qwen: Any, text: str, language: str, instruct_ids: Any) -> dict[str, Any]:
    """Keywords of qwen-tts ``generate`` for one segment in a designed voice (``instruct_ids``: None = none)."""
    return {"input_ids": qwen._tokenize_texts([qwen._build_assistant_text(text)]), "instruct_ids": [instruct_ids],
            "languages": [language], "non_streaming_mode": True}
