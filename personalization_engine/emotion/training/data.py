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
from ...fileio import user_cache_dir
from ...schema import EMOTION_LABELS
from .augment import CopyRecipe, copy_seed, make_copy

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
    """Key of a feature cache: the feature, loader and copy code and recipes, the voice encoder's
    weights, and the files (path, size)."""
    from ... import audio_io, pitch
    from .. import dynamics, features, spectral, voice_encoder
    from . import augment

    h = hashlib.sha256()
    for module in (features, spectral, dynamics, voice_encoder, pitch, audio_io, augment):
        h.update(Path(str(module.__file__)).read_bytes())
    h.update(f"voice encoder {voice_encoder.WEIGHTS_SHA256}\n".encode())
    h.update(f"{COPY_RECIPES}|{sorted(CORPUS_COPIES.items())}\n".encode())
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
    return user_cache_dir("emotion")


#: The training copies of a clip (copy 0 is the clip itself). Speed copies (x0.9, x1.1: tempo,
#: pitch and formants shift together, like a shorter or longer vocal tract) add speaker variety;
#: channel copies (a random room, device response and noise, :mod:`.augment`) teach the model
#: that the recording chain says nothing about the emotion.
COPY_RECIPES = (
    CopyRecipe(1.0, False), CopyRecipe(0.9, False), CopyRecipe(1.1, False),
    CopyRecipe(1.0, True), CopyRecipe(0.95, True), CopyRecipe(1.05, True),
)
#: Copies made of each corpus (others: the clip only). The acted studio corpora with few speakers
#: get the speed copies and one channel copy; the LibriSpeech readers (177 of them: speaker
#: variety of their own) get three channel copies, so neither a clean studio nor a degraded
#: channel marks an emotion; the command words are phone recordings already. Three channel
#: copies of the acted clips as well made the model more robust still to a degraded channel but
#: cost 1.5 points of RAVDESS UAR and 3.5 of EmoDB-held-out UAR (see the training report).
CORPUS_COPIES: dict[str, tuple[int, ...]] = {
    "RAVDESS": (0, 1, 2, 3), "EmoDB": (0, 1, 2, 3), "LibriSpeech": (0, 3, 4, 5),
}


def describe_copies() -> str:
    """The copies in words (for the manifest and the report)."""
    parts = []
    for corpus, copies in sorted(CORPUS_COPIES.items()):
        kinds = [f"x{COPY_RECIPES[k].speed:g}" + (" + channel" if COPY_RECIPES[k].channel else "")
                 for k in copies if k]
        parts.append(f"{corpus}: {', '.join(kinds)}")
    return ("training-side copies (speed factor, + channel: random room, device response and "
            f"15-30 dB SNR noise) per corpus: {'; '.join(parts)}")


@dataclass(frozen=True)
class Dataset:
    """Features of every clip (and its speed-perturbed copies) with labels and speakers."""

    clips: tuple[LabelledClip, ...]
    X: np.ndarray
    """Shape (len(COPY_RECIPES), n_clips, n_features); copy 0 is the original clip."""
    ok: np.ndarray
    """Shape (len(COPY_RECIPES), n_clips): the clip (copy) exists and could be analysed."""

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


def load_dataset(clips: list[LabelledClip], *, use_cache: bool = True) -> Dataset:
    """Features of ``clips`` and their speed copies, cached under :func:`cache_dir`."""
    import io
    import time

    from ...errors import AudioInputError, FeatureExtractionError
    from ...fileio import write_atomic
    from ..features import FEATURE_NAMES, FEATURE_VERSION, SAMPLE_RATE, compute_features

    cache = cache_dir() / f"emotion_{FEATURE_VERSION}_{cache_key(clips)}.npz" if use_cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return Dataset(tuple(clips), z["X"], z["ok"])
    X = np.zeros((len(COPY_RECIPES), len(clips), len(FEATURE_NAMES)))
    ok = np.zeros((len(COPY_RECIPES), len(clips)), dtype=bool)
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        try:
            samples = load_corpus_clip(clip.path)
        except AudioInputError as exc:
            _LOGGER.warning("skipping %s: %s", clip.path.name, exc)
            continue
        for k in CORPUS_COPIES.get(clip.corpus, (0,)):
            copy = make_copy(samples, COPY_RECIPES[k], SAMPLE_RATE, copy_seed(clip.path.name, k))
            try:
                X[k, i] = compute_features(copy)
                ok[k, i] = True
            except FeatureExtractionError as exc:
                _LOGGER.warning("skipping %s (copy %d): %s", clip.path.name, k, exc)
        if (i + 1) % 250 == 0:
            _LOGGER.info("features: %d / %d clips (%.0f s)", i + 1, len(clips), time.perf_counter() - t0)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, X=X, ok=ok)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, buf.getvalue())
    return Dataset(tuple(clips), X, ok)
