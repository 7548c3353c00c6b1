"""The pretrained voice encoder behind the ``ef-8`` emotion features: its hash-checked weights,
its front end (the analysis spectrogram, level-free), its windows, and that it still tells
speakers apart on real speech (the proof that the spectrogram reaches it as it was trained)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from personalization_engine.analysis import default_detector, emotion_unavailable_reason
from personalization_engine.audio_io import load_audio
from personalization_engine.emotion import voice_encoder
from personalization_engine.emotion.detector import DEFAULT_MODEL_PATH, EmotionDetector
from personalization_engine.emotion.features import COMPACT_FEATURE_NAMES, FEATURE_NAMES, compute_features
from personalization_engine.errors import ModelLoadError

REPO = Path(__file__).resolve().parent.parent
ENC = np.array([n.startswith("voice_enc") for n in FEATURE_NAMES])


def _embedding(samples: np.ndarray) -> np.ndarray:
    return compute_features(samples)[ENC]


def _speaker(name: str) -> str:
    return name.split("-")[0] if "-" in name else name.rsplit("_", 1)[0]


def test_the_embedding_closes_the_feature_vector_and_stays_out_of_the_compact_set():
    assert ENC.sum() == voice_encoder.EMBEDDING_DIM == 256
    assert FEATURE_NAMES[-256:] == voice_encoder.NAMES
    assert not any(n.startswith("voice_enc") for n in COMPACT_FEATURE_NAMES)


def test_shipped_weights_pass_the_hash_and_build_the_three_layer_lstm():
    lstm = voice_encoder.encoder()
    assert isinstance(lstm, torch.nn.LSTM)
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (40, 256, 3)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in lstm.parameters())
    assert voice_encoder.encoder() is lstm  # loaded once per process


def test_one_changed_byte_is_refused_naming_both_hashes(tmp_path):
    data = bytearray(voice_encoder.WEIGHTS_PATH.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "voice_encoder.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as err:
        voice_encoder.encoder(bad)
    msg = str(err.value)
    assert voice_encoder.WEIGHTS_SHA256 in msg and "NOT used" in msg and "convert_voice_encoder" in msg


def test_missing_weights_say_how_to_restore_them(tmp_path):
    with pytest.raises(ModelLoadError, match=r"cannot be read.*git checkout -- models/"):
        voice_encoder.read_weights(tmp_path / "nothing.safetensors")


def test_the_detector_refuses_to_load_without_its_encoder(tmp_path, monkeypatch):
    pkl = tmp_path / "svm_model.pkl"
    shutil.copyfile(DEFAULT_MODEL_PATH, pkl)
    shutil.copyfile(DEFAULT_MODEL_PATH.with_suffix(".json"), pkl.with_suffix(".json"))
    EmotionDetector.load(pkl)  # the copy itself is fine
    monkeypatch.setattr(voice_encoder, "WEIGHTS_PATH", tmp_path / "gone.safetensors")
    with pytest.raises(ModelLoadError, match="need the voice encoder"):
        EmotionDetector.load(pkl)
    # The app's loader turns that into "emotion unavailable", with the reason, never a crash.
    assert default_detector(pkl) is None
    assert "voice encoder" in (emotion_unavailable_reason(path=pkl) or "")


@pytest.mark.parametrize(
    ("frames", "starts"),
    [(30, [0]), (80, [0]), (81, [0, 1]), (200, [0, 60, 120]), (320, [0, 80, 160, 240]), (1000, [0, 307, 613, 920])],
)
def test_windows_cover_the_clip_evenly_up_to_four(frames, starts):
    got = voice_encoder.partial_starts(frames)
    assert got.tolist() == starts
    assert len(got) <= voice_encoder.MAX_WINDOWS
    if frames > voice_encoder.PARTIAL_FRAMES:
        assert got[-1] + voice_encoder.PARTIAL_FRAMES == frames


def test_the_embedding_is_level_free_deterministic_and_finite(voices_dir):
    x = load_audio(voices_dir / "LJ001-0004.flac", sample_rate=16000).samples
    e = _embedding(x)
    assert e.shape == (256,) and np.isfinite(e).all() and np.abs(e).max() < 1.0  # LSTM outputs: tanh-bounded
    np.testing.assert_array_equal(e, _embedding(x))
    np.testing.assert_allclose(_embedding(x * 0.25), e, atol=1e-5)  # -12 dB: the encoder sees -30 dBFS either way


def test_it_still_tells_speakers_apart_on_real_speech(voices_dir):
    """Each of the 7 speakers with two clips in tests/data/voices: every same-speaker cosine is
    above every different-speaker cosine (measured: 0.935-0.972 against at most 0.894)."""
    files = sorted(voices_dir.glob("*.flac"))
    emb = np.array([_embedding(load_audio(f, sample_rate=16000).samples) for f in files])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spk = np.array([_speaker(f.name) for f in files])
    sim = emb @ emb.T
    same = (spk[:, None] == spk[None, :]) & ~np.eye(len(spk), dtype=bool)
    assert same.sum() == 14
    assert sim[same].min() > sim[spk[:, None] != spk[None, :]].max()


def test_the_conversion_script_keeps_the_lstm_only_as_float16(tmp_path):
    from safetensors.torch import load_file

    lstm = torch.nn.LSTM(40, 256, 3)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state |= {"linear.weight": torch.zeros(256, 256), "similarity_weight": torch.ones(1)}
    src = tmp_path / "pretrained.pt"
    torch.save({"step": 1, "model_state": state, "optimizer_state": {}}, src)
    out = tmp_path / "enc.safetensors"
    run = subprocess.run([sys.executable, "scripts/convert_voice_encoder.py", str(src), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    got = load_file(out)
    assert sorted(got) == sorted(lstm.state_dict()) and all(v.dtype == torch.float16 for v in got.values())
    torch.testing.assert_close(got["weight_hh_l2"].float(), lstm.weight_hh_l2.detach(), atol=1e-3, rtol=1e-3)
    assert "sha256" in run.stdout

    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(4, 4)}}, src)
    bad = subprocess.run([sys.executable, "scripts/convert_voice_encoder.py", str(src), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 1 and "not a 3-layer LSTM" in bad.stderr
