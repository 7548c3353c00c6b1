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
