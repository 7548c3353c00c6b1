"""Streaming synthesis: codec frames as our decode loop produces them, decoded in chunks.

Two pieces:

* :func:`chunk_frames` groups the frames of :meth:`tts.engine.Decoder.frames` (a generator
  that yields each frame as soon as it exists) into chunks: ``first_chunk_frames``, then
  ``chunk_frames`` each, then the rest. The loop reports whether a frame is the last one before
  it yields it (``DecodeStats.ended``), so a chunk is handed out the moment it is full and the
  last chunk is known to be the last, with no look-ahead. The streamed frames *are* the one-shot
  frames: the same generator, the same seed, the same draws. Closing the chunk generator closes
  the frame generator: generation stops at once. :func:`stream_chunks` runs that generator on a
  worker thread while the caller's thread decodes the previous chunk (torch releases the GIL);
  with adaptive chunks (the default) each later chunk is what the worker made while the chunk
  before was decoding (1 to ``chunk_frames`` frames), so little is left to decode once
  generation ends (fixed 16-frame chunks left up to 1.3 s of decoding after the last frame).
* :class:`ChunkDecoder` decodes chunks of new frames. On CPU (a decoder rewritten by
  :func:`.codec.optimize_decoder`) both halves of the 12 Hz decoder carry their state from
  chunk to chunk (the transformer's KV cache, the convolutions' last inputs): a chunk costs its
  own frames only and the joined chunks equal the one-shot decode (float rounding, 1e-5).
  Elsewhere each chunk re-decodes context: the frame-rate half (quantizer, pre-conv, the
  sliding-window transformer) over ``left_context_frames`` earlier frames, the sample-rate half
  (upsampling convs) over CONV_CONTEXT_FRAMES of them. Measured on full-size random weights
  (``tests/test_streaming.py`` checks the tiny model): joined chunks then differ from the
  one-shot decode by 2e-5 at most with 100 frames of context, 3e-3 with 72 (the transformer's
  window), 1.3e-2 with 25 (qwen-tts' own chunked decode); without context they click (0.45).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from .engine import DecodeStats
from .options import StreamOptions as StreamOptions
from .runtime import torch_module

_LOGGER = logging.getLogger(__name__)

#: Reference contexts whose primed decoder state a decoder keeps (one per recent ICL voice).
PRIMED_CONTEXTS = 8
#: Earlier frames the decoder's upsampling convolutions see before each chunk. Their receptive
#: field is ~5 frames (measured: 4 leaves 6e-2 of error, 6 and more 2e-5).
CONV_CONTEXT_FRAMES = 8


def chunk_frames(frames: Iterator[Any], stats: DecodeStats, options: StreamOptions
                 ) -> Generator[tuple[list[Any], bool], None, None]:
    """``(frames, is_last)`` pairs over a frame generator and the :class:`DecodeStats` it fills.

    A chunk is handed out as soon as it holds ``options.chunk_size(idx)`` frames or the loop
    has said the frame was the last; a segment without any frame gives one empty last chunk.
    """
    pending: list[Any] = []
    idx = 0
    try:
        for frame in frames:
            pending.append(frame)
            last = bool(stats.ended)
            if last or len(pending) == options.chunk_size(idx):
                yield pending, last
                if last:
                    return
                pending, idx = [], idx + 1
        if pending or idx == 0:  # the loop ended without marking a frame (no frame at all)
            yield pending, True
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


class ChunkDecoder:
    """Decode a segment's frames chunk by chunk.

    ``context`` (ICL mode: the last reference frames, as in the one-shot decode) starts the
    history. On a decoder rewritten by :func:`.codec.optimize_decoder` (CPU) both halves carry
    their state from chunk to chunk (:class:`.codec_stream.FrontStream`, :class:`.codec_stream.BackHalfStream`):
    a chunk costs its own frames, joins the one-shot decode to float rounding (the Winograd
    convs' tiles start at each chunk: up to ~1e-4, tested), and
    ``left_context_frames`` only bounds how much of ``context`` goes in before the first chunk.
    Otherwise each chunk re-decodes ``left_context_frames`` earlier frames in the frame-rate
    half and CONV_CONTEXT_FRAMES in the sample-rate half; the split mirrors
    ``Qwen3TTSTokenizerV2Decoder.forward`` line by line (tested equal to it).
    """

    def __init__(self, decoder: Any, samples_per_frame: int, left_context_frames: int, context: Any = None) -> None:
        self._decoder = decoder
        self._spf = int(samples_per_frame)
        self._left = int(left_context_frames)
        self._conv = min(self._left, CONV_CONTEXT_FRAMES)
        self._history: list[Any] = [] if context is None else [context]
        self._n_history = 0 if context is None else int(context.shape[0])
        from .codec import supports_streaming
        from .codec_stream import BackHalfStream, FrontStream

        # An optimized (CPU) decoder streams with carried state: each chunk then costs its own
        # frames only (tts/codec_stream.py); otherwise the context is decoded again with every chunk.
        self._stream = (FrontStream(decoder), BackHalfStream(decoder)) if supports_streaming(decoder) else None
        self._warm = False

    def decode(self, codes: Any) -> np.ndarray:
        """``codes`` (frames, groups) -> exactly frames x samples_per_frame float32 samples."""
        torch = torch_module()
        n = int(codes.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if self._stream is not None:
            return self._decode_carried(codes, *self._stream)
        ctx = min(self._left, self._n_history)
        full = torch.cat([*self._history, codes], dim=0) if self._history else codes
        window = full[self._n_history - ctx:]
        keep = full[max(0, int(full.shape[0]) - self._left):]  # the context of the next chunk
        self._history, self._n_history = [keep], int(keep.shape[0])
        with torch.inference_mode():
            hidden = self._front(self._batch(window))
            conv = min(self._conv, ctx)
            wav = self._back(hidden[..., ctx - conv:])
        return np.ascontiguousarray(wav[0, 0, conv * self._spf:].float().cpu().numpy(), dtype=np.float32)

    def _decode_carried(self, codes: Any, front: Any, back: Any) -> np.ndarray:
        """Both halves with carried state, primed with the context before the first chunk."""
        torch = torch_module()
        if not self._warm:
            ctx = min(self._left, self._n_history)
            if ctx:
                self._prime(front, back, self._history[0][self._n_history - ctx:])
            self._warm, self._history, self._n_history = True, [], 0
        with torch.inference_mode():
            wav = back(front(self._batch(codes)))
        return np.ascontiguousarray(wav[0, 0].float().cpu().numpy(), dtype=np.float32)

    def _prime(self, front: Any, back: Any, context: Any) -> None:
        """Feed ``context`` (frames, groups) through both halves, dropping the audio; restored
        from a snapshot when this decoder primed the same frames before (an ICL voice's
        reference frames are the same for every line: ~0.6 s of decoding saved per segment)."""
        torch = torch_module()
        key = (hashlib.sha256(context.cpu().numpy().tobytes()).hexdigest(), tuple(context.shape), self._conv)
        primed = getattr(self._decoder, "_pe_primed", None)
        if primed is None:
            primed = collections.OrderedDict()
            self._decoder._pe_primed = primed
        if key in primed:
            primed.move_to_end(key)
            front.restore(primed[key][0])
            back.restore(primed[key][1])
            return
        with torch.inference_mode():
            hidden = front(self._batch(context))
            conv = min(self._conv, int(context.shape[0]))  # the convs' receptive field is enough
            back(hidden[..., hidden.shape[-1] - conv:])
        primed[key] = (front.snapshot(), back.snapshot())
        while len(primed) > PRIMED_CONTEXTS:
            primed.popitem(last=False)

    def _batch(self, codes: Any) -> Any:
        """(frames, groups) codes -> the decoder's (1, groups, frames) input on its device."""
        return codes.to(next(self._decoder.parameters()).device).clamp(min=0).t().unsqueeze(0)

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


#: Frames per piece when a whole segment is decoded at once by a decoder that carries state
#: (CPU). Unlike qwen-tts' decode, a segment longer than 300 frames has no seams (its 300-frame
#: windows with 25 frames of context differ from the one-shot decode by ~1e-2 at each seam), and
#: a piece's activations stay in cache: with direct convs one 50-frame call on one thread took
#: 0.93 s of compute per second of audio, pieces 0.84 (codec_r18.json); with the Winograd convs,
#: which work in passes of their own, the two cost the same (0.71-0.73, codec_r19.json).
ONE_SHOT_PIECE_FRAMES = 16


def decode_whole(decoder: Any, codes: Any, context: Any, samples_per_frame: int) -> np.ndarray | None:
    """A whole segment's ``codes`` (frames, groups) -> its audio, in pieces of
    :data:`ONE_SHOT_PIECE_FRAMES` with carried state, after ``context`` (ICL: the reference
    frames, all of them, as the one-shot decode sees them). None when ``decoder`` does not carry
    state (not optimized: the caller decodes with qwen-tts)."""
    from .codec import supports_streaming

    if not supports_streaming(decoder):
        return None
    n_ctx = 0 if context is None else int(context.shape[0])
    chunks = ChunkDecoder(decoder, samples_per_frame, n_ctx, context)
    step = ONE_SHOT_PIECE_FRAMES
    pieces = [chunks.decode(codes[i:i + step]) for i in range(0, int(codes.shape[0]), step)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


#: Decode each chunk while the loop generates the next one (generation on a worker thread, one
#: torch thread each): a streamed line then costs about max(generation, decode), not their sum.
#: Off: the chunks are generated and decoded one after the other on the caller's thread.
OVERLAP_DECODE = True
#: Torch threads of each side while they overlap (2 cores: one each).
OVERLAP_THREADS = 1
#: Adaptive chunks after the first wait for at least this many frames (or the end). A codec
#: call costs ~55 ms plus ~65 ms per frame here (ad-hoc timing of ChunkDecoder by chunk size),
#: so one-frame chunks keep the decoder's core busy at its least efficient; waiting for 4
#: frames leaves that core to the decode loop's helper thread meanwhile. With the helper, in one
#: process (bench/results/stream_ab.txt): 0.6B int4 RTF 1.35 -> 1.28 (a second run: 1.48 ->
#: 1.43), int8 2.12 -> 2.02, bf16 2.74 -> 2.70, 1.7B int4 1.99 -> 1.72.
MIN_MERGED_FRAMES = 4
_DONE = object()


def stream_chunks(model: Any, frames: Iterator[Any], stats: DecodeStats, options: StreamOptions, *,
                  context: Any, samples_per_frame: int) -> Generator[tuple[int, np.ndarray, bool], None, None]:
    """``(frames, audio, is_last)`` per chunk of one segment, decoded as the loop makes them.

    ``frames`` is the segment's frame generator (``Decoder.frames``) on ``model`` (a
    ``Qwen3TTSForConditionalGeneration``) and ``stats`` the record it fills; each chunk is
    decoded by a :class:`ChunkDecoder` that starts from ``context`` (ICL: the last reference
    frames). With :data:`OVERLAP_DECODE` the frames are generated on a worker thread while this
    thread decodes the chunk before (chunk order kept, the worker's errors re-raised here).
    Closing this generator closes ``frames`` (with overlap: the worker stops after its current
    frame and is joined).
    """
    groups = int(model.config.talker_config.num_code_groups)
    decoder = ChunkDecoder(model.speech_tokenizer.model.decoder, samples_per_frame, options.left_context_frames,
                           context)
    device = model.talker.device
    if not OVERLAP_DECODE:
        chunks = chunk_frames(frames, stats, options)
        try:
            for chunk, last in chunks:
                codes = _stack(chunk, groups, device)
                yield int(codes.shape[0]), decoder.decode(codes), last
        finally:
            chunks.close()
        return
    stop = threading.Event()
    # Adaptive: the worker hands out single frames after the first chunk and the decoder takes
    # what is ready (at least MIN_MERGED_FRAMES, at most chunk_frames) each time it is free.
    produce = dataclasses.replace(options, chunk_frames=1) if options.adaptive else options
    yield from _overlapped(chunk_frames(_until(frames, stop), stats, produce), stop, decoder, groups, device,
                           options.chunk_frames if options.adaptive else 0)


def _until(frames: Iterator[Any], stop: threading.Event) -> Generator[Any, None, None]:
    """``frames`` until ``stop`` is set (checked after each frame); closes ``frames``."""
    try:
        for frame in frames:
            yield frame
            if stop.is_set():
                return
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _stack(chunk: list[Any], groups: int, device: Any) -> Any:
    torch = torch_module()
    return torch.stack(chunk) if chunk else torch.zeros((0, groups), dtype=torch.long, device=device)


def _overlapped(chunks: Generator[tuple[list[Any], bool], None, None], stop: threading.Event,
                decoder: ChunkDecoder, groups: int, device: Any, merge_up_to: int = 0
                ) -> Generator[tuple[int, np.ndarray, bool], None, None]:
    """Generate on a worker thread, decode (and hand out) on this one, in chunk order.

    With ``merge_up_to``, each chunk after the first also takes the worker's later chunks that
    are already waiting, up to that many frames in all, and waits for them until it holds
    :data:`MIN_MERGED_FRAMES` (or the segment's last frame). The worker stops after its current
    frame once ``stop`` is set (this generator closed, an error or Ctrl-C here) and is joined
    before this generator finishes closing.
    """
    torch = torch_module()
    ready: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        torch.set_num_threads(OVERLAP_THREADS)  # this thread's own setting (OpenMP: per thread)
        try:
            for item in chunks:
                ready.put(item)
        except BaseException as exc:  # handed to the consumer, re-raised there
            ready.put(exc)
        finally:
            chunks.close()
            ready.put(_DONE)

    worker = threading.Thread(target=work, name="tts-generate", daemon=True)
    threads = torch.get_num_threads()
    worker.start()
    held: Any = None  # an item taken while merging that ends the merge (the end, an error)
    first = True  # the first chunk stays as small as asked: it sets the time to first audio
    try:
        while True:
            item, held = (ready.get() if held is None else held), None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            chunk, last = item
            while not first and not last and len(chunk) < merge_up_to and held is None:
                try:
                    more = ready.get() if len(chunk) < min(MIN_MERGED_FRAMES, merge_up_to) else ready.get_nowait()
                except queue.Empty:
                    break
                if more is _DONE or isinstance(more, BaseException):
                    held = more
                else:
                    chunk, last = chunk + more[0], more[1]
            codes = _stack(chunk, groups, device)
            # The last chunk comes after generation has ended: its decode, the tail of the line
            # that nothing overlaps, gets every thread.
            torch.set_num_threads(threads if last else OVERLAP_THREADS)
            try:
                audio = decoder.decode(codes)
            finally:
                torch.set_num_threads(threads)
            yield int(codes.shape[0]), audio, last
            if last:
                return
            first = False
    finally:
        stop.set()
        worker.join()
