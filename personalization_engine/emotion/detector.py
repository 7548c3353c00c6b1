"""Emotion "vibe" of a voice: calibrated SVMs and boosted trees over clip-level features.

Labels are :data:`EMOTION_LABELS` (``schema.EMOTION_LABELS``: calm, happy, sad, angry, fearful,
disgust, surprised; calm covers neutral) and features are :data:`FEATURE_NAMES`
(:mod:`.features`: acoustic functionals and, since ``ef-8``, a pretrained voice encoder's
embedding, :mod:`.voice_encoder`), both defined once. The model averages the probabilities of
its members: a linear SVM (``LinearSVC``, one-vs-rest, behind a ``StandardScaler``, sigmoid
calibration) on all features, optionally the same on the compact subset
:data:`COMPACT_FEATURE_NAMES` (no MFCC/log-mel statistics, no embedding), optionally an
RBF-kernel SVM (``Nystroem`` kernel features, then ``LinearSVC``) on the compact or all
features, and optionally gradient-boosted trees on all features (walked as flat arrays at
prediction time, :mod:`._trees`). The shipped model has the first, the kernel member on the
compact features and the trees (see ``models/svm_model.json``). It is trained on acted corpora
(RAVDESS, EmoDB), phone recordings of command words and audiobook readers (calm), with class
and corpus weights (see :mod:`.training` and ``models/svm_model_report.md``).

An estimate whose top probability is below the model's threshold (chosen by cross-validation
and stored in the manifest) is ``uncertain``; :meth:`EmotionEstimate.describe` then reads
"uncertain (calm 0.34, sad 0.21, ...)".

Loading is safe by construction: :meth:`EmotionDetector.load` reads the JSON manifest beside the
pickle, checks the pickle's SHA-256 against it *before* unpickling (a tampered file never
executes), then unpickles with an allow-list of scikit-learn/NumPy/SciPy classes only.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, ProfileError
from ..fileio import sha256_bytes, write_atomic
from ..schema import EMOTION_LABELS, EmotionEstimate, ProsodyFeatures
from . import voice_encoder
from .features import (
    COMPACT_COLUMNS,
    COMPACT_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURE_VERSION,
    SAMPLE_RATE,
    compute_features,
)

_LOGGER = logging.getLogger(__name__)

#: Default uncertainty threshold, used only when a manifest has none: the shipped model's own
#: threshold is chosen by cross-validation (the top probability below which a held-out label
#: was more often wrong than right) and stored in its manifest as ``uncertain_below``.
UNCERTAIN_BELOW = 0.40
#: Version of the model format and training recipe (bump when either changes).
MODEL_VERSION = "4.0"
#: Manifest format identifier.
MANIFEST_FORMAT = "personalization_engine.emotion_detector/1"
#: The shipped model (resolved from the package, not the working directory).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "svm_model.pkl"
#: The exact command that (re)builds the shipped model from the repository root.
TRAIN_COMMAND = (
    "python -m personalization_engine.emotion_detector train "
    "--data ../shared/data --out models/svm_model.pkl"
)
#: Top-level modules the model pickle may reference; anything else is refused on load.
_PICKLE_ALLOWED = ("sklearn", "numpy", "scipy", "copyreg", "collections", "_codecs")
#: Settings of the boosted-trees member (``boosted_trees=True``): 150 rounds at most (early
#: stopping on a tenth of the rows), small trees, strong leaf regularisation, 63 bins per
#: feature (255 store 1.2 MB of bin edges and put the model file over 5 MB).
BOOSTED_TREES = {"max_iter": 150, "learning_rate": 0.08, "max_leaf_nodes": 15, "l2_regularization": 1.0,
                 "min_samples_leaf": 40, "max_bins": 63}
#: The one compiled-module global a boosted-trees member pickles outside the ``sklearn`` package
#: name: its loss (``sklearn._loss._loss``, which registers itself as ``_loss``).
_PICKLE_LOSS = ("CyHalfMultinomialLoss", "__pyx_unpickle_CyHalfMultinomialLoss")
_PICKLE_BUILTINS = frozenset({"slice", "set", "frozenset", "dict", "list", "tuple", "object", "getattr"})


class EmotionDetector:
    """Classify the emotion of a voice clip (scikit-learn-style wrapper around the SVM members).

    ``fit`` and ``predict_proba`` work on feature matrices (rows in :data:`FEATURE_NAMES`
    order), as in scikit-learn; ``predict`` takes one clip's audio, the app's call.

    Parameters
    ----------
    C : float
        Inverse regularisation strength of the SVM on all features (chosen by speaker-grouped CV).
    C_compact : float or None
        The same for the linear SVM on :data:`COMPACT_FEATURE_NAMES`; ``None`` leaves that member out.
    C_kernel : float or None
        ``C`` of the RBF-kernel member (gamma 1/n_features on standardised columns, the
        approximation of scikit-learn's ``gamma="scale"``); ``None`` (default) leaves it out.
    kernel_components : int
        Nystroem components of the kernel member (its size: 8 bytes x components x
        (components + features)).
    kernel_features : {"compact", "all"}
        Columns the kernel member sees.
    calibration_folds : int
        Speaker-grouped folds for the sigmoid probability calibration.
    seed : int
        Random state of the SVM solver and the calibration (results are deterministic).

    Examples
    --------
    >>> det = EmotionDetector.load()  # doctest: +SKIP
    >>> est = det.predict(samples, 16000)  # doctest: +SKIP
    >>> est.label, round(est.probability, 2), est.uncertain  # doctest: +SKIP
    ('angry', 0.81, False)
    """

    def __init__(self, *, C: float = 0.003, C_compact: float | None = 0.001, C_kernel: float | None = None,
                 kernel_components: int = 400, kernel_features: str = "compact", calibration_folds: int = 5,
                 boosted_trees: bool = False, seed: int = 0, uncertain_below: float = UNCERTAIN_BELOW) -> None:
        if kernel_features not in ("all", "compact"):
            raise ProfileError(f"kernel_features is {kernel_features!r}; allowed: 'all', 'compact'.")
        self.C = C
        self.C_compact = C_compact
        self.C_kernel = C_kernel
        self.kernel_components = kernel_components
        self.kernel_features = kernel_features
        self.calibration_folds = calibration_folds
        self.boosted_trees = boosted_trees
        self.seed = seed
        self.uncertain_below = uncertain_below
        self.pipeline_: Any = None
        self.manifest: dict[str, Any] = {}
        self._flat_trees: dict[int, Any] | None = None

    # ----------------------------------------------------------------- scikit-learn API
    def fit(self, X: np.ndarray, y: np.ndarray | list[str], *, groups: np.ndarray | None = None,
            sample_weight: np.ndarray | None = None) -> EmotionDetector:
        """Fit every member (scaler, [kernel features,] linear SVM, calibration) on ``X`` and ``y``.

        ``groups`` (speaker ids) keep each speaker inside one calibration fold, so the
        probabilities are calibrated on voices the SVM did not see. ``sample_weight`` (class and
        corpus weights) goes to the SVMs and the calibration; without it classes are balanced.
        The fitted model is one scikit-learn ``VotingClassifier`` (soft voting, equal weights):
        the mean of the members' calibrated probabilities.
        """
        import sklearn
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import VotingClassifier
        from sklearn.kernel_approximation import Nystroem
        from sklearn.model_selection import GroupKFold, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        X, y = _check_xy(X, y)
        if sample_weight is None:
            from sklearn.utils.class_weight import compute_sample_weight

            sample_weight = compute_sample_weight("balanced", y)
        if groups is not None and len(set(groups)) >= self.calibration_folds:
            cv: Any = list(GroupKFold(n_splits=self.calibration_folds).split(X, y, groups))
        else:
            cv = StratifiedKFold(n_splits=self.calibration_folds, shuffle=True, random_state=self.seed)

        with sklearn.config_context(enable_metadata_routing=True):  # weights reach SVM + calibration

            def member(C: float) -> Any:
                svm = LinearSVC(C=C, max_iter=20_000, random_state=self.seed).set_fit_request(sample_weight=True)
                cal = CalibratedClassifierCV(svm, method="sigmoid", cv=cv, ensemble=False)
                return cal.set_fit_request(sample_weight=True)

            def scaler() -> Any:
                return StandardScaler().set_fit_request(sample_weight=False)

            def compact() -> Any:
                return ColumnTransformer([("compact", "passthrough", list(COMPACT_COLUMNS))], remainder="drop")

            members: list[tuple[str, Any]] = [("all_features", make_pipeline(scaler(), member(self.C)))]
            if self.C_compact is not None:
                members.append(("compact_features", make_pipeline(compact(), scaler(), member(self.C_compact))))
            if self.C_kernel is not None:
                # RBF kernel (gamma 1/n_features on standardised columns, scikit-learn's "scale")
                # approximated by Nystroem features: the model stays small and fast to apply.
                n_cols = len(COMPACT_COLUMNS) if self.kernel_features == "compact" else X.shape[1]
                nystroem = Nystroem(gamma=1.0 / n_cols, n_components=min(self.kernel_components, len(X)),
                                    random_state=self.seed)
                steps = [compact()] if self.kernel_features == "compact" else []
                members.append(("kernel_features", make_pipeline(*steps, scaler(), nystroem, member(self.C_kernel))))
            if self.boosted_trees:
                # Gradient-boosted trees on all features (their own probabilities, not calibrated:
                # log-loss trees with early stopping are close to calibrated). They split on
                # feature interactions the linear and kernel members average away.
                from sklearn.ensemble import HistGradientBoostingClassifier

                trees = HistGradientBoostingClassifier(random_state=self.seed, **BOOSTED_TREES)
                members.append(("boosted_trees", trees.set_fit_request(sample_weight=True)))
            self._flat_trees = None
            self.pipeline_ = VotingClassifier(members, voting="soft").fit(
                X, y, sample_weight=np.asarray(sample_weight, dtype=np.float64))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities, shape (n, 7), columns in EMOTION_LABELS order (0 for untrained labels)."""
        if self.pipeline_ is None:
            raise ModelLoadError(f"the emotion detector is not fitted or loaded; run `{TRAIN_COMMAND}`.")
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != len(FEATURE_NAMES):
            raise ProfileError(
                f"feature matrix has {X.shape[1]} columns; the model needs {len(FEATURE_NAMES)} "
                "(emotion.features.FEATURE_NAMES). Compute them with emotion.features.compute_features."
            )
        proba = self._vote(X)
        out = np.zeros((len(X), len(EMOTION_LABELS)))
        for j, label in enumerate(self.pipeline_.classes_):
            out[:, EMOTION_LABELS.index(str(label))] = proba[:, j]
        return out / out.sum(axis=1, keepdims=True)

    def _vote(self, X: np.ndarray) -> np.ndarray:
        """The soft vote of ``pipeline_`` (``VotingClassifier.predict_proba``: the plain mean of the
        members' probabilities), with the boosted-trees member walked by :class:`._trees.FlatTrees`
        (built once) instead of scikit-learn's per-tree Python loop: the same probabilities, 5 ms
        sooner per clip."""
        from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier

        vc = self.pipeline_
        if not isinstance(vc, VotingClassifier) or vc.weights is not None:
            return np.asarray(vc.predict_proba(X))
        flat = self._flat_trees
        if flat is None:
            from ._trees import FlatTrees

            flat = self._flat_trees = {i: FlatTrees(est) for i, est in enumerate(vc.estimators_)
                                       if isinstance(est, HistGradientBoostingClassifier)}
        probas = [flat[i].predict_proba(X) if i in flat else est.predict_proba(X)
                  for i, est in enumerate(vc.estimators_)]
        return np.mean(probas, axis=0)

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Most probable label per row of ``X`` (array of str)."""
        return np.asarray(EMOTION_LABELS)[self.predict_proba(X).argmax(axis=1)]

    def predict(
        self, audio: np.ndarray, sample_rate: int, *, prosody: ProsodyFeatures | None = None
    ) -> EmotionEstimate:
        """Emotion of one clip.

        Parameters
        ----------
        audio : np.ndarray, shape (n,) or (n, channels)
            Speech samples (any rate from 8 to 192 kHz, float or integer PCM).
        sample_rate : int
            Sample rate of ``audio`` in Hz.
        prosody : ProsodyFeatures, optional
            The clip's Voice DNA when already measured. The emotion features keep their own
            8 kHz pitch track (it also yields the harmonics-to-noise ratio, and keeps the model
            independent of the Voice DNA's tuning), so ``prosody`` is only used to refuse a clip
            the Voice DNA found unvoiced before any work is done.

        Returns
        -------
        EmotionEstimate
            Label, its probability, the 7-class distribution, ``uncertain`` when the top
            probability is below the model's cross-validated threshold
            (:attr:`uncertain_below`); ``describe()`` renders it for people.

        Raises
        ------
        AudioInputError
            Empty, NaN/inf, silent or under 1 s of speech (the same checks as ``load_audio``).
        FeatureExtractionError
            No voiced speech in the clip (noise, clicks): never a label for audio without speech.
        """
        from ..audio_io import load_audio
        from ..errors import FeatureExtractionError

        if prosody is not None and prosody.pitch.voiced_fraction <= 0.0:
            raise FeatureExtractionError(
                "the Voice DNA found no voiced speech in this clip, so it has no emotion to "
                "classify. Record a clip of someone speaking."
            )
        clip = load_audio(np.asarray(audio), sample_rate=SAMPLE_RATE, input_sample_rate=int(sample_rate))
        proba = self.predict_proba(compute_features(clip.samples)[None, :])[0]
        return estimate_from_proba(proba, uncertain_below=self.uncertain_below)

    # ----------------------------------------------------------------- persistence
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> EmotionDetector:
        """Load a model after verifying it against the JSON manifest beside it.

        Raises
        ------
        ModelLoadError
            Missing pickle or manifest (the message gives the train command), SHA-256 mismatch
            (names both hashes; the pickle is never unpickled), a manifest for other features
            or labels, a pickle this scikit-learn cannot load (names both versions), or voice
            encoder weights (``models/voice_encoder.safetensors``) that are missing or fail
            their hash check.
        """
        pkl = Path(path) if path is not None else DEFAULT_MODEL_PATH
        manifest = _read_manifest(pkl)
        data = pkl.read_bytes()
        digest = sha256_bytes(data)
        if digest != manifest.get("sha256"):
            raise ModelLoadError(
                f"{pkl}: SHA-256 {digest} does not match the manifest's {manifest.get('sha256')}; "
                "the model file was modified or corrupted and was NOT loaded (unpickling runs "
                f"code). Restore it from the repository or retrain: `{TRAIN_COMMAND}`."
            )
        _check_manifest_compat(pkl, manifest)
        voice_encoder.read_weights()  # the features need it: refuse now, not at the first clip
        det = cls(**manifest.get("hyperparameters", {}),
                  uncertain_below=float(manifest.get("uncertain_below", UNCERTAIN_BELOW)))
        det.pipeline_ = _safe_unpickle(pkl, data, manifest)
        det.manifest = manifest
        return det

    def save(self, path: str | os.PathLike[str], *, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the pickle and its manifest (``.json`` beside it) atomically; return the manifest."""
        import sklearn

        if self.pipeline_ is None:
            raise ModelLoadError("nothing to save: fit the emotion detector first.")
        pkl = Path(path)
        data = pickle.dumps(self.pipeline_, protocol=pickle.HIGHEST_PROTOCOL)
        full = {
            "format": MANIFEST_FORMAT,
            "model_file": pkl.name,
            "sha256": sha256_bytes(data),
            "size_bytes": len(data),
            "model_version": MODEL_VERSION,
            "labels": list(EMOTION_LABELS),
            "feature_version": FEATURE_VERSION,
            "feature_names": list(FEATURE_NAMES),
            "hyperparameters": {"C": self.C, "C_compact": self.C_compact, "C_kernel": self.C_kernel,
                                "kernel_components": self.kernel_components,
                                "kernel_features": self.kernel_features,
                                "calibration_folds": self.calibration_folds, "seed": self.seed},
            "compact_feature_names": list(COMPACT_FEATURE_NAMES),
            "uncertain_below": self.uncertain_below,
            "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__,
            **(manifest or {}),
        }
        pkl.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(pkl, data)
        write_atomic(pkl.with_suffix(".json"), (json.dumps(full, indent=1) + "\n").encode())
        self.manifest = full
        return full


def estimate_from_proba(proba: np.ndarray, *, uncertain_below: float = UNCERTAIN_BELOW) -> EmotionEstimate:
    """The :class:`EmotionEstimate` of one probability vector (EMOTION_LABELS order)."""
    top = int(np.argmax(proba))
    p = float(proba[top])
    return EmotionEstimate(
        label=EMOTION_LABELS[top],
        probability=p,
        distribution={label: float(v) for label, v in zip(EMOTION_LABELS, proba, strict=False)},
        uncertain=p < uncertain_below,
    )


def _check_xy(X: np.ndarray, y: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES) or len(X) != len(y):
        raise ProfileError(
            f"fit needs X of shape (n, {len(FEATURE_NAMES)}) and n labels; got X {X.shape} and "
            f"{len(y)} labels."
        )
    bad = sorted(set(y) - set(EMOTION_LABELS))
    if bad:
        raise ProfileError(f"unknown emotion labels {bad}; allowed: {', '.join(EMOTION_LABELS)}.")
    return X, y


def _read_manifest(pkl: Path) -> dict[str, Any]:
    man = pkl.with_suffix(".json")
    if not pkl.is_file():
        raise ModelLoadError(
            f"emotion model {pkl} not found. Train it from the repository root with "
            f"`{TRAIN_COMMAND}` (about 15 minutes on 2 cores the first time, less with the "
            "feature cache), or pass the path of a trained model."
        )
    if not man.is_file():
        raise ModelLoadError(
            f"manifest {man} not found beside {pkl.name}; the model cannot be verified, so it is "
            f"not loaded. Retrain with `{TRAIN_COMMAND}` (writes both files)."
        )
    try:
        manifest = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"manifest {man} is not valid JSON ({exc}); retrain with `{TRAIN_COMMAND}`.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or "sha256" not in manifest:
        raise ModelLoadError(
            f"{man} is not an emotion-model manifest (format {MANIFEST_FORMAT!r} with a sha256 "
            f"field); retrain with `{TRAIN_COMMAND}`."
        )
    return manifest


def _check_manifest_compat(pkl: Path, manifest: dict[str, Any]) -> None:
    if tuple(manifest.get("labels", ())) != EMOTION_LABELS:
        raise ModelLoadError(
            f"{pkl}: model labels {manifest.get('labels')} differ from this engine's "
            f"{list(EMOTION_LABELS)}; retrain with `{TRAIN_COMMAND}`."
        )
    if manifest.get("feature_version") != FEATURE_VERSION or tuple(manifest.get("feature_names", ())) != FEATURE_NAMES:
        raise ModelLoadError(
            f"{pkl}: model was trained on features {manifest.get('feature_version')!r}, this code "
            f"computes {FEATURE_VERSION!r}; retrain with `{TRAIN_COMMAND}`."
        )


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only scikit-learn, NumPy and SciPy classes (defence in depth)."""

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        if top in _PICKLE_ALLOWED or (module == "builtins" and name in _PICKLE_BUILTINS):
            return super().find_class(module, name)
        if module == "_loss" and name in _PICKLE_LOSS:  # resolved from sklearn's module, never by the name
            import importlib

            return getattr(importlib.import_module("sklearn._loss._loss"), name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an emotion model")


def _safe_unpickle(pkl: Path, data: bytes, manifest: dict[str, Any]) -> Any:
    import sklearn

    want, have = manifest.get("sklearn_version"), sklearn.__version__
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version warnings are turned into our own message
            model = _AllowListUnpickler(io.BytesIO(data)).load()
        model.predict_proba(np.zeros((1, len(FEATURE_NAMES))))
    except Exception as exc:  # any unpickling/compat failure becomes one clear message
        raise ModelLoadError(
            f"{pkl}: cannot load the model ({type(exc).__name__}: {exc}). It was saved with "
            f"scikit-learn {want}, this is scikit-learn {have}. Install scikit-learn=={want} or "
            f"retrain with `{TRAIN_COMMAND}`."
        ) from exc
    if want != have:
        _LOGGER.warning("emotion model saved with scikit-learn %s, running %s; it loaded and works", want, have)
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m personalization_engine.emotion_detector {train,eval}`` (see training.cli)."""
    from .training.cli import main as training_main

    return training_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
