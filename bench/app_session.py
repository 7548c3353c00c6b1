"""The real app on a checkpoint, typed into like a user, with sound through a null sink: the transcript.

Starts ``run_qwen_interactive.py`` in a pseudo-terminal (pexpect) with a private PulseAudio
server whose default sink is a null sink (``tests/_pulse.py``, ``../shared/AUDIO_TESTING.md``),
so lines are really played (and underruns really counted) on a machine without a sound card.
It loads the reference clip, speaks each ``--line``, and saves the screen as plain text: the
model line (quant mode and kernels), the Voice DNA, and each line's result (RTF, first audio,
underruns). Random-weight checkpoints never say end of speech, so each line runs to the app's
frame budget for its text.

Usage::

    .venv/bin/python bench/app_session.py --model /work/cache/full-0.6b --quant int4 \\
        --out bench/results/app_session_full_0.6b_int4.txt
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from _pulse import null_sink_server  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
#: The spinner that starts each redraw of a live status line (kept: its last state only).
SPINNER = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] ")
REF = REPO / "tests" / "data" / "voices" / "LJ001-0004.flac"
LINES = ("Please call Stella and ask her to bring these things with her from the store.",)


def main(argv: list[str] | None = None) -> int:
    import pexpect

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint folder (e.g. /work/cache/full-0.6b)")
    p.add_argument("--quant", default="auto")
    p.add_argument("--line", action="append", help="a line to speak (repeatable)")
    p.add_argument("--ref", type=Path, default=REF)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    lines = args.line or list(LINES)
    with tempfile.TemporaryDirectory() as tmp, null_sink_server(Path(tmp) / "pulse") as env:
        full_env = {**os.environ, **env, "TERM": "xterm", "COLUMNS": "150"}
        cmd = [str(REPO / "run_qwen_interactive.py"), "--model", args.model, "--quant", args.quant,
               "--ref", str(args.ref), "--seed", "0", "--out", str(Path(tmp) / "outputs")]
        t0 = time.time()
        child = pexpect.spawn(sys.executable, cmd, cwd=tmp, env=full_env, encoding="utf-8",
                              timeout=args.timeout, dimensions=(60, 150))
        log: list[str] = []
        child.logfile_read = _Sink(log)
        try:
            child.expect("voice prompt ready")
            child.expect("› ")
            for line in lines:
                child.sendline(line)
                child.expect("similarity")
                child.expect("› ")
            child.sendline("/quit")
            child.expect(pexpect.EOF, timeout=120)
        except (pexpect.TIMEOUT, pexpect.EOF):
            print(ANSI.sub("", "".join(log))[-4000:], file=sys.stderr)
            raise
        elapsed = time.time() - t0
    load = Path("/proc/loadavg").read_text().split()[:3]
    screen = _tidy(ANSI.sub("", "".join(log)))
    header = (f"# bench/app_session.py --model {args.model} --quant {args.quant}; {elapsed:.0f} s session, "
              f"load after {load}; sound through a PulseAudio null sink\n")
    args.out.write_text(header + screen, encoding="utf-8")
    print(header + screen[-3000:])
    return 0


def _tidy(screen: str) -> str:
    """A spinner line redrawn in place becomes its last state (marked), the rest stays as printed."""
    out = []
    for line in screen.split("\n"):
        parts = SPINNER.split(line)
        out.append(f"[live line, last state] {parts[-1].strip()}" if len(parts) > 2 else line)
    return "\n".join(out)


class _Sink:
    """pexpect's logfile: collects what the app printed."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
