"""The Qwen3-TTS model: load it once, turn a reference into a Voice, speak text in it.

Built on the official ``qwen-tts`` package (``Qwen3TTSModel.from_pretrained``, the model's
``generate``, its speaker encoder and 12 Hz speech tokenizer); this package adds what users
need around it::

    model = load_model("0.6b")                      # resident; device/dtype picked for you
    voice = model.create_voice("me.wav", transcript="What I say in me.wav.")   # once
    for result in model.generate("Any text, as long as you like.", voice):     # per line
        play(result.audio)                           # 24 kHz float32, one segment at a time
    voice.save("voices/me"); Voice.load("voices/me") # safetensors + JSON, no pickle

    options = GenerateOptions(seed=0, stream=True)  # one checked record ...
    for chunk in model.generate(text, voice, options, max_new_frames=200):  # ... or overrides
        player.play(chunk.audio)                     # first chunk after 4 frames, then every 16

``GenerationResult.real_time_factor`` is processing time / audio duration (lower is faster;
mlx-audio uses the name for the inverse). ``peak_memory_gb`` is ``torch.cuda.max_memory_allocated``
during the segment on CUDA, and the process's peak resident set size so far (``getrusage``) on
CPU/MPS, in 1e9 bytes.

Modules: ``model`` (:func:`load_model`, :class:`TTSModel`), ``options`` (:class:`GenerateOptions`,
the checked plan of a call), ``voice`` (:class:`Voice`, :func:`describe_voice`), ``inputs``
(reference preparation, a Voice as model inputs), ``engine`` (our talker + code predictor decode
loop; ``layers``: its functional forward, ``sampling``: its logits processors, ``prompt``: the
talker's prefill), ``stream`` (the loop's frames in chunks, decoded as they fill), ``results``
(result records, :func:`join_results`), ``hub`` (finding weights), ``device``
(device/dtype, the loader), ``runtime`` (torch helpers), ``tiny`` (the ``make-tiny`` checkpoint).
Heavy packages (torch, qwen_tts) are imported on first use, so importing this package is cheap.
"""

from __future__ import annotations

from .hub import MODEL_ALIASES
from .model import TTSModel, load_model
from .options import SUPPORTED_LANGUAGES, GenerateOptions
from .results import join_results
from .voice import Voice, describe_voice

__all__ = [
    "load_model", "TTSModel", "Voice", "GenerateOptions", "describe_voice", "join_results",
    "SUPPORTED_LANGUAGES", "MODEL_ALIASES",
]
