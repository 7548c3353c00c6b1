"""cli.py and `python -m personalization_engine`: shared flags, text files, analyze JSON keys, exit codes, clone."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from personalization_engine import cli
from personalization_engine.errors import ProfileError

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "personalization_engine", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def test_analyze_json_carries_the_stable_keys(voices_dir):
    files = [str(voices_dir / "LJ001-0004.flac"), str(voices_dir / "cmu_arctic_us_aew_a0001.flac")]
    proc = _run("analyze", *files, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for name, line in zip(files, lines, strict=True):
        obj = json.loads(line)
        assert obj["file"] == name
        assert obj["duration_s"] >= obj["speech_duration_s"] > 1.0
        assert set(obj["pitch"]) >= {"median_hz", "mean_hz", "p5_hz", "p95_hz", "range_semitones", "register"}
        assert set(obj["energy"]) >= {"mean_db", "dynamic_range_db", "stress"}
        assert all(set(s) == {"time_s", "prominence"} for s in obj["energy"]["stress"])
        assert set(obj["rate"]) >= {"syllables_per_s", "articulation_rate", "pause_count", "pause_ratio"}
        if "emotion" in obj:  # present when the shipped model is
            assert set(obj["emotion"]) >= {"label", "probability", "distribution"}
    female, male = (json.loads(x) for x in lines)
    assert female["pitch"]["median_hz"] > 170 > male["pitch"]["median_hz"]


def test_analyze_table_output(voices_dir):
    proc = _run("analyze", str(voices_dir / "LJ001-0004.flac"))
    assert proc.returncode == 0, proc.stderr
    assert "LJ001-0004.flac" in proc.stdout
    assert "Hz" in proc.stdout and "syll" in proc.stdout.lower()


def test_analyze_bad_inputs_exit_2_with_one_line_and_no_traceback(tmp_path, voices_dir):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(32000, dtype=np.float32), 16000)
    for bad, message in [
        (tmp_path / "missing.wav", "file not found"),
        (corrupt, "not a readable audio file or corrupt"),
        (silent, "all silence"),
    ]:
        proc = _run("analyze", str(bad), "--json")
        assert proc.returncode == 2
        assert proc.stdout == ""
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and message in err[0]
        assert "Traceback" not in proc.stderr
    # A good file next to a bad one still gets its line; the exit code reports the failure.
    proc = _run("analyze", str(voices_dir / "LJ001-0004.flac"), str(tmp_path / "missing.wav"), "--json")
    assert proc.returncode == 2 and len(proc.stdout.strip().splitlines()) == 1


# --------------------------------------------------------------------------- shared flags and text files


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "text file not found"),  # no such file
        (b"\n  \n\n", "no non-empty lines"),  # only blank lines
        (b"\xff\xfe\x00bad", "must be UTF-8"),  # not UTF-8 text
    ],
)
def test_text_file_errors(tmp_path, content, match):
    path = tmp_path / "lines.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProfileError, match=match):
        cli.read_text_file(path)


def test_both_entry_points_share_the_defaults():
    """The script's parser and the clone sub-command give the same Options for the same flags."""
    from personalization_engine.__main__ import _parser

    script = cli.options_from_args(cli.build_parser().parse_args(["--ref", "a.wav", "--model", "1.7b", "--seed", "3"]))
    clone = cli.options_from_args(_parser().parse_args(["clone", "--ref", "a.wav", "--text", "hi", "--model", "1.7b",
                                                        "--seed", "3"]))
    assert script.session_config() == clone.session_config()
    assert script == replace(cli.Options(), ref="a.wav", model="1.7b", seed=3)
    assert clone.out_dir == Path("outputs") and clone.language == "auto" and clone.play


def test_clone_command_runs_the_batch(tmp_path, tiny_checkpoint, voices_dir):
    """``python -m personalization_engine clone`` goes through session + batch.run_batch."""
    from personalization_engine.__main__ import _clone, _parser

    from ._repl_helpers import check_pairs, make_test_console

    console, buf = make_test_console()
    args = _parser().parse_args(["clone", "--ref", str(voices_dir / "cmu_arctic_us_aew_a0001.flac"), "--text-file",
                                 str(tmp_path / "lines.txt"), "--model", str(tiny_checkpoint), "--out",
                                 str(tmp_path / "out"), "--seed", "1"])
    (tmp_path / "lines.txt").write_text("One.\n\nTwo.\n", encoding="utf-8")
    assert _clone(args, console) == 0, buf.getvalue()
    texts = [d["text"] for d in check_pairs(tmp_path / "out", 2)]
    assert sorted(texts) == ["One.", "Two."]
    assert "2 of 2 lines written" in buf.getvalue() and "batch mode" in buf.getvalue()
