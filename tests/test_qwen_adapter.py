"""Tests of the Qwen3-TTS adapter on the tiny real-architecture checkpoint, on CPU.

The tiny checkpoint (``make-tiny``, see conftest) has the qwen-tts classes and config keys with
small widths and random weights, so every test runs the real path end to end: reference audio
-> speech-tokenizer codes and ECAPA speaker embedding -> talker and code predictor -> 12 Hz
decoder -> waveform. Random weights never emit end-of-speech, so each segment runs to its frame
budget: tests cap it with ``max_new_frames`` to stay fast.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from personalization_engine import qwen_adapter  # noqa: E402
from personalization_engine.errors import (  # noqa: E402
    AudioInputError,
    ModelLoadError,
    ProfileError,
    SynthesisError,
)
from personalization_engine.qwen_adapter import (  # noqa: E402
    MODEL_ALIASES,
    SUPPORTED_LANGUAGES,
    TTSModel,
    Voice,
    describe_voice,
    load_model,
)
from personalization_engine.schema import (  # noqa: E402
    EmotionEstimate,
    EnergyStats,
    PitchContour,
    PitchStats,
    ProsodyFeatures,
    RateStats,
    VoiceProfile,
)
from personalization_engine.text_segmenter import frame_budget  # noqa: E402
from personalization_engine.tts.hub import REQUIRED_FILES  # noqa: E402

REF = "LJ001-0004.flac"
REF_TEXT = "produced the block books, which were the immediate predecessors of the true printed book,"
OTHER_REF = "cmu_arctic_us_aew_a0001.flac"
REAL_CONFIGS = Path(__file__).resolve().parent / "data" / "qwen3_tts_configs"  # see tests/data/README.md
SR = 24_000
SPF = 1920


@pytest.fixture()
def tiny_model(tiny_checkpoint: Path) -> TTSModel:
    """The resident tiny model (reloaded only if a test switched or closed it)."""
    return load_model(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="session")
def xvector_voice(tiny_checkpoint: Path, voices_dir: Path) -> Voice:
    return load_model(str(tiny_checkpoint), device="cpu").create_voice(voices_dir / REF, analyze=False)


@pytest.fixture(scope="session")
def icl_voice(tiny_checkpoint: Path, voices_dir: Path) -> Voice:
    model = load_model(str(tiny_checkpoint), device="cpu")
    return model.create_voice(voices_dir / REF, transcript=REF_TEXT, analyze=False)


def _check_result(r, *, max_frames: int) -> None:
    assert r.sample_rate == SR
    assert r.audio.dtype == np.float32 and r.audio.ndim == 1
    assert 0 < r.frames <= max_frames
    assert len(r.audio) == r.frames * SPF
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() <= 1.0
    assert r.audio_duration_s == pytest.approx(r.frames / 12.5)
    assert r.real_time_factor == pytest.approx(r.processing_time_s / r.audio_duration_s)
    assert r.peak_memory_gb > 0


# --- the tiny checkpoint ------------------------------------------------------------------------


def test_make_tiny_writes_the_hub_layout(tiny_checkpoint: Path) -> None:
    """Same files as the hub repository, with the hub's non-architecture JSON verbatim."""
    for name in REQUIRED_FILES + ("preprocessor_config.json", "speech_tokenizer/configuration.json"):
        assert (tiny_checkpoint / name).is_file(), name
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "qwen3_tts" and cfg["tts_model_type"] == "base"
    assert cfg["speaker_encoder_config"]["enc_dim"] == cfg["talker_config"]["hidden_size"]
    tok = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    ids = {v["content"]: int(k) for k, v in tok["added_tokens_decoder"].items()}
    for key, token in (("im_start_token_id", "<|im_start|>"), ("tts_pad_token_id", "<tts_pad>"),
                       ("tts_bos_token_id", "<tts_text_bos>"), ("tts_eos_token_id", "<tts_text_eod>")):
        assert cfg[key] == ids[token]
        assert cfg[key] < cfg["talker_config"]["text_vocab_size"]


def test_tiny_config_keys_match_the_real_configs(tiny_checkpoint: Path) -> None:
    """Every key of the real 0.6B-Base configs that qwen-tts reads is present in the tiny ones."""
    real_dir = REAL_CONFIGS / "Qwen3-TTS-12Hz-0.6B-Base"
    if not real_dir.is_dir():
        pytest.skip(f"real configs not found at {real_dir}")
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSTalkerCodePredictorConfig

    real, tiny = (json.loads((d / "config.json").read_text()) for d in (real_dir, tiny_checkpoint))
    assert set(real) - {"transformers_version"} <= set(tiny)
    assert set(real["talker_config"]) <= set(tiny["talker_config"])
    read = set(inspect.signature(Qwen3TTSTalkerCodePredictorConfig.__init__).parameters)
    assert set(real["talker_config"]["code_predictor_config"]) & read <= set(tiny["talker_config"]["code_predictor_config"])
    assert tiny["talker_config"]["codec_language_id"] == real["talker_config"]["codec_language_id"]
    real_st, tiny_st = (json.loads((d / "speech_tokenizer" / "config.json").read_text()) for d in (real_dir, tiny_checkpoint))
    assert set(real_st) <= set(tiny_st)
    for sub in ("encoder_config", "decoder_config"):
        assert set(real_st[sub]) - {"transformers_version"} <= set(tiny_st[sub])
    for name in ("generation_config.json", "preprocessor_config.json", "speech_tokenizer/preprocessor_config.json",
                 "speech_tokenizer/configuration.json"):
        assert json.loads((tiny_checkpoint / name).read_text()) == json.loads((real_dir / name).read_text()), name
    real_tok, tiny_tok = (json.loads((d / "tokenizer_config.json").read_text()) for d in (real_dir, tiny_checkpoint))
    assert set(real_tok) == set(tiny_tok)
    assert [v["content"] for v in real_tok["added_tokens_decoder"].values()] == [
        v["content"] for v in tiny_tok["added_tokens_decoder"].values()]


def test_make_tiny_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert qwen_adapter._main(["make-tiny", str(tmp_path)]) == 2
    assert (tmp_path / "keep.txt").is_file()


# --- loading -----------------------------------------------------------------------------------


def test_load_model_reports_what_it_loaded(tiny_model: TTSModel, tiny_checkpoint: Path) -> None:
    assert (tiny_model.kind, tiny_model.size, tiny_model.device, tiny_model.dtype) == ("base", "tiny", "cpu", "float32")
    assert tiny_model.model_dir == tiny_checkpoint
    assert tiny_model.sample_rate == SR and tiny_model.samples_per_frame == SPF
    assert set(tiny_model.languages) == set(SUPPORTED_LANGUAGES)
    assert load_model(str(tiny_checkpoint), device="cpu") is tiny_model  # loaded once, kept resident


def test_models_dir_is_searched_by_alias(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """``load_model("0.6b")`` finds ``models/Qwen3-TTS-12Hz-0.6B-Base`` before any hub access."""
    (tmp_path / "Qwen3-TTS-12Hz-0.6B-Base").symlink_to(tiny_checkpoint, target_is_directory=True)
    model = load_model("0.6b", device="cpu", models_dir=tmp_path)
    assert model.model_id == MODEL_ALIASES["0.6b"]
    assert model.model_dir == tmp_path / "Qwen3-TTS-12Hz-0.6B-Base"


def test_offline_without_weights_fails_fast_with_the_download_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"(?s)HF_HUB_OFFLINE.*huggingface-cli download Qwen/Qwen3-TTS-12Hz-0\.6B-Base --local-dir .*models/Qwen3-TTS-12Hz-0\.6B-Base"):
        load_model("0.6b", device="cpu", models_dir=tmp_path / "models")
    assert time.perf_counter() - t0 < 20  # a hang guard, not a speed target


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"(?s)unreachable.*huggingface-cli download Qwen/Qwen3-TTS-12Hz-1\.7B-Base"):
        load_model("1.7b", device="cpu", models_dir=tmp_path / "models")
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(device="tpu"), ProfileError, "device 'tpu' is not supported"),  # unknown device
        (dict(dtype="int8"), ProfileError, "dtype 'int8' is not supported"),  # unknown dtype
        (dict(device="cpu", dtype="float16"), ProfileError, "float16 is not supported on CPU"),
    ],
)
def test_bad_options_fail_before_any_weights(kwargs, error, match, tmp_path: Path) -> None:
    """Option checks come first: the (missing) model folder is never looked at."""
    with pytest.raises(error, match=match):
        load_model(str(tmp_path / "no-such-model"), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(ProfileError, match="CUDA is not available.*device='cpu'"):
        load_model("0.6b", device="cuda")


def test_missing_and_incomplete_model_folders(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing"), device="cpu")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", partial / "config.json")
    with pytest.raises(ModelLoadError, match="missing .*model.safetensors"):
        load_model(str(partial), device="cpu")


def test_damaged_weights_give_a_model_load_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="damaged"):
        load_model(str(broken), device="cpu")


def test_cuda_out_of_memory_falls_back_to_cpu_with_a_warning() -> None:
    """The fallback policy alone (no GPU here): an OOM on CUDA retries on CPU in float32."""
    calls: list[tuple[str, str]] = []

    def load(device: str, dtype: str) -> str:
        calls.append((device, dtype))
        if device.startswith("cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "model"

    messages: list[str] = []
    got = qwen_adapter._load_with_fallback(load, "cuda:0", "bfloat16", messages.append)
    assert got[:3] == ("model", "cpu", "float32")
    assert calls == [("cuda:0", "bfloat16"), ("cpu", "float32")]
    assert "not enough GPU memory" in got[3][0] and messages == got[3]


# --- voices ------------------------------------------------------------------------------------


def test_create_voice_in_both_modes(xvector_voice: Voice, icl_voice: Voice, voices_dir: Path) -> None:
    assert xvector_voice.mode == "xvector" and xvector_voice.ref_codes is None and xvector_voice.transcript is None
    assert icl_voice.mode == "icl" and icl_voice.transcript == REF_TEXT
    for v in (xvector_voice, icl_voice):
        assert v.speaker_embedding.shape == (64,) and v.speaker_embedding.dtype == np.float32
        assert v.reference_sha256 == hashlib.sha256((voices_dir / REF).read_bytes()).hexdigest()
        assert v.name == Path(REF).stem
    prepared = icl_voice.extra["prepared_duration_s"]
    assert prepared == pytest.approx(icl_voice.reference_duration_s + qwen_adapter.REF_TAIL_SILENCE_S)
    assert icl_voice.ref_codes.shape == (int(np.ceil(prepared * SR / SPF)), 16)
    assert icl_voice.ref_codes.dtype == np.int64 and 0 <= icl_voice.ref_codes.min() <= icl_voice.ref_codes.max() < 2048


def test_reference_is_trimmed_and_ends_in_silence(tiny_model: TTSModel, voices_dir: Path) -> None:
    """Regression: the reference tail leaking into ICL output / the first phoneme swallowed.

    The reference is trimmed (surrounding silence does not change the prompt length) and gets
    REF_TAIL_SILENCE_S of silence appended before it is encoded, so the codes the model
    continues from end in silence.
    """
    from personalization_engine.audio_io import load_audio

    samples, sr = load_audio(voices_dir / REF, sample_rate=SR)
    prepared = qwen_adapter.prepare_reference(samples)
    tail = int(qwen_adapter.REF_TAIL_SILENCE_S * SR)
    assert len(prepared) == len(samples) + tail and not prepared[-tail:].any()
    padded = np.concatenate([np.zeros(2 * SR, np.float32), samples, np.zeros(2 * SR, np.float32)])
    plain = tiny_model.create_voice((samples, sr), transcript=REF_TEXT, analyze=False)
    with_silence = tiny_model.create_voice((padded, sr), transcript=REF_TEXT, analyze=False)
    # 4 s of added silence is trimmed away again (up to the trimmer's 50 ms margins)
    assert with_silence.reference_duration_s == pytest.approx(plain.reference_duration_s, abs=0.15)
    assert abs(with_silence.ref_codes.shape[0] - plain.ref_codes.shape[0]) <= 2


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: (np.zeros(5 * SR, np.float32), SR), AudioInputError, "silence"),  # all-silent reference
        (lambda d: (np.sin(np.arange(SR // 2) * 0.05).astype(np.float32) * 0.3, SR), AudioInputError, "speech"),  # 0.5 s
        (lambda d: d / "no-such-file.wav", AudioInputError, "no-such-file"),  # missing file
        (lambda d: np.zeros(SR, np.float32), ProfileError, "sample_rate"),  # array without its rate
    ],
)
def test_bad_references(make, error, match, tiny_model: TTSModel, tmp_path: Path) -> None:
    with pytest.raises(error, match=match):
        tiny_model.create_voice(make(tmp_path), analyze=False)


def test_bad_transcript_and_wrong_model_kind(tiny_model: TTSModel, voices_dir: Path) -> None:
    with pytest.raises(ProfileError, match="transcript is 1200 characters"):
        tiny_model.create_voice(voices_dir / REF, transcript="a" * 1200, analyze=False)
    with pytest.raises(ProfileError, match="transcript must be a string"):
        tiny_model.create_voice(voices_dir / REF, transcript=42, analyze=False)  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match="generate_design needs the VoiceDesign model"):
        tiny_model.generate_design("Hello.", "A calm voice.")


def test_voice_prompt_is_computed_once(tiny_model: TTSModel, voices_dir: Path) -> None:
    """generate never re-encodes the reference: the codec encoder runs once, in create_voice;
    the speaker encoder runs once there and then once per segment on the *output* (similarity)."""
    model = tiny_model._qwen.model
    encoder_calls: list[int] = []
    speaker_frames: list[int] = []
    hooks = [
        model.speech_tokenizer.model.encoder.encoder.register_forward_hook(lambda m, a, o: encoder_calls.append(1)),
        model.speaker_encoder.register_forward_hook(lambda m, a, o: speaker_frames.append(a[0].shape[1])),
    ]
    try:
        voice = tiny_model.create_voice(voices_dir / REF, transcript=REF_TEXT, analyze=False)
        assert len(encoder_calls) == 1 and len(speaker_frames) == 1
        ref_mel_frames = speaker_frames[0]
        results = [r for line in ("First line.", "Second line.") for r in tiny_model.generate(line, voice, max_new_frames=8, seed=0)]
    finally:
        for h in hooks:
            h.remove()
    assert len(encoder_calls) == 1  # no re-encoding per line
    assert len(speaker_frames) == 1 + len(results)  # one similarity per segment
    for r, mel_frames in zip(results, speaker_frames[1:]):
        assert abs(mel_frames - len(r.audio) / 256) <= 1 and mel_frames != ref_mel_frames  # hop 256: the output


def test_voice_save_load_round_trip(tiny_model: TTSModel, icl_voice: Voice, xvector_voice: Voice, tmp_path: Path) -> None:
    for voice in (icl_voice, xvector_voice):
        folder = voice.save(tmp_path / voice.mode)
        assert sorted(p.name for p in folder.iterdir()) == ["voice.json", "voice.safetensors"]
        loaded = Voice.load(folder)
        assert (loaded.mode, loaded.transcript, loaded.name, loaded.reference_sha256) == (
            voice.mode, voice.transcript, voice.name, voice.reference_sha256)
        np.testing.assert_array_equal(loaded.speaker_embedding, voice.speaker_embedding)
        if voice.ref_codes is not None:
            np.testing.assert_array_equal(loaded.ref_codes, voice.ref_codes)
        a = tiny_model.synthesize("Same words, same seed.", voice, seed=11, max_new_frames=10)
        b = tiny_model.synthesize("Same words, same seed.", loaded, seed=11, max_new_frames=10)
        np.testing.assert_array_equal(a.audio, b.audio)


def test_voice_carries_voice_dna_through_save_and_load(tiny_model: TTSModel, voices_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("personalization_engine.feature_extractor")
    voice = tiny_model.create_voice(voices_dir / OTHER_REF)  # analyze=True: Voice DNA (+ emotion if available)
    assert voice.profile is not None
    pitch = voice.profile.prosody.pitch
    assert 60 < pitch.median_hz < 400 and pitch.register
    loaded = Voice.load(voice.save(tmp_path / "v"))
    assert loaded.profile.prosody.pitch.median_hz == pytest.approx(pitch.median_hz, abs=0.01)
    assert loaded.profile.prosody.rate.syllable_count == voice.profile.prosody.rate.syllable_count
    assert len(loaded.profile.prosody.pitch.contour.f0_hz) == len(pitch.contour.f0_hz)
    assert describe_voice(loaded.profile) == describe_voice(voice.profile)


def test_voice_load_errors(icl_voice: Voice, tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="voice.json is missing"):
        Voice.load(tmp_path / "nothing-here")
    folder = icl_voice.save(tmp_path / "v")
    blob = bytearray((folder / "voice.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "voice.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ProfileError, match="does not match the hash"):
        Voice.load(folder)
    folder = icl_voice.save(tmp_path / "w")
    meta = json.loads((folder / "voice.json").read_text())
    meta["schema_version"] = "9.0"
    (folder / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match="version 9.0 is not supported"):
        Voice.load(folder)


def test_voice_from_a_model_of_another_width_is_refused(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    other = Voice(mode="xvector", speaker_embedding=np.ones(2048, np.float32), ref_codes=None, transcript=None,
                  name="big", reference_sha256="0" * 64, model_id="Qwen/Qwen3-TTS-12Hz-1.7B-Base")
    with pytest.raises(ProfileError, match="width 2048.*needs width 64"):
        tiny_model.generate("Hello.", other)


# --- generation --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["xvector", "icl"])
def test_generate_and_synthesize_in_both_modes(mode: str, tiny_model: TTSModel, xvector_voice: Voice, icl_voice: Voice) -> None:
    voice = icl_voice if mode == "icl" else xvector_voice
    results = list(tiny_model.generate("Hello there. How are you today?", voice, language="english", max_new_frames=12, seed=1))
    assert [r.segment_idx for r in results] == list(range(len(results)))
    assert [r.is_final for r in results] == [False] * (len(results) - 1) + [True]
    for r in results:
        _check_result(r, max_frames=12)
        assert -1.0 <= r.similarity <= 1.0
    assert results[0].time_to_first_audio_s > 0
    joined = tiny_model.synthesize("Hello there. How are you today?", voice, language="english", max_new_frames=12, seed=1)
    assert joined.is_final and joined.text == "Hello there. How are you today?"
    np.testing.assert_array_equal(joined.audio, np.concatenate([r.audio for r in results]))
    assert joined.similarity == results[0].similarity


def test_seed_makes_output_reproducible_without_touching_the_global_rng(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    state = torch.random.get_rng_state()
    a = tiny_model.synthesize("Reproducible.", xvector_voice, seed=3, max_new_frames=8)
    b = tiny_model.synthesize("Reproducible.", xvector_voice, seed=3, max_new_frames=8)
    c = tiny_model.synthesize("Reproducible.", xvector_voice, seed=4, max_new_frames=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)


def test_an_options_record_equals_the_same_keywords(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    """generate(text, voice, GenerateOptions(...)) runs exactly as the same keyword overrides do,
    and overrides replace fields of a given record; bad ones fail at call time."""
    from personalization_engine.tts import GenerateOptions

    opts = GenerateOptions(seed=3, max_new_frames=8, language="en")
    (a,) = tiny_model.generate("Options record.", xvector_voice, opts)
    (b,) = tiny_model.generate("Options record.", xvector_voice, seed=3, max_new_frames=8, language="en")
    (c,) = tiny_model.generate("Options record.", xvector_voice, opts, max_new_frames=5)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert (a.frames, c.frames, a.extra["language"]) == (8, 5, "english")
    assert a.segment_final and a.chunk_idx == 0 and a.frame_start == 0 and a.pause_after_s == 0.0
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_frames'"):
        tiny_model.generate("Hello.", xvector_voice, opts, max_frames=3)


def test_temperature_zero_is_greedy(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    a = tiny_model.synthesize("Greedy.", xvector_voice, temperature=0, max_new_frames=6)
    b = tiny_model.synthesize("Greedy.", xvector_voice, temperature=0, max_new_frames=6)
    np.testing.assert_array_equal(a.audio, b.audio)


def test_long_text_is_split_and_joined_with_pauses(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    sentence = "This sentence is long enough that three of them will not fit into one segment of speech."
    text = " ".join([sentence] * 3)
    results = list(tiny_model.generate(text, xvector_voice, max_new_frames=4, seed=0))
    assert len(results) >= 2
    assert " ".join(r.text for r in results) == text  # nothing cut off
    joined = tiny_model.synthesize(text, xvector_voice, max_new_frames=4, seed=0)
    pauses = [r.pause_after_s for r in results[:-1]]
    assert all(p > 0 for p in pauses) and joined.extra["pauses_s"] == pauses
    assert len(joined.audio) == sum(r.frames for r in results) * SPF + sum(round(p * SR) for p in pauses)
    first = len(results[0].audio)
    assert not joined.audio[first:first + round(pauses[0] * SR)].any()  # the pause is silence
    assert joined.frames == sum(r.frames for r in results) and joined.extra["segments"] == len(results)


def test_frame_budget_stops_a_runaway_generation(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    """Random weights never say end-of-speech: the text-length budget is what stops them."""
    (r,) = tiny_model.generate("Hi.", xvector_voice, seed=0)
    assert r.frames == frame_budget("Hi.") and r.hit_budget and r.segment_final
    _check_result(r, max_frames=frame_budget("Hi."))


def test_language_codes_are_accepted(tiny_model: TTSModel, xvector_voice: Voice) -> None:
    (r,) = tiny_model.generate("Bonjour.", xvector_voice, language="FR", max_new_frames=4, seed=0)
    assert r.extra["language"] == "french"


@pytest.mark.parametrize(
    ("text", "kwargs", "error", "match"),
    [
        ("", {}, SynthesisError, "empty"),  # empty text
        ("  \n\t ", {}, SynthesisError, "empty"),  # whitespace only
        ("x" * 20_000, {}, SynthesisError, "20,000 characters; at most 5,000"),  # too long for one call
        ("Hello.", dict(language="klingon"), SynthesisError, "'klingon' is not supported.*english"),
        ("Hello.", dict(temperature=-0.5), ProfileError, "temperature"),
        ("Hello.", dict(top_p=0.0), ProfileError, "top_p"),
        ("Hello.", dict(top_k=-1), ProfileError, "top_k"),
        ("Hello.", dict(max_new_frames=0), ProfileError, "max_new_frames"),
        ("Hello.", dict(seed=-1), ProfileError, "seed"),
        ("Hello.", dict(seed=True), ProfileError, "seed"),  # a bool is not a seed
        (123, {}, SynthesisError, "text must be a string"),
    ],
)
def test_bad_generate_inputs_fail_at_call_time(text, kwargs, error, match, tiny_model: TTSModel, xvector_voice: Voice) -> None:
    with pytest.raises(error, match=match):
        tiny_model.generate(text, xvector_voice, **kwargs)  # no next(): checked before generating


def test_generate_needs_a_voice(tiny_model: TTSModel) -> None:
    with pytest.raises(ProfileError, match="voice must be a Voice"):
        tiny_model.generate("Hello.", "me.wav")  # type: ignore[arg-type]


def test_similarity(tiny_model: TTSModel, xvector_voice: Voice, voices_dir: Path) -> None:
    """The voice's own (trimmed) reference is the same speaker to the encoder: cosine 1."""
    from personalization_engine.audio_io import load_audio

    samples, _ = load_audio(voices_dir / REF, sample_rate=SR)
    assert tiny_model.similarity(samples, xvector_voice) == pytest.approx(1.0, abs=1e-5)
    other, sr16 = load_audio(voices_dir / OTHER_REF, sample_rate=16_000)
    assert -1.0 <= tiny_model.similarity(other, xvector_voice, sample_rate=sr16) < 0.9999
    with pytest.raises(AudioInputError, match="at least 0.25 s"):
        tiny_model.similarity(np.zeros(100, np.float32), xvector_voice)
    with pytest.raises(AudioInputError, match="NaN"):
        tiny_model.similarity(np.full(SR, np.nan, np.float32), xvector_voice)


def test_close_frees_the_model_and_load_model_reloads(tiny_checkpoint: Path, xvector_voice: Voice) -> None:
    model = load_model(str(tiny_checkpoint), device="cpu")
    model.close()
    assert model.closed
    with pytest.raises(ModelLoadError, match="closed; call load_model"):
        model.generate("Hello.", xvector_voice)
    again = load_model(str(tiny_checkpoint), device="cpu")
    assert again is not model and not again.closed


# --- voice design ------------------------------------------------------------------------------


def _profile(register: str, median_hz: float, range_st: float, sps: float, emotion: str, *, uncertain: bool = False) -> VoiceProfile:
    empty = np.zeros(0)
    pitch = PitchStats(median_hz, median_hz, 10.0, median_hz * 0.8, median_hz * 1.3, range_st, 0.6, register,
                       PitchContour(empty, empty, empty.astype(bool)))
    energy = EnergyStats(-25.0, 18.0, empty, empty)
    rate = RateStats(20, sps, sps * 1.2, 2, 0.1, 4.0)
    prosody = ProsodyFeatures(5.0, 4.0, 16_000, pitch, energy, rate)
    est = EmotionEstimate(emotion, 0.8 if not uncertain else 0.3, {emotion: 1.0}, uncertain=uncertain)
    return VoiceProfile(prosody=prosody, emotion=est)


def test_describe_voice_reads_the_voice_dna() -> None:
    low = describe_voice(_profile("baritone", 110.0, 3.0, 3.0, "calm"))
    assert low.startswith("A male baritone voice") and "110 Hz" in low
    assert "flat" in low and "slow" in low and "calm" in low
    high = describe_voice(_profile("soprano", 260.0, 11.0, 6.2, "happy"))
    assert "female" in high and "wide" in high and "fast" in high and "cheerful" in high
    unsure = describe_voice(_profile("alto", 180.0, 6.0, 4.5, "angry", uncertain=True))
    assert "moderate pace" in unsure and "forceful" not in unsure  # an uncertain emotion is left out


def test_design_then_clone(tiny_design_checkpoint: Path, tiny_checkpoint: Path) -> None:
    """VoiceDesign speaks an instruction made from Voice DNA; a Base model then clones the result.
    Loading the second model frees the first."""
    design = load_model(str(tiny_design_checkpoint), device="cpu")
    assert design.kind == "voice_design"
    instruct = describe_voice(_profile("tenor", 140.0, 6.0, 4.5, "calm"))
    results = list(design.generate_design("A designed voice speaks.", instruct, max_new_frames=30, seed=2))
    for r in results:
        _check_result(r, max_frames=30)
        assert r.similarity is None  # no speaker encoder in a VoiceDesign model
    designed = design.synthesize_design("A designed voice speaks.", "", max_new_frames=30, seed=2)  # no instruction
    with pytest.raises(ProfileError, match="create_voice needs a Base model"):
        design.create_voice((designed.audio, SR))
    base = load_model(str(tiny_checkpoint), device="cpu")
    assert design.closed  # switching models freed the previous one
    voice = base.create_voice((designed.audio, SR), name="designed", analyze=False)
    _check_result(base.synthesize("Now cloned.", voice, max_new_frames=6, seed=0), max_frames=6)


# --- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_bf16_end_to_end(tiny_checkpoint: Path, voices_dir: Path) -> None:
    model = load_model(str(tiny_checkpoint))  # auto: CUDA in bfloat16
    assert model.device.startswith("cuda") and model.dtype in ("bfloat16", "float16")
    voice = model.create_voice(voices_dir / REF, transcript=REF_TEXT, analyze=False)
    r = model.synthesize("Hello from the GPU.", voice, max_new_frames=12, seed=0)
    _check_result(r, max_frames=12)
    assert 0 < r.peak_memory_gb < 2
    model.close()
    assert torch.cuda.memory_allocated() < 50e6


def test_importing_qwen_tts_prints_nothing() -> None:
    """Regression: qwen-tts 0.1.1 prints a flash-attn banner on stdout when imported; the
    library must never print (the REPL's screen and piped CLI output stay clean)."""
    import subprocess
    import sys

    code = ("from personalization_engine.qwen_adapter import import_qwen_tts\n"
            "import_qwen_tts()\nimport qwen_tts.core.models, qwen_tts.core.tokenizer_12hz\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_out_of_range_audio_does_not_print(tiny_model: TTSModel, xvector_voice: Voice, capfd) -> None:
    """Regression: qwen-tts' mel front end print()s a warning for samples outside [-1, 1]."""
    loud = np.random.default_rng(0).uniform(-1.5, 1.5, SR).astype(np.float32)
    sim = tiny_model.similarity(loud, xvector_voice)
    assert -1.0 <= sim <= 1.0
    assert capfd.readouterr().out == ""
