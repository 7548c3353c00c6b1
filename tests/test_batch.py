"""batch.py: many lines through one CloneSession -> BatchReport, with no console at all.

On the tiny real-architecture checkpoint (``tiny_checkpoint`` in conftest.py): every line
written, a bad line recorded and skipped, a write failure stopping the batch, Ctrl-C recorded
in the report, and a batch without a voice refused before any line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personalization_engine.batch import BatchProgress, run_batch
from personalization_engine.errors import OutputWriteError, ProfileError
from personalization_engine.session import CloneSession, SessionConfig


def _session(tmp_path: Path, model: str | Path, out_dir: Path | None = None) -> CloneSession:
    return CloneSession(SessionConfig(model=str(model), out_dir=out_dir or tmp_path / "out",
                                      voices_dir=tmp_path / "voices", seed=2))


@pytest.fixture()
def session(tmp_path: Path, tiny_checkpoint: Path, voices_dir: Path):
    s = _session(tmp_path, tiny_checkpoint)
    s.load_reference(voices_dir / "LJ001-0006.flac")
    yield s
    s.close()


def test_every_line_becomes_a_pair_and_progress_brackets_each_line(session, tmp_path):
    steps: list[BatchProgress] = []
    report = run_batch(session, ["One.", "Two.", "Three."], steps.append)
    assert report.complete and report.total == 3 and not report.interrupted and report.failed == []
    assert report.out_dir == tmp_path / "out"
    assert [r.n for r in report.lines] == [1, 2, 3] and all(r.ok for r in report.lines)
    assert report.written == [p.wav_path for p in session.outputs]
    texts = [json.loads(p.with_suffix(".json").read_text())["text"] for p in report.written]
    assert texts == ["One.", "Two.", "Three."]
    # Before and after each line, in order; "after" carries the line's result.
    assert [(s.index, s.done is not None) for s in steps] == [(1, False), (1, True), (2, False), (2, True),
                                                              (3, False), (3, True)]
    assert all(s.total == 3 for s in steps) and steps[1].done == report.lines[0]


def test_a_bad_line_is_recorded_and_the_batch_goes_on(session):
    """A line the model refuses (over its 5,000-character limit) fails alone."""
    report = run_batch(session, ["Fine.", "x" * 5_001, "Also fine."])
    assert report.failed == [2] and len(report.written) == 2 and not report.complete
    bad = report.lines[1]
    assert bad.pair is None and bad.n is None and bad.error is not None and "5000" in str(bad.error).replace(",", "")
    assert [r.n for r in report.lines if r.ok] == [1, 2]


def test_a_write_failure_stops_the_batch(tmp_path, tiny_checkpoint, voices_dir):
    """The output folder is a file: the first line cannot be written, and the next would fail alike."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    s = _session(tmp_path, tiny_checkpoint, out_dir=blocker)
    s.load_reference(voices_dir / "LJ001-0006.flac")
    report = run_batch(s, ["One.", "Two.", "Three."])
    s.close()
    assert len(report.lines) == 1 and report.failed == [1] and report.total == 3
    assert isinstance(report.lines[0].error, OutputWriteError)


def test_ctrl_c_ends_the_batch_with_what_was_written(session):
    def interrupt_third(step: BatchProgress) -> None:
        if step.index == 3 and step.done is None:
            raise KeyboardInterrupt

    report = run_batch(session, ["One.", "Two.", "Three.", "Four."], interrupt_third)
    assert report.interrupted and len(report.written) == 2 and report.total == 4 and not report.complete


def test_a_batch_without_a_voice_is_refused_before_any_line(tmp_path):
    s = _session(tmp_path, tmp_path / "no-model")
    with pytest.raises(ProfileError, match="no voice yet"):
        run_batch(s, ["One."])
    assert not (tmp_path / "out").exists()


def test_a_long_line_reports_progress_for_each_of_its_segments(session):
    """Issue 12 §4 "long work in batch": a long line showed only its elapsed time. The batch now
    reports every segment as it is made (the view shows "segment k/n" with frames, audio and RTF),
    in order, with running totals that only grow."""
    from personalization_engine.text_segmenter import split_text

    text = "This is one sentence of a long line that the batch has to speak."
    while len(split_text(text)) < 3:
        text += " And here is one more sentence, so that the line needs another segment."
    seen: list[tuple[int, int, float]] = []
    report = run_batch(session, [text], on_chunk=lambda chunk, p: seen.append((chunk.segment_idx, p.frames,
                                                                                p.audio_s)))
    assert report.complete and report.lines[0].ok
    segments = len(split_text(text))
    assert [i for i, _, _ in seen] == list(range(segments))
    assert [f for _, f, _ in seen] == sorted(f for _, f, _ in seen) and seen[-1][1] > 0
    assert [a for _, _, a in seen] == sorted(a for _, _, a in seen)
