"""Emotion training (personalization_engine.emotion.training): the corpus loaders (all four
corpora, including the command words and the LibriSpeech readers), the feature-cache location,
class-and-corpus weights, the cross-validated uncertainty threshold, and the ``train`` command
line end to end on a small real-speech subset."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from personalization_engine.emotion.detector import EmotionDetector
from personalization_engine.emotion.features import FEATURE_NAMES
from personalization_engine.emotion.training.augment import CopyRecipe, copy_seed, make_copy, simulate_channel
from personalization_engine.emotion.training.data import cache_dir, read_corpora
from personalization_engine.emotion.training.train import (
    CORPUS_WEIGHTS,
    choose_threshold,
    pooled_threshold,
    sample_weights,
)
from personalization_engine.errors import ProfileError
from personalization_engine.schema import EMOTION_LABELS

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- loaders
@pytest.mark.corpus
def test_all_four_corpora_are_found_under_the_data_folder(shared_data):
    clips = read_corpora(shared_data)
    by_corpus: dict[str, list] = {}
    for c in clips:
        by_corpus.setdefault(c.corpus, []).append(c)
    assert set(by_corpus) == {"RAVDESS", "EmoDB", "IndianEmoSpeechCommand", "LibriSpeech"}
    assert len(by_corpus["RAVDESS"]) == 1064 and len(by_corpus["EmoDB"]) == 454
    # Command words: 4 emotions, 104 speakers, speakers prefixed with their corpus.
    indian = by_corpus["IndianEmoSpeechCommand"]
    assert len(indian) == 925 and {c.label for c in indian} == {"angry", "calm", "fearful", "happy"}
    assert len({c.speaker for c in indian}) == 104 and all(c.speaker.startswith("IndianEmoSpeechCommand:") for c in indian)
    # LibriSpeech: two source subsets in labels.csv are one corpus, 177 readers, all calm.
    libri = by_corpus["LibriSpeech"]
    assert len(libri) == 222 and {c.label for c in libri} == {"calm"}
    assert len({c.speaker for c in libri}) == 177 and all(c.path.is_file() for c in libri)


@pytest.mark.corpus
def test_a_single_corpus_folder_reads_alone(shared_data):
    clips = read_corpora(shared_data / "neutral" / "librispeech")
    assert len(clips) == 222 and {c.corpus for c in clips} == {"LibriSpeech"}


def test_bad_labels_are_refused_with_the_allowed_set(tmp_path):
    (tmp_path / "labels.csv").write_text("file,emotion7\na.flac,bored\n")
    with pytest.raises(ProfileError, match="emotion7 is 'bored'; allowed: calm"):
        read_corpora(tmp_path)
    with pytest.raises(ProfileError, match="does not exist"):
        read_corpora(tmp_path / "missing")


def test_feature_cache_folder_is_resolved_when_used(monkeypatch, tmp_path):
    """Regression: the cache folder was fixed at import (an env change later was ignored)."""
    monkeypatch.setenv("EMOTION_FEATURE_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("EMOTION_FEATURE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "personalization_engine" / "emotion"


# --------------------------------------------------------------------------- training copies
def test_channel_copy_keeps_the_speech_above_the_noise():
    """Known answer: a 1 kHz tone through 12 random channels stays a 1 kHz tone (rooms and
    device responses only scale and delay it) with noise 15-30 dB below it, or none."""
    sr = 16_000
    t = np.arange(2 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    snrs = []
    for k in range(12):
        y = simulate_channel(tone, sr, copy_seed("tone.wav", k))
        assert y.shape == tone.shape and y.dtype == np.float32 and np.abs(y).max() <= 0.99
        tail, tt = y[sr:].astype(np.float64), t[sr:]  # past the reverberation onset
        basis = np.column_stack([np.sin(2 * np.pi * 1000.0 * tt), np.cos(2 * np.pi * 1000.0 * tt)])
        fit = basis @ np.linalg.lstsq(basis, tail, rcond=None)[0]
        snrs.append(10 * np.log10(np.sum(fit**2) / np.sum((tail - fit) ** 2)))
    assert min(snrs) > 13.0 and any(s < 31.0 for s in snrs)


def test_copies_are_deterministic_per_file_and_copy(rng):
    x = rng.standard_normal(16_000).astype(np.float32) * 0.1
    recipe = CopyRecipe(0.95, True)
    a, b = (make_copy(x, recipe, 16_000, copy_seed("clip.wav", 4)) for _ in range(2))
    other = make_copy(x, recipe, 16_000, copy_seed("clip.wav", 5))
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    assert len(a) == pytest.approx(len(x) / 0.95, abs=2)  # slower playback: longer clip
    assert make_copy(x, CopyRecipe(1.0, False), 16_000, copy_seed("clip.wav", 0)) is x  # copy 0: the clip


# --------------------------------------------------------------------------- weights, threshold
def test_weights_balance_corpora_then_classes():
    y = np.array(["calm"] * 50 + ["angry"] * 10 + ["calm"] * 5 + ["angry"] * 5 + ["calm"] * 30)
    corpora = np.array(["RAVDESS"] * 60 + ["IndianEmoSpeechCommand"] * 10 + ["LibriSpeech"] * 30)
    w = sample_weights(y, corpora)
    assert w.mean() == pytest.approx(1.0)
    # Every class carries the same total weight ...
    assert w[y == "calm"].sum() == pytest.approx(w[y == "angry"].sum())
    # ... and inside a class, a corpus counts by its corpus weight, not by its clip count.
    angry_r, angry_i = w[(y == "angry") & (corpora == "RAVDESS")].sum(), w[(y == "angry") & (corpora == "IndianEmoSpeechCommand")].sum()
    # RAVDESS angry: 10/60 of its corpus weight; commands angry: 5/10 of theirs.
    assert angry_r / angry_i == pytest.approx((10 / 60 * CORPUS_WEIGHTS["RAVDESS"])
                                              / (0.5 * CORPUS_WEIGHTS["IndianEmoSpeechCommand"]))


def test_threshold_is_where_shown_labels_stop_being_mostly_right():
    """Known answer: labels with top probability >= 0.5 are right, below 0.5 mostly wrong."""
    rng = np.random.default_rng(0)
    top = np.concatenate([rng.uniform(0.5, 0.9, 200), rng.uniform(0.2, 0.5, 200)])
    right = np.concatenate([np.ones(200, bool), rng.uniform(size=200) < 0.2])
    proba = np.zeros((400, len(EMOTION_LABELS)))
    proba[:, 0] = top
    proba[:, 1:] = ((1 - top) / (len(EMOTION_LABELS) - 1))[:, None]
    y = np.where(right, EMOTION_LABELS[0], EMOTION_LABELS[1])
    t = choose_threshold(y, proba, np.ones(400))["threshold"]
    assert 0.45 <= t <= 0.52


def test_pooled_threshold_lets_an_overconfident_held_out_set_raise_it():
    """Known answer. Speaker folds: labels below 0.45 wrong, 0.45-0.55 right 60 % of the time, above
    right. A held-out corpus a tenth the size: wrong below 0.55, 0.55-0.7 right 30 % of the time,
    above right. Alone, the folds choose about 0.45 and the corpus 0.7. Pooled with equal say,
    hiding a 0.45-0.55 label costs the folds 0.2 (net) and saves the corpus 1, hiding a 0.55-0.7
    one costs the folds 1 and saves the corpus 0.4: the threshold settles near 0.55. Weighted by
    rows instead, the big set would decide alone."""
    rng = np.random.default_rng(1)

    def held_out(n: int, p_right: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        top = rng.uniform(0.25, 0.9, n)
        proba = np.zeros((n, len(EMOTION_LABELS)))
        proba[:, 0] = top
        proba[:, 1:] = ((1 - top) / (len(EMOTION_LABELS) - 1))[:, None]
        y = np.where(rng.uniform(size=n) < p_right(top), EMOTION_LABELS[0], EMOTION_LABELS[1])
        return y, proba, np.full(n, "RAVDESS")

    folds = held_out(4000, lambda t: np.select([t < 0.45, t < 0.55], [0.0, 0.6], 1.0))
    corpus = held_out(400, lambda t: np.select([t < 0.55, t < 0.7], [0.0, 0.3], 1.0))
    alone = [choose_threshold(y, p, np.ones(len(y)))["threshold"] for y, p, _ in (folds, corpus)]
    pooled = pooled_threshold([folds, corpus])
    by_rows = choose_threshold(np.concatenate([folds[0], corpus[0]]), np.concatenate([folds[1], corpus[1]]),
                               np.ones(4400))["threshold"]
    assert alone[0] <= 0.5 and alone[1] >= 0.65 and by_rows <= 0.5
    assert 0.5 < pooled["threshold"] <= 0.6 and "pooled" in pooled["rule"]


# --------------------------------------------------------------------------- train command line
def _four_corpora(tmp_path: Path, shared_data: Path, speakers: int = 4, per_class: int = 2) -> Path:
    """A small data folder laid out like ../shared/data: four corpus folders of symlinked clips."""
    root = tmp_path / "data"
    for sub in ("emotion/ravdess", "emotion/emodb", "emotion/indian_emo_commands", "neutral/librispeech"):
        src = shared_data / sub
        with open(src / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        n_spk = speakers * 3 if sub.startswith("neutral") else speakers
        keep = sorted({r["speaker"] for r in rows})[:n_spk]
        chosen = [r for spk in keep for lab in EMOTION_LABELS
                  for r in [r for r in rows if r["speaker"] == spk and r["emotion7"] == lab][:per_class]]
        (root / sub).mkdir(parents=True)
        for r in chosen:
            (root / sub / r["file"]).symlink_to(src / r["file"])
        with open(root / sub / "labels.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(chosen)
    return root


@pytest.mark.corpus
def test_train_cli_writes_a_loadable_model_manifest_and_report(tmp_path, shared_data):
    data = _four_corpora(tmp_path, shared_data)
    out, again = tmp_path / "models" / "svm_model.pkl", tmp_path / "again" / "svm_model.pkl"
    runs = [subprocess.run(
        [sys.executable, "-m", "personalization_engine.emotion_detector", "train", "--data", str(data),
         "--out", str(path), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        for path in (out, again)]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    assert out.read_bytes() == again.read_bytes()  # deterministic: the same model, byte for byte
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert {c["name"]: c["speakers"] for c in manifest["training_data"]["corpora"]} == {
        "RAVDESS": 4, "EmoDB": 4, "IndianEmoSpeechCommand": 4, "LibriSpeech": 12}
    cv = manifest["cv"]
    assert set(cv["per_corpus"]) == set(cv["leave_one_corpus_out"]) == {
        "RAVDESS", "EmoDB", "IndianEmoSpeechCommand", "LibriSpeech"}
    assert manifest["uncertain_below"] == cv["uncertainty"]["threshold"] and "pooled" in cv["uncertainty"]["rule"]
    assert "calm_or_uncertain" in cv["leave_one_corpus_out"]["LibriSpeech"]
    report = out.with_name("svm_model_report.md").read_text()
    for heading in ("## What the label means", "## Data", "## Targets", "## Speaker-held-out cross-validation",
                    "Confusion matrix", "## Leave one corpus out"):
        assert heading in report
    assert report.strip() == runs[0].stdout.strip()  # printed and written
    det = EmotionDetector.load(out)
    assert cv["C"] == det.C and det.predict_proba(np.zeros((1, len(FEATURE_NAMES)))).shape == (1, 7)
