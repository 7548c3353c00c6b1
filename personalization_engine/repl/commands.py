"""What a typed line does: text is spoken, ``/command ARGS`` becomes a call on the session.

:func:`handle` is the one entry: it parses the line, checks the arguments (a bad one raises
:class:`ProfileError` with the usage) and calls :class:`CloneSession` (or the microphone and
speakers in :class:`AudioView`), then prints the outcome. Each command is a ``cmd_NAME``
function listed in :data:`COMMANDS` (the /help text) and :data:`_HANDLERS`.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from .. import audio_device
from ..errors import DeviceError, PersonalizationError, ProfileError
from . import view
from .render import render_devices, render_help, render_profile, render_voices, short

if TYPE_CHECKING:
    from .loop import Repl

#: The /help table: command -> (arguments, what it does).
COMMANDS: dict[str, tuple[str, str]] = {
    "/record": ("[SECONDS]", "record a new reference voice from the microphone"),
    "/load": ("PATH", "use an audio file as the reference voice"),
    "/transcript": ("TEXT", "set the reference's transcript (switches to ICL mode); no TEXT clears it"),
    "/mode": ("xvector|icl", "voice-prompt mode: speaker embedding only, or in-context with the transcript"),
    "/model": ("NAME|DIR", "switch model: 0.6b, 1.7b or a local folder"),
    "/lang": ("CODE", "language of the lines (auto, en, zh, de, fr, ...)"),
    "/play": ("[N]", "replay output N of this session (default: the last)"),
    "/stop": ("", "stop playback"),
    "/voice save": ("NAME [--force]", "save the current voice to the library (voices/NAME/)"),
    "/voice use": ("NAME", "switch to a saved voice"),
    "/voices": ("", "list the saved voices"),
    "/devices": ("", "list audio devices"),
    "/info": ("", "show the current voice's Voice DNA again"),
    "/help": ("", "this list"),
    "/quit": ("", "leave (Ctrl-D or Ctrl-C at an empty prompt also work)"),
}

_QUIT = ("/quit", "/exit", "/q")


def handle(app: Repl, line: str) -> bool:
    """Run one typed line; False when it asks to leave."""
    text = line.strip()
    if not text:
        return True
    if text.startswith("//"):  # a line that starts with "/" is spoken as "//..."
        view.speak(app.console, app.session, text[1:], app.audio)
        return True
    if not text.startswith("/"):
        view.speak(app.console, app.session, text, app.audio)
        return True
    name, _, rest = text.partition(" ")
    name, rest = name.lower(), rest.strip()
    if name in _QUIT:
        return False
    handler = _HANDLERS.get(name)
    if handler is None:
        close = difflib.get_close_matches(name, [c.split()[0] for c in COMMANDS], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        app.console.print(f"[yellow]unknown command {escape(name)}{hint}; type /help for the list.[/]")
        return True
    handler(app, rest)
    return True


# --------------------------------------------------------------------------- the reference


def cmd_record(app: Repl, args: str) -> None:
    seconds = app.options.seconds
    if args:
        seconds = _number(args, "/record SECONDS", low=1.0, high=60.0)
    if record_reference(app, seconds):
        app.session.ensure_voice()


def record_reference(app: Repl, seconds: float, *, transcript: str | None = None) -> bool:
    """Record (with countdown and level meter) until the user keeps a take; True if kept."""
    audio, console = app.audio, app.console
    if audio.mic is None:
        raise DeviceError(f"{audio.mic_off or 'no microphone'}; use /load PATH instead.")
    while True:
        audio.stop()  # the speakers must not play into the microphone
        audio.countdown(app.options.countdown)
        take = audio.record(seconds)
        try:
            found = app.session.analyze(take)
        except PersonalizationError as exc:
            console.print(f"[red]✖ {escape(str(exc))}[/]")
            if _choose(app, "[r]e-record or [c]ancel?", "rc", "r") == "r":
                continue
            return False
        console.print(render_profile(found.profile, title="your recording", emotion_note=found.emotion_note))
        while True:
            if audio.player is not None:
                choice = _choose(app, "[k]eep, [r]e-record, [p]lay back or [c]ancel?", "krpc", "k")
            else:
                choice = _choose(app, "[k]eep, [r]e-record or [c]ancel?", "krc", "k")
            if choice != "p":
                break
            audio.play(take, what="the recording")
        audio.stop()  # decided: stop the take's play back, the next line plays at once
        if choice == "k":
            app.session.use_recording(take, found, transcript=transcript)
            return True
        if choice == "c":
            return False


def cmd_load(app: Repl, args: str) -> None:
    # A path with spaces works unquoted when it names an existing file.
    path = args if args and Path(args).expanduser().is_file() else _one_arg(args, "/load PATH")
    app.session.load_reference(path)
    app.session.ensure_voice()


def cmd_transcript(app: Repl, args: str) -> None:
    # Said before the voice is rebuilt for the new mode.
    mode = "icl" if args else "xvector"
    app.console.print(f"transcript {'set' if args else 'cleared'}; mode {mode}")
    app.session.set_transcript(args or None)


def cmd_mode(app: Repl, args: str) -> None:
    app.session.set_mode(args)


def cmd_voice(app: Repl, args: str) -> None:
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise ProfileError(f"cannot parse {args!r} ({exc}); usage: /voice save NAME | /voice use NAME") from exc
    if len(words) >= 2 and words[0] == "save" and set(words[2:]) <= {"--force"}:
        name = words[1]
        path = app.session.save_voice(name, overwrite="--force" in words[2:])
        app.console.print(f"[green]✔[/] saved voice {name!r} to {escape(str(path))}/ "
                          f"(use it later with /voice use {name})")
    elif len(words) == 2 and words[0] == "use":
        use_voice(app, words[1])
    else:
        raise ProfileError("usage: /voice save NAME [--force] | /voice use NAME")


def use_voice(app: Repl, name: str) -> None:
    app.session.use_voice(name)
    app.console.print(f"[green]✔[/] using saved voice {name!r} ({app.session.mode})")


def cmd_voices(app: Repl, args: str) -> None:
    library = app.session.library
    entries = library.entries()
    if not entries:
        app.console.print(f"no saved voices in {escape(str(library.root))}/ yet: /voice save NAME")
        return
    app.console.print(render_voices(library.root, entries))


def cmd_info(app: Repl, args: str) -> None:
    session = app.session
    ref = session.reference
    if ref is None:
        raise ProfileError("no voice yet: /record, /load PATH or /voice use NAME first.")
    if ref.profile is not None:
        app.console.print(render_profile(ref.profile, title=ref.name, emotion_note=ref.emotion_note))
    details = [f"mode {session.mode}", f"language {session.language}", f"model {session.model_id}"]
    if session.voice is not None and session.voice.reference_sha256:
        details.append(f"reference sha256 {session.voice.reference_sha256[:12]}…")
    if session.transcript:
        details.append(f"transcript “{short(session.transcript, 60)}”")
    app.console.print("[dim]" + " · ".join(details) + "[/]")


# --------------------------------------------------------------------------- model and language


def cmd_model(app: Repl, args: str) -> None:
    app.session.switch_model(_one_arg(args, "/model NAME|DIR (0.6b, 1.7b or a local folder)"))


def cmd_lang(app: Repl, args: str) -> None:
    code = app.session.set_language(_one_arg(args, "/lang CODE (auto, en, zh, de, ...)"))
    app.console.print(f"language: {code}")


# --------------------------------------------------------------------------- sound


def cmd_play(app: Repl, args: str) -> None:
    outputs = app.session.outputs
    if not outputs:
        raise ProfileError("nothing to play yet: type a line first.")
    n = len(outputs) if not args else _number(args, "/play [N]", low=1, high=len(outputs))
    if n != int(n):
        raise ProfileError(f"/play takes a whole number 1-{len(outputs)}.")
    pair = outputs[int(n) - 1]
    import soundfile as sf

    samples, sr = sf.read(str(pair.wav_path), dtype="float32")
    app.audio.play((samples, sr), what=pair.wav_path.name)
    app.console.print(f"▶ {int(n)}: {pair.wav_path.name}")


def cmd_stop(app: Repl, args: str) -> None:
    app.audio.stop()
    app.console.print("■ stopped")


def cmd_devices(app: Repl, args: str) -> None:
    devices = audio_device.list_devices()
    if not devices:
        app.console.print("[yellow]no audio devices found (no microphone, no speakers).[/]")
        return
    app.console.print(render_devices(devices))


def cmd_help(app: Repl, args: str) -> None:
    app.console.print(render_help(COMMANDS))


_HANDLERS: dict[str, Callable[[Repl, str], None]] = {
    "/record": cmd_record, "/load": cmd_load, "/transcript": cmd_transcript, "/mode": cmd_mode,
    "/model": cmd_model, "/lang": cmd_lang, "/play": cmd_play, "/stop": cmd_stop, "/voice": cmd_voice,
    "/voices": cmd_voices, "/devices": cmd_devices, "/info": cmd_info, "/help": cmd_help,
}


# --------------------------------------------------------------------------- argument parsing


def _choose(app: Repl, question: str, letters: str, default: str) -> str:
    """Ask until one of ``letters`` (or Enter for ``default``) is typed."""
    while True:
        answer = app.input_fn(escape(f"{question} [{default}] ")).strip().lower()[:1] or default
        if answer in letters:
            return answer
        app.console.print(f"[yellow]type one of {', '.join(letters)} (or Enter for {default}).[/]")


def _one_arg(args: str, usage: str) -> str:
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise ProfileError(f"cannot parse {args!r} ({exc}); usage: {usage}") from exc
    if len(words) != 1:
        raise ProfileError(f"usage: {usage}")
    return words[0]


def _number(args: str, usage: str, *, low: float, high: float) -> float:
    try:
        value = float(_one_arg(args, usage))
    except ValueError as exc:
        raise ProfileError(f"{args!r} is not a number; usage: {usage}") from exc
    if not low <= value <= high:
        raise ProfileError(f"{value:g} is out of range {low:g}-{high:g}; usage: {usage}")
    return value
