"""Emotion corpora on disk: reading ``labels.csv`` folders and extracting (cached) features.

A corpus folder holds audio files and a ``labels.csv`` with at least ``file`` and ``emotion7``
columns (``corpus`` and ``speaker`` are used when present). A data folder is either one corpus
folder or any folder above corpus folders: ``../shared/data`` finds ``emotion/ravdess``,
``emotion/emodb``, ``emotion/indian_emo_commands`` and ``neutral/librispeech`` (all calm).

The feature cache lives in :func:`cache_dir`, resolved when features are first cached (the
``EMOTION_FEATURE_CACHE`` variable, else ``$XDG_CACHE_HOME`` or ``~/.cache``), never at import.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ProfileError
from ...schema import EMOTION_LABELS

_LOGGER = logging.getLogger(__name__)

#: Columns every labels.csv must have.
REQUIRED_COLUMNS = ("file", "emotion7")


@dataclass(frozen=True)
class LabelledClip:
    """One labelled clip of an emotion corpus."""

    path: Path
    corpus: str
    speaker: str
    """Speaker id, prefixed with the corpus (speaker codes of two corpora may collide)."""
    label: str
    """One of EMOTION_LABELS."""


def read_corpora(data_dir: str | os.PathLike[str]) -> list[LabelledClip]:
    """All labelled clips of a corpus folder, or of every corpus folder inside ``data_dir``.

    Raises
    ------
    ProfileError
        The folder does not exist, holds no ``labels.csv``, or a file lacks the required
        columns or uses a label outside EMOTION_LABELS.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ProfileError(
            f"emotion data folder {root} does not exist; give a folder with a labels.csv "
            "(file,emotion7,...) or a folder of such folders, e.g. ../shared/data/emotion."
        )
    if (root / "labels.csv").is_file():
        folders = [root]
    else:
        folders = sorted(p.parent for p in root.rglob("labels.csv"))
    if not folders:
        raise ProfileError(
            f"{root} holds no labels.csv, neither directly nor in a sub-folder; each corpus folder "
            "needs a labels.csv with at least the columns file,emotion7."
        )
    clips: list[LabelledClip] = []
    for folder in folders:
        clips += _read_labels(folder)
    return clips


def _read_labels(folder: Path) -> list[LabelledClip]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ProfileError(
                f"{folder / 'labels.csv'} lacks the column(s) {', '.join(missing)}; "
                f"it has {reader.fieldnames}. Needed: {', '.join(REQUIRED_COLUMNS)}."
            )
        rows = list(reader)
    clips = []
    for i, row in enumerate(rows, start=2):
        label = row["emotion7"].strip()
        if label not in EMOTION_LABELS:
            raise ProfileError(
                f"{folder / 'labels.csv'} line {i}: emotion7 is {label!r}; allowed: "
                f"{', '.join(EMOTION_LABELS)}. Map or drop that row."
            )
        # One corpus name per source: "LibriSpeech-test-other" and "-train-clean-100" are one corpus.
        corpus = (row.get("corpus") or folder.name).strip().split("-")[0]
        speaker = (row.get("speaker") or "unknown").strip()
        clips.append(LabelledClip(folder / row["file"], corpus, f"{corpus}:{speaker}", label))
    return clips


def load_corpus_clip(path: Path) -> np.ndarray:
    """Samples of one corpus file at 16 kHz, trimmed as the app trims.

    The 1 s speech minimum of the app's loader is not applied: a curated corpus holds only
    speech, and short clips (EmoDB has 1.2 s sentences) are still usable if they are voiced.
    """
    from ...audio_io import load_audio
    from ..features import SAMPLE_RATE

    return load_audio(path, sample_rate=SAMPLE_RATE, validate=False).samples


def clip_features(path: Path) -> np.ndarray:
    """Emotion features of one corpus file (see :func:`load_corpus_clip`)."""
    from ..features import compute_features

    return compute_features(load_corpus_clip(path))


def cache_key(clips: list[LabelledClip]) -> str:
    """Key of a feature cache: the feature and loader code, and the files (path and size)."""
    from ... import audio_io, pitch
    from .. import features

    h = hashlib.sha256()
    for module in (features, pitch, audio_io):
        h.update(Path(str(module.__file__)).read_bytes())
    h.update(b"load_corpus_clip: 16 kHz, validate=False\n")
    for c in clips:
        h.update(f"{c.path.resolve()}|{c.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Folder of the training-feature cache, resolved now (not at import).

    ``EMOTION_FEATURE_CACHE`` when set, else ``$XDG_CACHE_HOME/personalization_engine/emotion``
    (``~/.cache/...`` without XDG_CACHE_HOME).
    """
    env = os.environ.get("EMOTION_FEATURE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "personalization_engine" / "emotion"


#: Playback-speed factors of the training copies (1.0 is the original clip): tempo, pitch and
#: formants shift together, like a shorter or longer vocal tract, which adds speaker variety.
SPEED_FACTORS = (1.0, 0.9, 1.1)
#: Corpora that get the speed copies: the acted studio corpora with few speakers. LibriSpeech
#: (177 readers) and the command words (104 speakers) have speaker variety of their own.
AUGMENTED_CORPORA = frozenset({"RAVDESS", "EmoDB"})


@dataclass(frozen=True)
class Dataset:
    """Features of every clip (and its speed-perturbed copies) with labels and speakers."""

    clips: tuple[LabelledClip, ...]
    X: np.ndarray
    """Shape (len(SPEED_FACTORS), n_clips, n_features); copy 0 is the original clip."""
    ok: np.ndarray
    """Shape (len(SPEED_FACTORS), n_clips): the clip (copy) exists and could be analysed."""

    @property
    def y(self) -> np.ndarray:
        return np.array([c.label for c in self.clips])

    @property
    def speakers(self) -> np.ndarray:
        return np.array([c.speaker for c in self.clips])

    @property
    def corpora(self) -> np.ndarray:
        return np.array([c.corpus for c in self.clips])

    def rows(self, mask: np.ndarray, *, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(copy, clip) index pairs of the usable rows of the clips in ``mask``."""
        copies = range(len(self.X)) if augment else range(1)
        pairs = [(k, i) for k in copies for i in np.flatnonzero(mask & self.ok[k])]
        idx = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return idx[:, 0], idx[:, 1]


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``samples`` back ``factor`` times faster (tempo, pitch and formants scale together)."""
    from ...audio_io import resample
    from ..features import SAMPLE_RATE

    if factor == 1.0:
        return samples
    return resample(samples, round(SAMPLE_RATE * factor), SAMPLE_RATE)


def load_dataset(clips: list[LabelledClip], *, use_cache: bool = True) -> Dataset:
    """Features of ``clips`` and their speed copies, cached under :func:`cache_dir`."""
    import io
    import time

    from ...errors import AudioInputError, FeatureExtractionError
    from ...fileio import write_atomic
    from ..features import FEATURE_NAMES, FEATURE_VERSION, compute_features

    tag = "-".join(f"{f:g}" for f in SPEED_FACTORS) + "_" + "+".join(sorted(AUGMENTED_CORPORA))
    cache = cache_dir() / f"emotion_{FEATURE_VERSION}_{cache_key(clips)}_{tag}.npz" if use_cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return Dataset(tuple(clips), z["X"], z["ok"])
    X = np.zeros((len(SPEED_FACTORS), len(clips), len(FEATURE_NAMES)))
    ok = np.zeros((len(SPEED_FACTORS), len(clips)), dtype=bool)
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        try:
            samples = load_corpus_clip(clip.path)
        except AudioInputError as exc:
            _LOGGER.warning("skipping %s: %s", clip.path.name, exc)
            continue
        factors = SPEED_FACTORS if clip.corpus in AUGMENTED_CORPORA else SPEED_FACTORS[:1]
        for k, f in enumerate(factors):
            try:
                X[k, i] = compute_features(speed_perturb(samples, f))
                ok[k, i] = True
            except FeatureExtractionError as exc:
                _LOGGER.warning("skipping %s (speed x%g): %s", clip.path.name, f, exc)
        if (i + 1) % 250 == 0:
            _LOGGER.info("features: %d / %d clips (%.0f s)", i + 1, len(clips), time.perf_counter() - t0)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, X=X, ok=ok)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, buf.getvalue())
    return Dataset(tuple(clips), X, ok)
