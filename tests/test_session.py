"""session.py: a whole CloneSession driven with no console at all.

The rules a session keeps (the mode follows the transcript, a new reference replaces the
transcript, switching the model rebuilds the voice, every line is one output pair in the
history) are checked through the session's own calls and its events, first without weights
(the Voice DNA side works with no model) and then on the tiny real-architecture checkpoint
(``tiny_checkpoint`` in conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from personalization_engine.errors import ModelLoadError, ProfileError
from personalization_engine.fingerprint import OutputPair, verify_pair
from personalization_engine.session import CloneSession, Reference, SessionConfig, SessionEvents


class RecordedEvents(SessionEvents):
    """Every event as ``(name, detail)``, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[Callable[[str], None]]:
        self.seen.append(("busy", what))
        yield lambda description: self.seen.append(("progress", description))

    def warning(self, message: str) -> None:
        self.seen.append(("warning", message))

    def reference_changed(self, reference: Reference) -> None:
        self.seen.append(("reference", reference.name))

    def transcript_cleared(self) -> None:
        self.seen.append(("transcript_cleared", None))

    def model_loaded(self, model: Any, seconds: float) -> None:
        self.seen.append(("model", model.model_id))

    def voice_rebuilding(self, made_by: str, model_id: str) -> None:
        self.seen.append(("rebuilding", made_by))

    def voice_ready(self, name: str, mode: str, seconds: float) -> None:
        self.seen.append(("voice", mode))

    def names(self, name: str) -> list[Any]:
        return [detail for kind, detail in self.seen if kind == name]


@pytest.fixture(scope="module")
def transcripts(voices_dir: Path) -> dict[str, str]:
    rows = (voices_dir / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return dict(row.split("\t")[::2] for row in rows)


def _session(tmp_path: Path, model: str | Path, **config: Any) -> tuple[CloneSession, RecordedEvents]:
    events = RecordedEvents()
    cfg = SessionConfig(model=str(model), out_dir=tmp_path / "out", voices_dir=tmp_path / "voices", **config)
    return CloneSession(cfg, events), events


def _verified(pair: OutputPair) -> dict[str, Any]:
    """The pair's fingerprint JSON, after checking the wav against it."""
    verify_pair(pair.json_path)
    return json.loads(pair.json_path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- no weights at all


def test_voice_dna_and_the_transcript_rules_need_no_model(tmp_path, voices_dir):
    """A session whose model does not exist still analyses its reference; the mode follows the
    transcript, /mode icl without one is refused, and a new reference clears the old one."""
    session, events = _session(tmp_path, tmp_path / "no-model", transcript="words of an earlier clip")
    assert session.mode == "icl"
    ref = session.load_reference(voices_dir / "LJ001-0004.flac")
    assert (ref.kind, ref.name) == ("file", "LJ001-0004.flac")
    assert ref.profile is not None and ref.profile.prosody.pitch.median_hz > 150  # a female voice
    assert events.names("reference") == ["LJ001-0004.flac"]
    assert events.names("transcript_cleared") == [None]  # the transcript belonged to the old clip
    assert (session.transcript, session.mode) == (None, "xvector")
    assert session.model is None and session.voice is None  # nothing loaded: the model is lazy

    with pytest.raises(ProfileError, match="ICL mode needs the reference's transcript"):
        session.set_mode("icl")
    with pytest.raises(ProfileError, match="unknown mode 'loud'"):
        session.set_mode("loud")
    assert session.set_transcript("printing in the only sense") == "icl"
    session.set_mode("xvector")  # keeps the transcript: /mode icl takes it up again
    assert (session.mode, session.transcript) == ("xvector", "printing in the only sense")
    session.set_mode("ICL")
    assert session.mode == "icl"
    assert session.set_transcript(None) == "xvector" and session.transcript is None

    assert session.set_language("EN") == "en"
    with pytest.raises(ProfileError, match="unknown language 'klingon'"):
        session.set_language("klingon")
    assert session.language == "en"
    with pytest.raises(ModelLoadError):
        session.speak("Hello.")  # the model is only needed now
    assert session.outputs == () and not (tmp_path / "out").exists()


def test_speaking_or_saving_without_a_voice_says_what_to_do(tmp_path):
    session, _ = _session(tmp_path, tmp_path / "no-model")
    with pytest.raises(ProfileError, match="no voice yet: /record, /load PATH"):
        session.speak("Hello.")
    with pytest.raises(ProfileError, match="no voice to save yet"):
        session.save_voice("anna")
    with pytest.raises(ProfileError, match="invalid voice name"):
        session.save_voice("../evil")
    with pytest.raises(ProfileError, match="no voice named 'nobody'"):
        session.use_voice("nobody")


# --------------------------------------------------------------------------- the tiny model


def test_lines_become_the_outputs_history(tmp_path, tiny_checkpoint, voices_dir, transcripts):
    """Each spoken line is one verified pair, numbered in order; the transcript makes it ICL."""
    session, events = _session(tmp_path, tiny_checkpoint, seed=3)
    session.load_reference(voices_dir / "LJ001-0004.flac", transcript=transcripts["LJ001-0004.flac"])
    first = session.speak("Hello there.")
    session.set_transcript(None)
    second = session.speak("A second line.")
    assert (first.n, second.n) == (1, 2)
    assert session.outputs == (first.pair, second.pair)
    data = [_verified(pair) for pair in session.outputs]
    assert [d["text"] for d in data] == ["Hello there.", "A second line."]
    assert [d["model"]["mode"] for d in data] == ["icl", "xvector"]
    assert data[0]["reference"]["transcript"] == transcripts["LJ001-0004.flac"]
    assert data[1]["reference"]["transcript"] is None and data[0]["model"]["seed"] == 3
    assert events.names("model") == [session.model_id]  # loaded once, on the first line
    assert events.names("voice") == ["icl", "xvector"]  # rebuilt when the transcript went
    session.close()
    assert session.model is not None and session.model.closed


def test_switching_the_model_rebuilds_the_voice(tmp_path, tiny_checkpoint, voices_dir):
    session, events = _session(tmp_path, tiny_checkpoint)
    session.load_reference(voices_dir / "cmu_arctic_us_aew_a0001.flac")
    session.ensure_voice()
    before_model, before_voice = session.model, session.voice
    assert before_voice is not None and before_voice.mode == "xvector"
    session.switch_model(str(tiny_checkpoint))
    assert session.voice is not None and session.voice is not before_voice  # a new prompt for the model
    assert session.voice.model_id == session.model_id
    assert events.names("voice") == ["xvector", "xvector"] and len(events.names("model")) == 2
    assert before_model is session.model or before_model.closed  # the old model was freed (or is the same)
    with pytest.raises(ModelLoadError):
        session.switch_model(str(tmp_path / "no-model"))
    assert session.speak("Still speaking.").n == 1  # a failed switch keeps a working session
    session.close()


def test_a_saved_voice_comes_back_in_a_new_session(tmp_path, tiny_checkpoint, voices_dir):
    """save_voice, then use_voice in another session: the same prompt, so the same audio."""
    a, _ = _session(tmp_path, tiny_checkpoint, seed=7)
    a.load_reference(voices_dir / "LJ001-0004.flac")
    a.ensure_voice()
    assert a.save_voice("anna") == tmp_path / "voices" / "anna"
    line_a = a.speak("Same words.")
    a.close()
    b, events = _session(tmp_path, tiny_checkpoint, seed=7)
    ref = b.use_voice("anna")
    assert (ref.kind, ref.name, b.mode) == ("voice", "anna", "xvector")
    assert events.names("reference") == ["anna"]
    line_b = b.speak("Same words.")
    assert events.names("voice") == []  # the saved prompt was used, not rebuilt
    fa, fb = _verified(line_a.pair), _verified(line_b.pair)
    assert fb["reference"]["kind"] == "voice" and fa["reference"]["sha256"] == fb["reference"]["sha256"]
    assert fa["audio"]["sha256"] == fb["audio"]["sha256"]
    b.close()


def test_the_session_layer_imports_neither_rich_nor_the_repl():
    """session, batch and cloning report through callbacks and records: no console below them."""
    code = ("import sys; import personalization_engine.session, personalization_engine.batch, "
            "personalization_engine.cloning; "
            "print(sorted({m.split('.')[0] for m in sys.modules if m == 'rich' or m.startswith('rich.')} | "
            "{m for m in sys.modules if m.startswith('personalization_engine.repl')}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- issue 12: a newcomer's session


@pytest.mark.parametrize("text", ["...", "🙂", "  ?! —  "])
def test_text_with_nothing_to_speak_is_refused_before_the_model(tmp_path, voices_dir, text):
    """Bug (issue 12): "..." or a lone emoji was sent to the model, which babbled for ~2 s and
    wrote a pair. Now it is "nothing to speak", before any model is loaded or file written."""
    session, events = _session(tmp_path, tmp_path / "no-model")
    session.load_reference(voices_dir / "LJ001-0004.flac")
    with pytest.raises(ProfileError, match="nothing to speak: .* has no letters or digits"):
        session.speak(text)
    assert events.names("model") == [] and session.outputs == () and not (tmp_path / "out").exists()


def test_missing_weights_are_said_at_start_and_then_once_per_line_in_one_line(tmp_path, voices_dir, monkeypatch):
    """Bug (issue 12): without weights the session recorded first, said nothing until the first
    line, then repeated a three-line error per line. ``check_model`` finds it at once (nothing
    downloaded), the reference still gives its Voice DNA, and a line says it in one line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    session, events = _session(tmp_path, "1.7b-design")
    missing = session.check_model()
    assert missing is not None and session.model_missing == missing
    assert "huggingface-cli download Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign" in missing
    assert "models/Qwen3-TTS-12Hz-1.7B-VoiceDesign" in missing
    ref = session.load_reference(voices_dir / "LJ001-0004.flac")  # Voice DNA needs no weights
    assert ref.profile is not None
    session.warm_up()  # after a new reference: nothing to load, nothing said
    assert events.names("busy") == ["analysing the voice (pitch, energy, rate, emotion)…"]
    for line in ("Hello.", "Hello again."):  # check_model's caller showed the command: one line each
        with pytest.raises(ModelLoadError, match="speaking needs the model weights of 1.7b-design, which are "
                                                 "missing") as info:
            session.speak(line)
        assert "\n" not in str(info.value)
    fresh, _ = _session(tmp_path, "1.7b-design")  # no check_model first (e.g. a library caller):
    fresh.load_reference(voices_dir / "LJ001-0004.flac")
    with pytest.raises(ModelLoadError, match="(?s)1.7B-VoiceDesign is not .*huggingface-cli download"):
        fresh.speak("Hello.")  # the loader's own message, with the command
    with pytest.raises(ModelLoadError, match="saving a voice needs the model weights"):
        session.save_voice("anna")  # not "no voice to save yet": there is a reference
    assert session.outputs == () and not (tmp_path / "out").exists()
    assert not (tmp_path / "hf-cache").exists()  # nothing was downloaded


def test_check_model_finds_a_local_checkpoint(tmp_path, tiny_checkpoint):
    session, _ = _session(tmp_path, tiny_checkpoint)
    assert session.check_model() is None and session.model_ready()


def test_a_recording_is_named_in_messages_not_array(tmp_path, voices_dir):
    """Bug (issue 12): messages about a recording said "<array>: all silence ..."."""
    import numpy as np
    import soundfile as sf

    from personalization_engine.errors import AudioInputError

    session, events = _session(tmp_path, tmp_path / "no-model")
    with pytest.raises(AudioInputError, match="^the recording: all silence") as info:
        session.analyze((np.zeros(48_000, dtype=np.float32), 48_000), name="the recording")
    assert "<array>" not in str(info.value)
    speech, sr = sf.read(str(voices_dir / "LJ001-0004.flac"), dtype="float32")
    loud = np.clip(speech * 40.0, -1.0, 1.0)  # a take recorded with the gain far too high
    session.analyze((loud, sr), name="the recording")
    clipped = [w for w in events.names("warning") if "clipped" in w]
    assert len(clipped) == 1 and clipped[0].startswith("the recording: ")


def test_saving_a_saved_voice_again_keeps_its_original_reference_name(tmp_path, tiny_checkpoint, voices_dir):
    """Bug (issue 12): /voice use anna then /voice save anna2 recorded "anna" as the reference
    name of anna2; the original clip's name is kept."""
    a, _ = _session(tmp_path, tiny_checkpoint)
    a.load_reference(voices_dir / "LJ001-0004.flac")
    a.ensure_voice()
    a.save_voice("anna")
    ref = a.use_voice("anna")
    assert (ref.name, ref.reference_name) == ("anna", "LJ001-0004.flac")
    a.save_voice("anna2")
    entries = {e.name: e for e in a.library.entries() if not isinstance(e, Exception)}
    assert entries["anna2"].reference_name == "LJ001-0004.flac"
    a.close()
