"""Emotion corpora on disk: reading ``labels.csv`` folders and extracting (cached) features.

A corpus folder holds audio files and a ``labels.csv`` with at least ``file`` and ``emotion7``
columns (``corpus`` and ``speaker`` are used when present). A data folder is either one corpus
folder or a folder of corpus folders (``../shared/data/emotion`` holds ``ravdess`` and ``emodb``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ProfileError
from .schema import EMOTION_LABELS

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
        folders = sorted(p for p in root.iterdir() if (p / "labels.csv").is_file())
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
        corpus = (row.get("corpus") or folder.name).strip()
        speaker = (row.get("speaker") or "unknown").strip()
        clips.append(LabelledClip(folder / row["file"], corpus, f"{corpus}:{speaker}", label))
    return clips


def load_corpus_clip(path: Path) -> np.ndarray:
    """Samples of one corpus file at 16 kHz, trimmed as the app trims.

    The 1 s speech minimum of the app's loader is not applied: a curated corpus holds only
    speech, and short clips (EmoDB has 1.2 s sentences) are still usable if they are voiced.
    """
    from .audio_io import load_audio
    from .emotion_features import SAMPLE_RATE

    return load_audio(path, sample_rate=SAMPLE_RATE, validate=False).samples


def clip_features(path: Path) -> np.ndarray:
    """Emotion features of one corpus file (see :func:`load_corpus_clip`)."""
    from .emotion_features import compute_features

    return compute_features(load_corpus_clip(path))


def cache_key(clips: list[LabelledClip]) -> str:
    """Key of a feature cache: the feature and loader code, and the files (path and size)."""
    from . import audio_io, emotion_features

    h = hashlib.sha256()
    for module in (emotion_features, audio_io):
        h.update(Path(module.__file__).read_bytes())
    h.update(b"load_corpus_clip: 16 kHz, validate=False\n")
    for c in clips:
        h.update(f"{c.path.resolve()}|{c.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]
