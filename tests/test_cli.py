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
    data = check_pairs(tmp_path / "out", 2)
    assert sorted(d["text"] for d in data) == ["One.", "Two."]
    assert "2 of 2 lines written" in buf.getvalue() and "batch mode" in buf.getvalue()
    # The app passes --quant auto (int8 on CPU): the banner and the fingerprint say the mode used.
    assert "quant int8" in buf.getvalue() and {d["model"]["quant"] for d in data} == {"int8"}


# --------------------------------------------------------------------------- issue 12


@pytest.mark.parametrize("bad", ["file", "proc"])
def test_an_unusable_out_is_refused_before_anything_loads(tmp_path, voices_dir, capsys, bad):
    """Bug (issue 12): `--out` under a file or under /proc was found only after the model had
    loaded; the run exited 1 with a stale progress line. Now: exit 2, one line on stderr,
    before any model, recording or progress."""
    from personalization_engine import repl
    from personalization_engine.__main__ import main

    from ._repl_helpers import make_test_console

    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "out" if bad == "file" else Path("/proc/no-such-dir/out")
    lines = tmp_path / "lines.txt"
    lines.write_text("One.\n", encoding="utf-8")
    console, buf = make_test_console()
    options = repl.ReplOptions(ref=str(voices_dir / "LJ001-0004.flac"), out_dir=out, play=False,
                               model=str(tmp_path / "no-model"), text_file=lines)
    assert repl.run(options, console=console) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: ") and err.count("\n") == 1
    assert buf.getvalue() == ""  # no banner, no progress line
    assert main(["clone", "--ref", str(voices_dir / "LJ001-0004.flac"), "--text", "One.", "--out", str(out),
                 "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: ") and err.count("\n") == 1


def test_check_out_dir_leaves_nothing_behind(tmp_path):
    assert cli.check_out_dir(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert list(tmp_path.iterdir()) == []


def test_clone_without_weights_exits_2_with_the_command_and_writes_nothing(tmp_path, voices_dir, monkeypatch,
                                                                           capsys):
    """Issue 12: a `clone` run without weights says so with the download command before the
    reference is analysed, exits 2, and writes nothing."""
    from personalization_engine.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    code = main(["clone", "--ref", str(voices_dir / "LJ001-0004.flac"), "--text", "One.", "--out",
                 str(tmp_path / "out"), "--model", "1.7b-design"])
    captured = capsys.readouterr()
    assert code == 2
    assert "huggingface-cli download Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign" in captured.err
    assert "Voice DNA ·" not in captured.out  # refused before the reference was analysed
    assert not (tmp_path / "out").exists() and not (tmp_path / "hf-cache").exists()


def test_analyze_help_says_json_lines():
    """Issue 12: `analyze --json` with several files prints JSON Lines; --help says so."""
    from personalization_engine.__main__ import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert "JSON Lines" in sub.choices["analyze"].format_help()


def test_quant_flag_defaults_to_auto_for_the_app_and_refuses_unknown_modes(capsys):
    """The app (both entry points) asks for quant auto; the library's default stays none."""
    from personalization_engine.__main__ import _parser
    from personalization_engine.session import SessionConfig

    script = cli.options_from_args(cli.build_parser().parse_args([]))
    clone = cli.options_from_args(_parser().parse_args(["clone", "--ref", "a.wav", "--text", "hi"]))
    assert script.quant == clone.quant == "auto" and script.session_config().quant == "auto"
    assert SessionConfig().quant == "none"
    assert cli.options_from_args(cli.build_parser().parse_args(["--quant", "INT4"])).quant == "int4"
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["--quant", "int3"])
    assert exit_info.value.code == 2 and "invalid choice: 'int3'" in capsys.readouterr().err
