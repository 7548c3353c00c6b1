"""The sample and frame rates of the engine, each defined once.

Every module that needs one of these numbers imports it from here; no other module writes them
as literals.
"""

from __future__ import annotations

#: Rate of all Voice DNA analysis (pitch, energy, rate, emotion features), in Hz. 16 kHz keeps
#: everything up to 8 kHz, far above the formants and the 75-1000 Hz F0 range we track, and is
#: the rate of the speech corpora in ``../shared/data`` (so training and inference match).
ANALYSIS_SAMPLE_RATE = 16_000

#: Rate of the Qwen3-TTS 12 Hz speech tokenizer: its codec decoder outputs, and its speaker
#: encoder and encoder take, 24 kHz audio (``speech_tokenizer/config.json``:
#: ``input_sample_rate`` / ``output_sample_rate``). Outputs are written at this rate.
TTS_SAMPLE_RATE = 24_000

#: Samples per codec frame (``decode_upsample_rate`` of the 12 Hz tokenizer's config).
SAMPLES_PER_FRAME = 1_920

#: Codec frames per second of audio: 24000 / 1920 = 12.5 (the "12Hz" in the model names).
FRAMES_PER_S = TTS_SAMPLE_RATE / SAMPLES_PER_FRAME
