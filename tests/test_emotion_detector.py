"""The emotion detector: safe loading of the shipped model, real-speech predictions, bad input,
a speaker-held-out accuracy check trained inside the test, and the ``eval`` and ``train``
command lines."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalization_engine import emotion_detector
from personalization_engine.analysis import analyze_voice
from personalization_engine.emotion_data import clip_features, read_corpora
from personalization_engine.emotion_detector import (
    DEFAULT_MODEL_PATH,
    TRAIN_COMMAND,
    EmotionDetector,
)
from personalization_engine.emotion_features import (
    COMPACT_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURE_VERSION,
)
from personalization_engine.errors import (
    AudioInputError,
    FeatureExtractionError,
    ModelLoadError,
)
from personalization_engine.schema import EMOTION_LABELS

REPO = Path(__file__).resolve().parent.parent

#: Speaker-held-out check: train on the other 16 RAVDESS actors, test on actors 01 and 02 (no actor
#: on both sides). Same recipe as the shipped model (features, the two scaler + linear SVM members at
#: the shipped C values, speaker-grouped sigmoid calibration, averaged probabilities) without EmoDB
#: and the speed copies, to keep CI fast.
HELD_OUT_TEST_ACTORS = ("Actor_01", "Actor_02")
#: Threshold of that check, derived from CV: the same protocol run over the 9 disjoint actor pairs
#: 01-02, 03-04, ..., 17-18 (each tested after training on the other 16 actors) gave 7-class
#: accuracies of 0.517-0.842, mean 0.644 (0.670 for 01-02). The threshold sits below the worst
#: pair and far above chance (1/7 = 0.14). The full recipe: models/svm_model_report.md.
HELD_OUT_MIN_ACCURACY = 0.50


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def detector() -> EmotionDetector:
    return EmotionDetector.load()


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    """The shipped pickle and its manifest copied into tmp_path."""
    pkl = tmp_path / "svm_model.pkl"
    shutil.copyfile(DEFAULT_MODEL_PATH, pkl)
    shutil.copyfile(DEFAULT_MODEL_PATH.with_suffix(".json"), pkl.with_suffix(".json"))
    return pkl


def _rewrite_manifest(pkl: Path, **changes: object) -> None:
    man = pkl.with_suffix(".json")
    manifest = json.loads(man.read_text())
    manifest.update(changes)
    man.write_text(json.dumps(manifest))


class _Payload:
    """Unpickling this creates the marker file: proof that code in a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


# --------------------------------------------------------------------------- loading safely
def test_shipped_model_loads_through_the_hash_check(detector):
    manifest = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    assert manifest["sha256"] == _sha(DEFAULT_MODEL_PATH) == detector.manifest["sha256"]
    assert tuple(manifest["labels"]) == EMOTION_LABELS
    assert tuple(manifest["feature_names"]) == FEATURE_NAMES and manifest["feature_version"] == FEATURE_VERSION
    assert {"sklearn_version", "numpy_version", "training_data", "cv"} <= set(manifest)
    corpora = {c["name"]: c for c in manifest["training_data"]["corpora"]}
    assert set(corpora) == {"RAVDESS", "EmoDB", "IndianEmoSpeechCommand", "LibriSpeech"}
    assert all(c["licence"] for c in corpora.values())
    assert DEFAULT_MODEL_PATH.stat().st_size <= 5e6
    # The uncertainty threshold is the one chosen by cross-validation, stored in the manifest.
    assert detector.uncertain_below == manifest["uncertain_below"] == manifest["cv"]["uncertainty"]["threshold"]
    assert detector.predict_proba(np.zeros((2, len(FEATURE_NAMES)))).shape == (2, len(EMOTION_LABELS))


def test_one_changed_byte_is_refused_naming_both_hashes(model_copy, monkeypatch):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_copy.write_bytes(bytes(data))
    expected = json.loads(model_copy.with_suffix(".json").read_text())["sha256"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    unpickled = []
    # A spy on the (allow-list) unpickler: it must never be reached for a mismatching file.
    monkeypatch.setattr(emotion_detector._AllowListUnpickler, "load", lambda self: unpickled.append(1))
    with pytest.raises(ModelLoadError) as err:
        EmotionDetector.load(model_copy)
    assert expected in str(err.value) and actual in str(err.value)
    assert "NOT loaded" in str(err.value) and TRAIN_COMMAND in str(err.value)
    assert unpickled == []


def test_a_code_running_pickle_never_executes(model_copy, tmp_path):
    marker = tmp_path / "pwned"
    model_copy.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelLoadError, match="does not match the manifest"):
        EmotionDetector.load(model_copy)
    assert not marker.exists()
    # Defence in depth: even with the manifest hash forged to match, the allow-list refuses it.
    _rewrite_manifest(model_copy, sha256=_sha(model_copy))
    with pytest.raises(ModelLoadError, match="not allowed in an emotion model"):
        EmotionDetector.load(model_copy)
    assert not marker.exists()


def test_the_allow_list_takes_only_sklearns_loss_from_the_bare_loss_module():
    """A boosted-trees member pickles its loss as ``_loss.<name>`` (sklearn's compiled module registers
    itself under that bare name): those two names resolve from ``sklearn._loss._loss``; any other
    global of a module called ``_loss`` is refused."""
    import io

    import sklearn._loss._loss as sk_loss

    def find(module: str, name: str):
        return emotion_detector._AllowListUnpickler(io.BytesIO(b"")).find_class(module, name)

    assert find("_loss", "CyHalfMultinomialLoss") is sk_loss.CyHalfMultinomialLoss
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        find("_loss", "system")
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        find("os", "system")


def test_missing_model_or_manifest_gives_the_train_command(tmp_path, model_copy):
    with pytest.raises(ModelLoadError) as err:
        EmotionDetector.load(tmp_path / "nowhere" / "svm_model.pkl")
    assert TRAIN_COMMAND in str(err.value) and "not found" in str(err.value)
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelLoadError, match="manifest .* not found") as err:
        EmotionDetector.load(model_copy)
    assert TRAIN_COMMAND in str(err.value)


def test_incompatible_sklearn_version_is_a_clear_error(model_copy):
    import sklearn

    # What a pickle of another scikit-learn looks like to this one: a class that no longer exists.
    model_copy.write_bytes(b"csklearn.svm._classes\nLinearSVCFromTheFuture\n)R.")
    _rewrite_manifest(model_copy, sha256=_sha(model_copy), sklearn_version="99.0.0")
    with pytest.raises(ModelLoadError) as err:
        EmotionDetector.load(model_copy)
    msg = str(err.value)
    assert "scikit-learn 99.0.0" in msg and f"scikit-learn {sklearn.__version__}" in msg
    assert "scikit-learn==99.0.0" in msg and TRAIN_COMMAND in msg


def test_manifest_for_other_features_is_refused(model_copy):
    _rewrite_manifest(model_copy, feature_version="ef-0")
    with pytest.raises(ModelLoadError, match="trained on features 'ef-0'"):
        EmotionDetector.load(model_copy)


# --------------------------------------------------------------------------- predictions
def test_predictions_on_real_clips_are_deterministic_records(detector, voices_dir, speech_data):
    clips = [voices_dir / "LJ001-0004.flac", voices_dir / "cmu_arctic_us_aew_a0001.flac",
             speech_data / "emotion" / "emodb" / "03a04Wc.flac"]  # EmoDB, angry
    fresh = EmotionDetector.load()
    from personalization_engine.audio_io import load_audio

    for path in clips:
        samples, sr = load_audio(path)
        a, b, c = detector.predict(samples, sr), detector.predict(samples, sr), fresh.predict(samples, sr)
        assert a == b == c
        assert a.label in EMOTION_LABELS and set(a.distribution) == set(EMOTION_LABELS)
        assert sum(a.distribution.values()) == pytest.approx(1.0)
        assert a.probability == max(a.distribution.values()) == a.distribution[a.label]
        assert a.uncertain == (a.probability < detector.uncertain_below)
    # A 44.1 kHz stereo int16 copy of a clip gets (nearly) the same answer: the input is normalised.
    samples, sr = load_audio(clips[0], sample_rate=44_100)
    pcm = np.round(np.column_stack([samples, samples]) * 32767 * 0.5).astype(np.int16)
    est = detector.predict(pcm, 44_100)
    ref = detector.predict(*load_audio(clips[0]))
    assert est.label == ref.label and abs(est.probability - ref.probability) < 0.1


def test_probabilities_average_the_members(detector, voices_dir, speech_data):
    """The shipped model is the mean of its calibrated members (linear SVM on all features, RBF
    kernel member on the compact columns); a compact member sees only its columns."""
    paths = [voices_dir / "LJ001-0004.flac", speech_data / "emotion" / "emodb" / "03a01Fa.flac"]
    X = np.vstack([clip_features(p) for p in paths])
    members = dict(detector.pipeline_.named_estimators_)
    assert "all_features" in members and len(members) >= 2
    expected = np.mean([m.predict_proba(X) for m in members.values()], axis=0)  # columns: sorted labels
    assert list(detector.pipeline_.classes_) == sorted(EMOTION_LABELS)
    order = [EMOTION_LABELS.index(lab) for lab in detector.pipeline_.classes_]
    assert np.allclose(detector.predict_proba(X)[:, order], expected)
    assert 100 < len(COMPACT_FEATURE_NAMES) < len(FEATURE_NAMES) and not any(n.startswith(("mfcc", "logmel")) for n in COMPACT_FEATURE_NAMES)
    # Changing only MFCC/log-mel columns moves the full member but never a compact one.
    Xm = X.copy()
    spectral = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith(("mfcc", "logmel"))]
    Xm[:, spectral] += 3.0
    compact = [m for name, m in members.items()
               if name == "compact_features" or (name == "kernel_features" and detector.kernel_features == "compact")]
    assert compact
    for m in compact:
        assert np.allclose(m.predict_proba(Xm), m.predict_proba(X))
    assert not np.allclose(members["all_features"].predict_proba(Xm), members["all_features"].predict_proba(X))


def test_analysis_profile_carries_the_emotion(voices_dir):
    _, profile = analyze_voice(voices_dir / "LJ001-0004.flac")
    assert profile.emotion is not None and profile.emotion.label in EMOTION_LABELS
    assert set(profile.to_dict()["emotion"]) >= {"label", "probability", "distribution", "uncertain"}


def _speech(voices_dir: Path) -> np.ndarray:
    from personalization_engine.audio_io import load_audio

    return load_audio(voices_dir / "LJ001-0004.flac").samples


@pytest.mark.parametrize("case", ["silence", "half_second", "nan", "noise", "empty"])
def test_no_label_for_audio_without_speech(detector, voices_dir, rng, case):
    sr = 16_000
    signal = {
        "silence": lambda: np.zeros(2 * sr, np.float32),
        "half_second": lambda: _speech(voices_dir)[: sr // 2],
        "nan": lambda: np.where(np.arange(2 * sr) == 100, np.nan, _speech(voices_dir)[: 2 * sr]).astype(np.float32),
        "noise": lambda: (0.1 * rng.standard_normal(3 * sr)).astype(np.float32),
        "empty": lambda: np.zeros(0, np.float32),
    }[case]()
    # The error of the Voice DNA analysis (feature extractor) for the same audio ...
    with pytest.raises((AudioInputError, FeatureExtractionError)) as analysis_err:
        analyze_voice(signal, input_sample_rate=sr, emotion=False)
    # ... is the error of the emotion detector: same class, and never a label.
    with pytest.raises((AudioInputError, FeatureExtractionError)) as emotion_err:
        detector.predict(signal, sr)
    assert type(emotion_err.value) is type(analysis_err.value)
    if isinstance(analysis_err.value, AudioInputError):
        assert str(emotion_err.value) == str(analysis_err.value)
    expected = {"silence": AudioInputError, "half_second": AudioInputError, "nan": AudioInputError,
                "empty": AudioInputError, "noise": FeatureExtractionError}[case]
    assert type(emotion_err.value) is expected


def test_unvoiced_voice_dna_is_refused_before_any_work(detector, voices_dir):
    _, profile = analyze_voice(voices_dir / "LJ001-0004.flac", emotion=False)
    from dataclasses import replace

    unvoiced = replace(profile.prosody, pitch=replace(profile.prosody.pitch, voiced_fraction=0.0))
    with pytest.raises(FeatureExtractionError, match="no voiced speech"):
        detector.predict(_speech(voices_dir), 16_000, prosody=unvoiced)


# --------------------------------------------------------------------------- accuracy
@pytest.mark.corpus
def test_speaker_held_out_accuracy_on_ravdess_actors(detector, shared_data):
    clips = read_corpora(shared_data / "emotion" / "ravdess")
    X = np.vstack([clip_features(c.path) for c in clips])
    y = np.array([c.label for c in clips])
    speakers = np.array([c.speaker.split(":")[1] for c in clips])
    test = np.isin(speakers, HELD_OUT_TEST_ACTORS)
    assert not set(speakers[test]) & set(speakers[~test]) and len(set(speakers[~test])) == 16
    model = EmotionDetector(**detector.manifest["hyperparameters"]).fit(X[~test], y[~test], groups=speakers[~test])
    accuracy = float(np.mean(model.predict_labels(X[test]) == y[test]))
    assert test.sum() == 112 and accuracy >= HELD_OUT_MIN_ACCURACY, accuracy


@pytest.mark.corpus
def test_stored_cv_predictions_match_the_reported_scores(detector, shared_data):
    """The manifest's out-of-fold labels (speaker-held-out) reproduce its RAVDESS UAR.

    The issue's target is 0.65; the channel-robust model reaches about 0.59 (see the report), so
    this guards against a regression below 0.50 and checks the stored scores are honest."""
    from sklearn.metrics import balanced_accuracy_score

    cv = detector.manifest["cv"]
    labels = {c.path.name: c.label for c in read_corpora(shared_data / "emotion" / "ravdess")}
    oof = cv["oof"]
    assert set(labels) <= set(oof)
    names = sorted(labels)
    uar = float(balanced_accuracy_score([labels[n] for n in names], [oof[n] for n in names]))
    assert uar == pytest.approx(cv["per_corpus"]["RAVDESS"]["balanced_accuracy"])
    assert uar >= 0.50


# --------------------------------------------------------------------------- eval command line
def _corpus(tmp_path: Path, speech_data: Path, per_class: int = 2) -> Path:
    """A small labelled folder (symlinks to the EmoDB fixture clips) laid out like ../shared/data/emotion/*."""
    folder = tmp_path / "mini"
    folder.mkdir()
    src = speech_data / "emotion" / "emodb"
    with open(src / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    chosen = [r for lab in EMOTION_LABELS for r in [r for r in rows if r["emotion7"] == lab][:per_class]]
    for r in chosen:
        (folder / r["file"]).symlink_to(src / r["file"])
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "emotion7", "speaker"])
        w.writeheader()
        w.writerows({"file": r["file"], "emotion7": r["emotion7"], "speaker": r["speaker"]} for r in chosen)
    return folder


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalization_engine.emotion_detector", "eval", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_eval_cli_json_and_text(tmp_path, speech_data):
    folder = _corpus(tmp_path, speech_data)
    present = set(EMOTION_LABELS) - {"surprised"}  # EmoDB has no surprised class
    proc = _eval("--data", str(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert {"n", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall"} <= set(obj)
    assert obj["n"] == 2 * len(present) and set(obj["per_class_recall"]) == present
    assert all(0.0 <= obj[k] <= 1.0 for k in ("accuracy", "balanced_accuracy", "macro_f1"))
    text = _eval("--data", str(folder))
    assert text.returncode == 0 and "balanced accuracy" in text.stdout and "macro-F1" in text.stdout
    bad = _eval("--data", str(tmp_path / "missing"), "--json")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- uncertain path
def test_low_top_probability_is_uncertain_and_described_as_such():
    """An estimate under the threshold is shown as "uncertain (top 3)", never as a bare label."""
    from personalization_engine.emotion.detector import estimate_from_proba

    proba = np.array([0.34, 0.15, 0.21, 0.10, 0.08, 0.07, 0.05])
    est = estimate_from_proba(proba, uncertain_below=0.45)
    assert est.uncertain and est.label == "calm"
    assert est.describe() == "uncertain (calm 0.34, sad 0.21, happy 0.15)"
    d = est.to_dict()
    assert d["uncertain"] is True and d["text"] == est.describe()
    sure = estimate_from_proba(proba, uncertain_below=0.30)
    assert not sure.uncertain and sure.describe() == "calm 0.34"


def test_predict_uses_the_model_threshold(detector, voices_dir):
    """The threshold stored with the model decides `uncertain` (not a hand-set constant)."""
    from personalization_engine.audio_io import load_audio

    samples, sr = load_audio(voices_dir / "LJ001-0004.flac")
    p = detector.predict(samples, sr).probability
    detector_low = EmotionDetector.load()
    detector_low.uncertain_below = p + 1e-6
    est = detector_low.predict(samples, sr)
    assert est.uncertain and est.describe().startswith("uncertain (")
    detector_low.uncertain_below = p - 1e-6
    assert not detector_low.predict(samples, sr).uncertain


def test_fingerprint_schema_accepts_the_uncertain_text(detector, voices_dir):
    """The fingerprint's emotion block carries `uncertain` and the text the panel shows."""
    import jsonschema

    schema = json.loads((REPO / "personalization_engine" / "fingerprint.schema.json").read_text())
    emotion_schema = {**schema["$defs"]["emotion"], "$defs": schema["$defs"]}
    _, profile = analyze_voice(voices_dir / "LJ001-0004.flac")
    block = profile.to_dict()["emotion"]
    jsonschema.validate(block, emotion_schema)
    assert block["text"] == profile.emotion.describe()


# --------------------------------------------------------------------------- aliases
def test_old_module_names_are_aliases_of_the_package():
    """emotion_detector / emotion_features / emotion_training / emotion_data keep working."""
    from personalization_engine import (
        emotion,
        emotion_data,
        emotion_features,
        emotion_training,
    )
    from personalization_engine.emotion import detector as det_mod
    from personalization_engine.emotion import features as feat_mod
    from personalization_engine.emotion.training import data as data_mod

    assert emotion_detector.EmotionDetector is det_mod.EmotionDetector is emotion.EmotionDetector
    assert emotion_features.compute_features is feat_mod.compute_features
    assert emotion_features.FEATURE_NAMES == feat_mod.FEATURE_NAMES == FEATURE_NAMES
    assert emotion_data.read_corpora is data_mod.read_corpora
    assert callable(emotion_training.main) and emotion_detector.main is det_mod.main


def test_runtime_import_does_not_load_training():
    """The detector's import path never imports the training package (nor argparse-heavy CLI)."""
    code = ("import sys; import personalization_engine.emotion_detector as m; "
            "print(any(k.startswith('personalization_engine.emotion.training') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
