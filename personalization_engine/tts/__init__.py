"""The Qwen3-TTS model package (placeholder until the tts package lands on main)."""
