"""One cloning session: its reference voice, transcript and mode, model, voice, language and outputs.

:class:`CloneSession` is the one owner of a session's state and of the rules that tie it
together:

* the mode follows the transcript: a transcript means ICL mode, none means x-vector mode, and
  ``/mode icl`` without a transcript is refused;
* a new reference replaces the old transcript (the transcript belonged to the old clip);
* switching the model, the mode or the transcript rebuilds the voice prompt; a saved voice
  made with another model is rebuilt for the current one;
* every line spoken becomes one output pair, kept in :attr:`CloneSession.outputs`.

It never prints: progress, warnings and results go to a :class:`SessionEvents` (whose methods
do nothing by default) or come back as records. The model is loaded lazily (on the first
line, or :meth:`CloneSession.ensure_voice`), so a session without weights still analyses its
reference (the Voice DNA). The REPL (``repl/``), batch mode (``batch.py``) and
``python -m personalization_engine clone`` drive the same class.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import analyze_voice, emotion_unavailable_reason
from .cloning import AudioCallback, ChunkCallback, CloneSettings, clone_line
from .errors import ModelLoadError, PersonalizationError, ProfileError
from .fingerprint import OutputPair
from .rates import FRAMES_PER_S
from .schema import AudioClip, GenerationResult, ReferenceInfo, VoiceProfile
from .text_segmenter import check_speakable
from .tts import TTSModel, Voice, load_model
from .tts.device import describe_device, resolve_device
from .tts.hub import find_model
from .tts.options import LANGUAGE_CODES, SUPPORTED_LANGUAGES
from .tts.quant import resolve_quant
from .voice_library import VoiceLibrary, validate_name

_LOGGER = logging.getLogger(__name__)

#: Voice-prompt modes: the speaker embedding only, or in-context with the reference's transcript.
MODES = ("xvector", "icl")

@dataclass(frozen=True)
class SessionConfig:
    """What a session starts with (the command-line defaults)."""

    model: str = "0.6b"
    """Model name (0.6b, 1.7b) or a local folder; loaded on first use."""
    device: str = "auto"
    dtype: str = "auto"
    quant: str = "none"
    """Compact talker/code-predictor weights (``load_model(quant=...)``); the library's default
    is ``none``, the app passes ``auto`` (int8 on CPU, unchanged on a GPU)."""
    out_dir: Path = Path("outputs")
    """Where output pairs are written."""
    voices_dir: Path = Path("voices")
    """The voice library folder."""
    language: str = "auto"
    seed: int | None = None
    transcript: str | None = None
    """Transcript of the first reference (ICL mode)."""


@dataclass(frozen=True)
class Analysis:
    """A reference clip analysed but not (yet) made the session's voice."""

    clip: AudioClip
    profile: VoiceProfile
    seconds: float
    """Wall time of the analysis."""
    emotion_note: str | None
    """Why the profile has no emotion (None when it has one)."""


@dataclass(frozen=True)
class Reference:
    """The session's current reference voice."""

    name: str
    kind: str
    """``file`` (--ref, /load), ``recording`` (the microphone) or ``voice`` (the library)."""
    source: str | tuple[np.ndarray, int]
    """What ``create_voice`` gets: a path, or ``(samples, sample_rate)`` of a recording."""
    profile: VoiceProfile | None
    analysis_s: float | None
    emotion_note: str | None
    clip_name: str | None = None
    """The name of the clip the voice was made from, when it differs from ``name`` (a saved
    voice keeps its original reference's name, and saving it again keeps it too)."""

    @property
    def reference_name(self) -> str:
        """The name saved with the voice: the original clip's."""
        return self.clip_name or self.name


@dataclass(frozen=True)
class SpokenLine:
    """One line spoken and written: the session's output number ``n`` (1-based)."""

    n: int
    pair: OutputPair
    result: GenerationResult


class SessionEvents:
    """What a session reports while it works. Subclass and override what you show; the
    defaults do nothing, so a session runs with no view at all."""

    def busy(self, what: str) -> contextlib.AbstractContextManager[Callable[[str], None]]:
        """A slow step (analysis, model loading, voice prompt); the context yields an updater
        for its description."""
        return contextlib.nullcontext(_ignore)

    def warning(self, message: str) -> None:
        """A warning (each distinct message once per session)."""

    def reference_changed(self, reference: Reference) -> None:
        """A file or saved voice became the reference (a kept recording is not announced)."""

    def transcript_cleared(self) -> None:
        """A new reference came without a transcript: the old one was cleared, mode x-vector."""

    def model_loaded(self, model: TTSModel, seconds: float) -> None:
        """A model finished loading."""

    def voice_rebuilding(self, made_by: str, model_id: str) -> None:
        """A voice made with ``made_by`` is rebuilt for ``model_id``."""

    def voice_ready(self, name: str, mode: str, seconds: float) -> None:
        """The voice prompt of the reference ``name`` was built."""


def _ignore(_: str) -> None:
    return None


class CloneSession:
    """The state and rules of one voice-cloning session (see the module docstring)."""

    def __init__(self, config: SessionConfig | None = None, events: SessionEvents | None = None) -> None:
        self.config = config or SessionConfig()
        self.events = events or SessionEvents()
        self.library = VoiceLibrary(self.config.voices_dir)
        self.model_name = self.config.model
        self.language = self.config.language
        self.model: TTSModel | None = None
        self.voice: Voice | None = None
        self.reference: Reference | None = None
        self.prompt_s: float | None = None
        """Seconds the current voice prompt took to build (or to load from the library)."""
        self._transcript = self.config.transcript or None
        self._mode = "icl" if self._transcript else "xvector"
        self._outputs: list[OutputPair] = []
        self._warned: set[str] = set()
        self.frames_per_s: float | None = None
        """The model's measured speed on this machine: codec frames per second of wall time, from
        the last line spoken (None before the first); what a player's pre-buffer is sized by."""
        self.model_missing: str | None = None
        """Why the model's weights cannot be loaded (set by :meth:`check_model`), else None."""
        self._said_missing = False

    # ---- state read by views

    @property
    def transcript(self) -> str | None:
        return self._transcript

    @property
    def mode(self) -> str:
        """``xvector`` or ``icl``: follows the transcript when it is set or cleared; ``/mode
        xvector`` keeps the transcript (``/mode icl`` takes it up again)."""
        return self._mode

    @property
    def out_dir(self) -> Path:
        return self.config.out_dir

    @property
    def outputs(self) -> tuple[OutputPair, ...]:
        """The pairs written this session, in order (output N is ``outputs[N - 1]``)."""
        return tuple(self._outputs)

    @property
    def model_id(self) -> str:
        """The loaded model's id, else the name it will be loaded by."""
        return self.model.model_id if self.model is not None else self.model_name

    def device_description(self) -> str:
        """The compute device in words: GPU name and memory, or CPU threads (never raises)."""
        try:
            dev, dt, _ = resolve_device(self.config.device, self.config.dtype)
        except PersonalizationError as exc:
            return f"{self.config.device} (unusable: {exc})"
        return f"{describe_device(dev)} · {dt}"

    def quant_mode(self) -> str:
        """The weights' quant mode: the loaded model's, else what ``config.quant`` resolves to on
        the chosen device (never raises: an impossible choice is said in words)."""
        if self.model is not None and not self.model.closed:
            return self.model.quant
        try:
            dev, _, _ = resolve_device(self.config.device, self.config.dtype)
            return resolve_quant(self.config.quant, dev)
        except PersonalizationError as exc:
            return f"{self.config.quant} (unusable: {exc})"

    # ---- the reference

    def analyze(self, source: str | Path | tuple[np.ndarray, int], *, name: str | None = None) -> Analysis:
        """Analyse a clip (Voice DNA and emotion) without changing the session.

        ``name`` is what messages call it (``"the recording"``; default: the path, or ``<array>``)."""
        t0 = time.perf_counter()
        with self.events.busy("analysing the voice (pitch, energy, rate, emotion)…"):
            clip, profile = analyze_voice(source, name=name)
        elapsed = time.perf_counter() - t0
        for warning in clip.warnings:
            self._warn(warning)
        return Analysis(clip, profile, elapsed, emotion_unavailable_reason(profile))

    def load_reference(self, path: str | Path, *, transcript: str | None = None) -> Reference:
        """Analyse a reference file and make it the current voice (``transcript``: ICL mode)."""
        p = Path(path).expanduser()
        found = self.analyze(str(p))
        ref = Reference(p.name, "file", str(p), found.profile, found.seconds, found.emotion_note)
        self._set_reference(ref, transcript=transcript)
        return ref

    def use_recording(self, audio: tuple[np.ndarray, int], analysis: Analysis, *,
                      transcript: str | None = None) -> Reference:
        """Make a kept microphone take (already analysed with :meth:`analyze`) the current voice."""
        ref = Reference("recording", "recording", audio, analysis.profile, analysis.seconds, analysis.emotion_note)
        self._set_reference(ref, transcript=transcript, announce=False)
        return ref

    def use_voice(self, name: str) -> Reference:
        """Switch to a saved voice of the library (its prompt is loaded, not rebuilt)."""
        t0 = time.perf_counter()
        voice, entry = self.library.load(name)
        self.prompt_s = time.perf_counter() - t0  # loading the saved prompt replaces building it
        profile = voice.profile
        if profile is None:
            found = self.analyze(str(entry.reference_path))
            profile, elapsed, note = found.profile, found.seconds, found.emotion_note
        else:
            elapsed, note = None, emotion_unavailable_reason(profile)
        ref = Reference(name, "voice", str(entry.reference_path), profile, elapsed, note,
                        clip_name=entry.reference_name)
        self._set_reference(ref, voice=voice, transcript=voice.transcript)
        if self.model is not None:
            self.ensure_voice()  # rebuilds the prompt if the voice was saved with another model
        return ref

    def save_voice(self, name: str, *, overwrite: bool = False) -> Path:
        """Save the current voice and its reference audio as ``voices/NAME``."""
        validate_name(name)
        if self.voice is None and self.reference is not None and not self.model_ready():
            raise ModelLoadError(f"saving a voice needs the model weights (the model makes its prompt); "
                                 f"{self._missing_message()}")
        if self.voice is None or self.reference is None:
            raise ProfileError("no voice to save yet: /record or /load PATH first.")
        source = self.reference.source
        if not isinstance(source, tuple):
            import soundfile as sf

            data, sr = sf.read(str(source), dtype="float32", always_2d=True)
            source = (data.mean(axis=1), sr)
        model_id = self.model.model_id if self.model is not None else None
        return self.library.save(name, self.voice, reference_audio=source, reference_name=self.reference.reference_name,
                                 model_id=model_id, overwrite=overwrite)

    def _set_reference(self, ref: Reference, *, voice: Voice | None = None, transcript: str | None = None,
                       announce: bool = True) -> None:
        """Make ``ref`` the current voice; its transcript (ICL) or None (x-vector) replaces the old one."""
        if announce:
            self.events.reference_changed(ref)
        if self._transcript and not transcript:
            self.events.transcript_cleared()
        self._transcript = transcript or None
        self._mode = "icl" if self._transcript else "xvector"
        self.reference = ref
        self.voice = voice
        if self.model is not None and voice is None:
            self._build_voice()

    # ---- transcript, mode, language, model

    def set_transcript(self, text: str | None) -> str:
        """Set (or with None / "" clear) the reference's transcript; returns the mode it implies."""
        self._transcript = text or None
        self._mode = "icl" if self._transcript else "xvector"
        self._rebuild()
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Choose the voice-prompt mode; ``icl`` needs a transcript (:meth:`set_transcript`)."""
        wanted = mode.strip().lower()
        if not wanted:
            raise ProfileError(f"no mode given; the mode is {self._mode}. Usage: /mode xvector|icl")
        if wanted not in MODES:
            raise ProfileError(f"unknown mode {mode!r}; usage: /mode xvector|icl")
        mode = wanted
        if mode == "icl" and not self._transcript:
            raise ProfileError("ICL mode needs the reference's transcript: /transcript TEXT (what the "
                               "reference clip says, word for word).")
        self._mode = mode
        self._rebuild()

    def set_language(self, code: str) -> str:
        """Set the language of the lines (``auto``, a language name or an ISO code)."""
        code = code.lower()
        known = languages()
        if code not in known:
            raise ProfileError(f"unknown language {code!r}; choose one of: {', '.join(sorted(known))}.")
        self.language = code
        return code

    def switch_model(self, name: str) -> None:
        """Load another model (a name or a local folder) and rebuild the voice for it."""
        try:
            model = self._load_model(name)
        finally:
            if self.model is not None and self.model.closed:
                self.model = None  # the adapter freed it first: reload it when next needed
        old, self.model, self.model_name = self.model, model, name
        self.model_missing, self._said_missing = None, False
        self.frames_per_s = None  # another model: its speed is measured again
        if old is not None and old is not model:
            old.close()
        self._rebuild()

    def check_model(self, *, probe: bool = True) -> str | None:
        """Are the model's weights here, or downloadable? Sets and returns :attr:`model_missing`.

        Nothing is downloaded or read: a session starts with this, so a missing model is said
        at once (with the download command) and the session stays useful for Voice DNA. The
        caller shows the reason; a line spoken later says it again in one short line.
        """
        if self.model is not None and not self.model.closed:
            self.model_missing = None
            return None
        found = find_model(self.model_name, probe=probe)
        self.model_missing = found.problem
        self._said_missing = found.problem is not None
        return self.model_missing

    def model_ready(self) -> bool:
        """The model is loaded, or can be (no missing weights were found by :meth:`check_model`)."""
        if self.model_missing is not None:
            self.check_model(probe=False)  # weights copied in since? (local look-up only)
        return self.model_missing is None

    def warm_up(self) -> None:
        """:meth:`ensure_voice` when there is a reference and the weights are available, else nothing.

        Called after a new reference, so the first line is quick; without weights the Voice DNA
        is all a reference gives, and nothing is said again."""
        if self.reference is not None and self.model_ready():
            self.ensure_voice()

    def ensure_voice(self) -> None:
        """Load the model if needed, then build the voice prompt if needed (or if made by another model)."""
        if not self.model_ready():
            raise ModelLoadError(self._missing_message())
        if self.model is None or self.model.closed:
            self.model = self._load_model(self.model_name)
        voice = self.voice
        stale = voice is not None and voice.model_id and voice.model_id != self.model.model_id
        if voice is not None and stale and self.reference is not None:
            self.events.voice_rebuilding(voice.model_id, self.model.model_id)
            self.voice = None
        if self.voice is None and self.reference is not None:
            self._build_voice()

    def _missing_message(self) -> str:
        """The first time the whole reason (with the download command), then one short line."""
        if self._said_missing:
            return (f"speaking needs the model weights of {self.model_name}, which are missing (the download "
                    "command is above); Voice DNA still works: /record, /load, /info.")
        self._said_missing = True
        return f"speaking needs the model weights: {self.model_missing}"

    def _rebuild(self) -> None:
        if self.reference is not None and self.model is not None:
            self._build_voice()
        else:
            self.voice = None

    def _load_model(self, name: str) -> TTSModel:
        t0 = time.perf_counter()
        with self.events.busy(f"loading model {name}…") as update:
            model = load_model(name, device=self.config.device, dtype=self.config.dtype, quant=self.config.quant,
                               progress=update)
        self.events.model_loaded(model, time.perf_counter() - t0)
        for warning in model.warnings:
            self._warn(warning)
        return model

    def _build_voice(self) -> None:
        ref, model = self.reference, self.model
        if ref is None or model is None:
            raise RuntimeError("_build_voice needs a reference and a model")  # internal invariant
        t0 = time.perf_counter()
        with self.events.busy(f"building the voice prompt ({self.mode})…"):
            transcript = self._transcript if self._mode == "icl" else None
            voice = model.create_voice(ref.source, transcript=transcript, name=ref.name, profile=ref.profile)
        self.voice = voice
        self.prompt_s = time.perf_counter() - t0
        for warning in voice.warnings:
            self._warn(warning)
        self.events.voice_ready(ref.name, voice.mode, self.prompt_s)

    # ---- speaking

    def speak(self, text: str, *, on_chunk: ChunkCallback | None = None, on_audio: AudioCallback | None = None,
              stream: bool = False) -> SpokenLine:
        """Speak ``text`` in the current voice and write its output pair.

        Loads the model and builds the voice first when needed. ``on_chunk`` gets each chunk as
        it is made (``stream=True``: pieces of a segment, for playback as it comes); the pair
        written is the whole utterance either way.
        """
        check_speakable(text)
        self.prepare()
        model, voice = self.model, self.voice
        if model is None or voice is None:
            raise RuntimeError("ensure_voice left no model or voice")  # internal invariant
        pair, result = clone_line(model, voice, text, self.clone_settings(), on_chunk=on_chunk, on_audio=on_audio,
                                  stream=stream)
        self._outputs.append(pair)
        if result.real_time_factor > 0 and math.isfinite(result.real_time_factor):
            self.frames_per_s = FRAMES_PER_S / result.real_time_factor
        return SpokenLine(len(self._outputs), pair, result)

    def prepare(self) -> None:
        """Get ready to speak: a voice is needed (else ProfileError), then :meth:`ensure_voice`."""
        if self.reference is None and self.voice is None:
            raise ProfileError("no voice yet: /record, /load PATH or /voice use NAME first.")
        self.ensure_voice()

    def clone_settings(self) -> CloneSettings:
        """What every line of the session shares: folder, reference, language, seed, timings."""
        return CloneSettings(out_dir=self.config.out_dir, reference=self.reference_info(), language=self.language,
                             seed=self.config.seed,
                             analysis_s=self.reference.analysis_s if self.reference is not None else None,
                             prompt_s=self.prompt_s)

    def reference_info(self) -> ReferenceInfo:
        """The fingerprint's reference block."""
        ref, voice = self.reference, self.voice
        sha = voice.reference_sha256 if voice is not None else None
        transcript = voice.transcript if voice is not None else None
        if ref is None:
            profile = voice.profile if voice is not None else None
            name = (voice.name if voice is not None else None) or "reference"
            return ReferenceInfo(name=name, kind="file", sha256=sha, transcript=transcript, profile=profile,
                                 emotion_unavailable=emotion_unavailable_reason(profile) if profile else None)
        return ReferenceInfo(name=ref.name, kind=ref.kind, sha256=sha, transcript=transcript, profile=ref.profile,
                             emotion_unavailable=ref.emotion_note)

    def close(self) -> None:
        """Free the model (the session's outputs stay on disk)."""
        if self.model is not None:
            try:
                self.model.close()
            except Exception as exc:  # closing must never hide how the session ended
                _LOGGER.debug("closing the model: %s", exc)

    def _warn(self, message: str) -> None:
        """Report a warning once per session (the adapter repeats the loader's warnings)."""
        if message not in self._warned:
            self._warned.add(message)
            self.events.warning(message)


def languages() -> set[str]:
    """Language names and ISO codes the model accepts (``auto`` included)."""
    return {*SUPPORTED_LANGUAGES, *LANGUAGE_CODES, "auto"}
