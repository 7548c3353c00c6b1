"""The voice library: named voices saved as folders, ``voices/NAME/``.

Each folder holds everything needed to speak in that voice again, with no pickle anywhere::

    voices/NAME/
        manifest.json   name, created_at, mode, transcript, model, SHA-256 of every other file
        reference.wav   the reference audio (PCM 16, its own sample rate)
        prompt/         the voice prompt as ``Voice.save`` writes it: voice.safetensors and
                        voice.json, which holds the Voice DNA and emotion (contours included)

The Voice DNA is stored once, in ``prompt/voice.json``, where the voice itself needs it; the
manifest and the listing read it from there. Folders of format 1 also hold ``profile.json`` and
a ``voice_dna`` copy in the manifest: both are ignored now (``profile.json`` is still checked
against its hash), so those voices load unchanged.

Names are letters, digits, ``-`` and ``_`` (1-64 characters, starting with a letter or digit),
so a name can never walk out of the library folder. A folder is built under a temporary name
and swapped into place (``fileio.replace_dir``), so a half-saved voice never appears. Loading checks the manifest and
every file's SHA-256, and turns any damage into a :class:`ProfileError` naming the problem.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PersonalizationError, ProfileError
from .fileio import fsync_dir, replace_dir, sha256_file, write_new_synced
from .schema import VoiceProfile

if TYPE_CHECKING:
    from .tts.voice import Voice

_LOGGER = logging.getLogger(__name__)

#: Layout version of ``manifest.json``: 2 stores the Voice DNA only in the prompt; 1 (also read)
#: kept copies in ``profile.json`` and the manifest.
LIBRARY_FORMAT = 2
#: Formats :meth:`VoiceLibrary.entry` reads.
READABLE_FORMATS = (1, 2)
#: Allowed voice names: no dots or slashes, so no path traversal and no hidden folders.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MANIFEST, REFERENCE, PROMPT = "manifest.json", "reference.wav", "prompt"
#: The Voice DNA copy of format-1 folders (no longer written).
PROFILE = "profile.json"


@dataclass(frozen=True)
class VoiceEntry:
    """What the manifest of a saved voice says (read without loading any model code)."""

    name: str
    path: Path
    created_at: str
    mode: str
    transcript: str | None
    model_id: str | None
    reference_name: str | None
    reference_sha256: str | None
    profile: VoiceProfile | None
    """The reference's Voice DNA and emotion, read from ``prompt/voice.json`` (None if unknown)."""

    @property
    def reference_path(self) -> Path:
        return self.path / REFERENCE

    @property
    def voice_dna(self) -> dict[str, Any] | None:
        """The Voice DNA as JSON (no contours), as the manifest of format 1 stored it."""
        return None if self.profile is None else self.profile.prosody.to_dict()


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid voice name, else raise :class:`ProfileError`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProfileError(
            f"invalid voice name {name!r}: use 1-64 letters, digits, '-' or '_' (starting with a "
            "letter or digit), e.g. 'anna' or 'studio_take-2'."
        )
    return name


class VoiceLibrary:
    """Named voices under one folder (``voices/`` under the working directory by default)."""

    def __init__(self, root: str | os.PathLike[str] = "voices") -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return self.path(name).is_dir()

    def names(self) -> list[str]:
        """Names of the saved voices, sorted (folders with invalid names are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def entries(self) -> list[VoiceEntry | ProfileError]:
        """The manifest of every voice; a damaged one appears as its :class:`ProfileError`."""
        out: list[VoiceEntry | ProfileError] = []
        for name in self.names():
            try:
                out.append(self.entry(name))
            except ProfileError as exc:
                out.append(exc)
        return out

    def entry(self, name: str) -> VoiceEntry:
        """Read and check the manifest of ``name`` (no model code, no hash checks)."""
        folder = self.path(name)
        if not folder.is_dir():
            known = ", ".join(self.names()) or "none yet; save one with /voice save NAME"
            raise ProfileError(f"no voice named {name!r} in {self.root}/ (saved voices: {known}).")
        data = _read_json(folder, MANIFEST, name)
        fmt = data.get("format", 1)
        if fmt not in READABLE_FORMATS:
            raise _damaged(name, folder, f"{MANIFEST} has format {fmt!r}; this engine reads {READABLE_FORMATS}")
        try:
            ref = data.get("reference") or {}
            return VoiceEntry(
                name=str(data["name"]),
                path=folder,
                created_at=str(data["created_at"]),
                mode=str(data["mode"]),
                transcript=data.get("transcript"),
                model_id=data.get("model_id"),
                reference_name=ref.get("name"),
                reference_sha256=ref.get("sha256"),
                profile=_read_profile(folder, name),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise _damaged(name, folder, f"{MANIFEST} lacks field {exc}") from exc

    def save(
        self,
        name: str,
        voice: Voice,
        *,
        reference_audio: tuple[np.ndarray, int],
        reference_name: str | None = None,
        model_id: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Save ``voice`` (an adapter ``Voice``) and its reference audio as ``root/name``.

        Raises
        ------
        ProfileError
            Invalid name, or the voice exists and ``overwrite`` is False.
        OSError
            The library folder is not writable (nothing is left behind).
        """
        final = self.path(name)
        if final.exists() and not overwrite:
            raise ProfileError(f"a voice named {name!r} already exists in {self.root}/; choose another "
                               "name, or overwrite it (/voice save NAME --force).")
        self.root.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=self.root))
        try:
            _write_folder(build, name, voice, reference_audio, reference_name, model_id)
            replace_dir(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        _LOGGER.info("saved voice %r to %s", name, final)
        return final

    def load(self, name: str) -> tuple[Voice, VoiceEntry]:
        """Load a saved voice after checking every file against the manifest.

        Returns
        -------
        (Voice, VoiceEntry)
            The adapter ``Voice`` and the manifest.

        Raises
        ------
        ProfileError
            Unknown name, or a damaged folder (missing, changed or unreadable files).
        """
        entry = self.entry(name)
        files = _read_json(entry.path, MANIFEST, name).get("files")
        if not isinstance(files, dict) or not files:
            raise _damaged(name, entry.path, f"{MANIFEST} lists no files")
        for rel, digest in files.items():
            path = entry.path / rel
            if not path.is_file():
                raise _damaged(name, entry.path, f"{rel} is missing")
            if sha256_file(path) != digest:
                raise _damaged(name, entry.path, f"{rel} was changed or is corrupt (SHA-256 mismatch)")
        from .tts import Voice  # the adapter's record (NumPy + safetensors, no pickle)

        try:
            voice = Voice.load(entry.path / PROMPT)
        except PersonalizationError as exc:
            raise _damaged(name, entry.path, f"its voice prompt does not load ({str(exc).rstrip('.')})") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(name, entry.path, f"its voice prompt does not load ({type(exc).__name__}: {exc})") from exc
        return voice, entry


def _write_folder(build: Path, name: str, voice: Voice, reference_audio: tuple[np.ndarray, int],
                  reference_name: str | None, model_id: str | None) -> None:
    """Write a voice's files into the (new, empty) folder ``build``, each fsynced."""
    import soundfile as sf

    samples, sr = reference_audio
    wav = io.BytesIO()
    sf.write(wav, np.clip(np.asarray(samples, dtype=np.float32), -1, 1), int(sr), format="WAV", subtype="PCM_16")
    write_new_synced(build / REFERENCE, wav.getvalue())
    voice.save(build / PROMPT)  # voice.json in it carries the Voice DNA: the one copy
    manifest = {
        "format": LIBRARY_FORMAT,
        "name": name,
        "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": voice.mode,
        "transcript": voice.transcript,
        "model_id": model_id,
        "reference": {"name": reference_name, "sha256": voice.reference_sha256},
        "files": {rel: sha256_file(build / rel) for rel in _files(build)},
    }
    write_new_synced(build / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    fsync_dir(build)


def _read_profile(folder: Path, name: str) -> VoiceProfile | None:
    """The Voice DNA stored in the voice prompt's JSON (format 1 and 2 alike)."""
    from .tts.voice import VOICE_JSON  # the prompt layout belongs to the tts layer (NumPy only)

    meta = _read_json(folder, f"{PROMPT}/{VOICE_JSON}", name)
    profile = meta.get("profile")
    if profile is None:
        return None
    try:
        return VoiceProfile.from_dict(profile)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _damaged(name, folder, f"{PROMPT}/{VOICE_JSON} has an unreadable Voice DNA ({exc})") from exc


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*") if p.is_file())


def _read_json(folder: Path, rel: str, name: str) -> dict[str, Any]:
    """The JSON object in ``folder/rel`` (``rel`` with ``/``); damage becomes a ProfileError."""
    try:
        data = json.loads((folder / rel).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _damaged(name, folder, f"{rel} is missing") from exc
    except (OSError, ValueError) as exc:
        raise _damaged(name, folder, f"{rel} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise _damaged(name, folder, f"{rel} is not a JSON object")
    return data


def _damaged(name: str, folder: Path, problem: str) -> ProfileError:
    return ProfileError(
        f"voice {name!r} in {folder} is damaged: {problem}. Save it again from its reference "
        f"(/load {folder / REFERENCE} then /voice save {name} --force), or delete the folder."
    )

