"""Streaming synthesis: codec frames as the talker produces them, decoded in chunks.

Two pieces, both around the official qwen-tts objects:

* :class:`FrameStream` runs the unchanged qwen-tts ``generate`` (``TTSModel._segment_codes``) in a
  worker thread and hands each codec frame (16 codes) to the caller as soon as the talker step
  that produced it ends. A forward hook on the talker reads the frame that the step's 15-step
  code predictor completed (``outputs.hidden_states[1]``, the same tensor ``generate`` stacks
  into its result), so the streamed frames *are* the frames of the one-shot call: same seed,
  same RNG draws, same codes. Exceptions of the worker re-raise in the caller; closing the
  stream (generator ``close``, ``KeyboardInterrupt``, garbage collection) makes the hook raise
  at the next talker step and joins the thread.
* :class:`ChunkDecoder` decodes chunks of new frames with the 12 Hz decoder split in two: the
  cheap frame-rate half (quantizer, pre-conv, the sliding-window transformer) runs over
  ``left_context_frames`` of earlier frames; the expensive sample-rate half (upsampling convs)
  over only CONV_CONTEXT_FRAMES of them, which covers its receptive field. Measured on
  full-size random weights (``tests/test_streaming.py`` checks the tiny model): joined chunks
  differ from the one-shot decode by 2e-5 at most with 100 frames of context, 3e-3 with 72 (the
  transformer's window), 1.3e-2 with 25 (qwen-tts' own chunked decode); without context they
  click (0.45).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Generator, Iterator

import numpy as np

from ..errors import SynthesisError
from .options import StreamOptions as StreamOptions
from .runtime import torch_module

_LOGGER = logging.getLogger(__name__)

#: Earlier frames the decoder's upsampling convolutions see before each chunk. Their receptive
#: field is ~5 frames (measured: 4 leaves 6e-2 of error, 6 and more 2e-5).
CONV_CONTEXT_FRAMES = 8
#: How long closing a stream waits for the worker to notice (s); a talker step is far shorter.
_JOIN_TIMEOUT_S = 60.0
_POLL_S = 0.05


class _Cancelled(BaseException):
    """Raised inside the worker's generate when the consumer closed the stream (a
    BaseException, so no ``except Exception`` inside transformers can swallow it)."""


class FrameStream:
    """The codec frames of one ``run()`` call (qwen-tts generate), in chunks, while it runs.

    ``run`` executes in a daemon worker thread with two hooks on ``talker``: a forward hook
    that reads the frame each talker step completed, and a pre-forward hook that signals "one
    more frame is coming" as soon as the next step starts (so a full chunk is handed out at
    once, yet the last chunk of the segment is known to be the last). After iterating
    :meth:`chunks`, :attr:`result` is what ``run`` returned. Use as a context manager, or call
    :meth:`close`, so the worker always ends. The queue holds at most ``2 * max_frames + 4``
    items: the worker never waits for the consumer, so a slow consumer (audio playback) never
    stalls generation, and memory stays bounded by the segment's frame budget.

    torch's global RNG belongs to the worker while it runs (with a seed, ``seeded`` forks and
    restores it there): the caller's thread should not draw from it meanwhile.
    """

    def __init__(self, talker: Any, run: Callable[[], Any], *, eos_id: int, max_frames: int) -> None:
        self._talker = talker
        self._run = run
        self._eos_id = int(eos_id)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2 * max_frames + 4)
        self._stop = threading.Event()
        self._ended = False
        self.result: Any = None
        self._thread = threading.Thread(target=self._work, name="qwen-tts-frames", daemon=True)
        self._thread.start()

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chunks(self, options: StreamOptions) -> Iterator[tuple[list[Any], bool]]:
        """``(frames, is_last)`` pairs: ``first_chunk_frames``, then ``chunk_frames`` each, then the rest.

        A full chunk is handed out when the next talker step starts (or generation ends); the
        last pair may hold fewer frames, or none when the model produced no frame at all.
        """
        pending: list[Any] = []
        idx = 0
        for kind, item in self._items():
            if kind == "frame":
                pending.append(item)
            elif kind == "more" and len(pending) == options.chunk_size(idx):
                yield pending, False
                pending, idx = [], idx + 1
        if pending or idx == 0:
            yield pending, True

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the worker at its next talker step and wait for it (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                _LOGGER.warning("the generation worker did not stop within %.0f s", _JOIN_TIMEOUT_S)

    def _items(self) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                kind, item = self._queue.get(timeout=_POLL_S)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the generation worker ended without a result") from None
                continue
            if kind == "error":
                raise item
            if kind == "done":
                self.result = item
                return
            yield kind, item

    def _pre_hook(self, module: Any, args: Any) -> None:
        if threading.current_thread() is not self._thread:
            return  # another thread's call of the same talker
        if self._stop.is_set():
            raise _Cancelled()
        self._queue.put_nowait(("more", None))

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        if threading.current_thread() is not self._thread:
            return
        codes = output.hidden_states[1]  # None on the prefill step; (batch, groups) after
        if codes is None or self._ended:
            return
        frame = codes[0].detach().clone()
        if int(frame[0]) == self._eos_id:  # as qwen-tts: frames end at the first end-of-speech
            self._ended = True
            return
        self._queue.put_nowait(("frame", frame))

    def _work(self) -> None:
        handles = [self._talker.register_forward_pre_hook(self._pre_hook),
                   self._talker.register_forward_hook(self._hook)]
        try:
            item: tuple[str, Any] = ("done", self._run())
        except _Cancelled:
            return
        except BaseException as exc:  # re-raised in the consumer's thread
            item = ("error", exc)
        finally:
            for handle in handles:
                handle.remove()
        self._queue.put_nowait(item)


class ChunkDecoder:
    """Decode a segment's frames chunk by chunk, each with a left context of earlier frames.

    ``context`` (ICL mode: the last reference frames, as in the one-shot decode) starts the
    history; every decoded chunk is appended to it. The split mirrors
    ``Qwen3TTSTokenizerV2Decoder.forward`` line by line (tested equal to it).
    """

    def __init__(self, decoder: Any, samples_per_frame: int, left_context_frames: int, context: Any = None) -> None:
        self._decoder = decoder
        self._spf = int(samples_per_frame)
        self._left = int(left_context_frames)
        self._conv = min(self._left, CONV_CONTEXT_FRAMES)
        self._history: list[Any] = [] if context is None else [context]
        self._n_history = 0 if context is None else int(context.shape[0])

    def decode(self, codes: Any) -> np.ndarray:
        """``codes`` (frames, groups) -> exactly frames x samples_per_frame float32 samples."""
        torch = torch_module()
        n = int(codes.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        ctx = min(self._left, self._n_history)
        full = torch.cat([*self._history, codes], dim=0) if self._history else codes
        window = full[self._n_history - ctx:]
        keep = full[max(0, int(full.shape[0]) - self._left):]  # the context of the next chunk
        self._history, self._n_history = [keep], int(keep.shape[0])
        with torch.inference_mode():
            hidden = self._front(window.to(self._device()).clamp(min=0).t().unsqueeze(0))
            conv = min(self._conv, ctx)
            wav = self._back(hidden[..., ctx - conv:])
        return np.ascontiguousarray(wav[0, 0, conv * self._spf:].float().cpu().numpy(), dtype=np.float32)

    def _device(self) -> Any:
        return next(self._decoder.parameters()).device

    def _front(self, codes: Any) -> Any:
        dec = self._decoder
        hidden = dec.pre_conv(dec.quantizer.decode(codes)).transpose(1, 2)
        return dec.pre_transformer(inputs_embeds=hidden).last_hidden_state.permute(0, 2, 1)

    def _back(self, hidden: Any) -> Any:
        dec = self._decoder
        for blocks in dec.upsample:
            for block in blocks:
                hidden = block(hidden)
        for block in dec.decoder:
            hidden = block(hidden)
        return hidden.clamp(min=-1, max=1)


def stream_chunks(model: Any, run: Callable[[], Any], options: StreamOptions, *, budget: int, context: Any,
                  samples_per_frame: int) -> Generator[tuple[int, np.ndarray, bool], None, None]:
    """``(frames, audio, is_last)`` per chunk of one segment, decoded as the talker makes them.

    ``run`` is the segment's qwen-tts generate call on ``model`` (a
    ``Qwen3TTSForConditionalGeneration``) with a budget of ``budget`` frames; it runs in a
    :class:`FrameStream`, and each chunk of frames is decoded by a :class:`ChunkDecoder` that
    starts from ``context`` (ICL: the last reference frames). On the last chunk the streamed
    frames are checked against what ``run`` returned. Close the generator to stop the worker.
    """
    torch = torch_module()
    talker_cfg = model.config.talker_config
    decoder = ChunkDecoder(model.speech_tokenizer.model.decoder, samples_per_frame, options.left_context_frames, context)
    done: list[Any] = []
    with FrameStream(model.talker, run, eos_id=talker_cfg.codec_eos_token_id, max_frames=budget + 1) as frames_stream:
        for frames, last in frames_stream.chunks(options):
            codes = (torch.stack(frames) if frames else
                     torch.zeros((0, int(talker_cfg.num_code_groups)), dtype=torch.long, device=model.talker.device))
            audio = decoder.decode(codes)
            done.append(codes)
            if last:
                check_streamed(torch.cat(done), frames_stream.result)
            yield int(codes.shape[0]), audio, last


def check_streamed(streamed: Any, returned: Any) -> None:
    """Internal invariant: the frames handed out while streaming are those generate returned."""
    torch = torch_module()
    if streamed.shape != returned.shape or not torch.equal(streamed.cpu(), returned.cpu()):
        raise SynthesisError(
            f"internal error: streamed frames {tuple(streamed.shape)} differ from the generated ones "
            f"{tuple(returned.shape)}; please report it (stream=False works around it)"
        )
