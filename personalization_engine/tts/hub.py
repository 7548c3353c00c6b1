"""Where Qwen3-TTS weights come from: ``models/<name>``, the Hugging Face cache, or a download.

Resolution order for a name such as ``0.6b``:

1. a local folder, if ``name_or_path`` is one;
2. ``models/Qwen3-TTS-12Hz-0.6B-Base`` or ``models/0.6b`` (in the current directory, then the
   repository root);
3. a complete snapshot in the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``);
4. a download with a progress bar, after a 3-second reachability probe of the hub.

Offline (``HF_HUB_OFFLINE=1``) or with the hub unreachable, step 4 fails at once with a
:class:`ModelLoadError` that gives the exact download command and the folder to put the weights
in; it never hangs and never shows a stack trace. The environment is read at call time, so
changing ``HF_HUB_OFFLINE`` / ``HF_HOME`` / ``HF_ENDPOINT`` after import takes effect.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ModelLoadError

_LOGGER = logging.getLogger(__name__)

#: Short names accepted by ``load_model``.
MODEL_ALIASES: dict[str, str] = {
    "0.6b": "Qwen/Qwen3-TTS-12Hz-0.6B-Base",
    "1.7b": "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
    "1.7b-design": "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
}
#: Folder searched for local weights (relative to the current directory and to the repo root).
MODELS_DIRNAME = "models"
#: Files a complete checkpoint folder has (hub layout).
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "model.safetensors",
    "speech_tokenizer/config.json",
    "speech_tokenizer/preprocessor_config.json",
    "speech_tokenizer/model.safetensors",
)
#: Seconds the hub reachability probe may take (DNS + TCP connect) before we call it offline.
HUB_PROBE_TIMEOUT_S = 3.0
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "on", "yes", "true"}


def resolve_model(
    name_or_path: str | os.PathLike[str],
    *,
    models_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Path, str]:
    """Find (or download) a checkpoint folder; returns ``(folder, model_id)``."""
    text = str(name_or_path).strip()
    if not text:
        raise ModelLoadError(f"no model given; use one of {', '.join(MODEL_ALIASES)} or a local folder")
    local = Path(text).expanduser()
    repo_id = MODEL_ALIASES.get(text.lower())
    if repo_id is None and (local.exists() or not _REPO_ID.match(text)):
        return check_model_dir(local), _model_id_for(local)
    repo_id = repo_id or text
    for folder in _local_candidates(repo_id, text, models_dir):
        if (folder / "config.json").is_file():
            _LOGGER.info("using local weights %s", folder)
            return check_model_dir(folder), repo_id
    cached = _cached_snapshot(repo_id)
    if cached is not None:
        _LOGGER.info("using cached weights %s", cached)
        return check_model_dir(cached), repo_id
    return check_model_dir(_download(repo_id, models_dir, progress)), repo_id


def download_help(repo_id: str, models_dir: str | os.PathLike[str] | None = None) -> str:
    """The command that fetches ``repo_id`` into the folder ``load_model`` looks in first."""
    target = Path(models_dir or MODELS_DIRNAME) / repo_id.split("/")[-1]
    return (
        f"Download it on a machine with internet access:\n"
        f"    huggingface-cli download {repo_id} --local-dir {target}\n"
        f"then copy the folder to {target} (or pass its path to load_model / --model)."
    )


def check_model_dir(folder: Path) -> Path:
    """A complete Qwen3-TTS 12 Hz checkpoint folder (cheap checks; no weights read)."""
    if not folder.is_dir():
        names = ", ".join(MODEL_ALIASES)
        raise ModelLoadError(
            f"model folder {folder} does not exist. Give a folder with a Qwen3-TTS checkpoint "
            f"(config.json, model.safetensors, speech_tokenizer/) or one of the names {names}."
        )
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelLoadError(
            f"{folder} is not a complete Qwen3-TTS checkpoint: missing {', '.join(missing)}. "
            "Re-download the whole repository folder (see the huggingface-cli command in the README)."
        )
    cfg = read_config(folder)
    if cfg.get("model_type") != "qwen3_tts" or cfg.get("tokenizer_type") != "qwen3_tts_tokenizer_12hz":
        raise ModelLoadError(
            f"{folder}/config.json describes model_type={cfg.get('model_type')!r}, "
            f"tokenizer_type={cfg.get('tokenizer_type')!r}; this engine runs the Qwen3-TTS 12 Hz "
            f"models ({', '.join(MODEL_ALIASES.values())})."
        )
    if cfg.get("tts_model_type") not in ("base", "voice_design"):
        raise ModelLoadError(
            f"{folder} is a {cfg.get('tts_model_type')!r} model; supported are Base (voice cloning, "
            "e.g. '0.6b') and VoiceDesign ('1.7b-design')."
        )
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{folder}/config.json is unreadable ({exc}); re-download the model") from exc
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{folder}/config.json is not a JSON object; re-download the model")
    return cfg


def _model_id_for(folder: Path) -> str:
    for repo_id in MODEL_ALIASES.values():
        if folder.name == repo_id.split("/")[-1]:
            return repo_id
    return str(folder)


def _local_candidates(repo_id: str, name: str, models_dir: str | os.PathLike[str] | None) -> list[Path]:
    if models_dir:
        roots = [Path(models_dir)]
    else:
        roots = [Path.cwd() / MODELS_DIRNAME, Path(__file__).resolve().parents[2] / MODELS_DIRNAME]
    names = [repo_id.split("/")[-1], name.lower(), name]
    seen: list[Path] = []
    for root in roots:
        for n in names:
            p = root / n
            if p not in seen:
                seen.append(p)
    return seen


def _hub_cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, cache_dir=_hub_cache_dir(), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure here just means "not cached"
        _LOGGER.debug("%s not in the HF cache: %s", repo_id, exc)
        return None
    return folder if all((folder / f).is_file() for f in REQUIRED_FILES) else None


def hub_reachable(endpoint: str | None = None, *, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the hub opens within ``timeout_s`` (DNS included)."""
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout_s + 0.5)
    return bool(ok)


def _download(repo_id: str, models_dir: str | os.PathLike[str] | None, progress: Callable[[str], None] | None) -> Path:
    if _offline():
        raise ModelLoadError(
            f"{repo_id} is not on this machine (not in {MODELS_DIRNAME}/ nor in the Hugging Face cache "
            f"{_hub_cache_dir()}) and HF_HUB_OFFLINE is set. {download_help(repo_id, models_dir)}"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not hub_reachable(endpoint):
        raise ModelLoadError(
            f"{repo_id} is not on this machine and the Hugging Face hub ({endpoint}) is unreachable "
            f"(no answer within {HUB_PROBE_TIMEOUT_S:.0f} s). {download_help(repo_id, models_dir)}"
        )
    from huggingface_hub import snapshot_download

    if progress:
        progress(f"downloading {repo_id} (several GB, once)")
    _LOGGER.info("downloading %s into %s", repo_id, _hub_cache_dir())
    try:
        kwargs: dict[str, Any] = {"cache_dir": _hub_cache_dir()}
        if progress is not None:
            kwargs["tqdm_class"] = _progress_tqdm(progress)
        return Path(snapshot_download(repo_id, **kwargs))
    except Exception as exc:  # noqa: BLE001 - network/HTTP/disk errors all end the same way
        raise ModelLoadError(f"downloading {repo_id} failed: {exc}. {download_help(repo_id, models_dir)}") from exc


def _progress_tqdm(progress: Callable[[str], None]) -> Any:
    """A tqdm class that reports to ``progress`` instead of drawing on stderr."""
    from tqdm.auto import tqdm

    class _Reporter(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._last = -1

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            if self.total:
                pct = int(100 * self.n / self.total)
                if pct >= self._last + 5:
                    self._last = pct
                    progress(f"{self.desc or 'download'}: {pct}%")
            return None

    return _Reporter
