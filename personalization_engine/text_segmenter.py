"""Split long text into speakable segments, and size each segment's frame budget.

Qwen3-TTS speaks one segment per generation call. Long inputs are split at sentence
boundaries first, then at clause boundaries (, ; : dashes), then between words, and only as a
last resort inside a word (e.g. Chinese or Japanese text without punctuation), so that no
segment exceeds :data:`MAX_SEGMENT_UNITS`. Short sentences are packed together up to the same
bound, because the model phrases a whole sentence group better than isolated fragments.
Nothing is dropped: joining the segment texts with single spaces gives back the input with its
whitespace normalised (see :func:`normalize_text`).

Each segment carries the pause that follows it (a sentence end pauses longer than a clause),
and :func:`frame_budget` turns its text length into a cap on codec frames, so that a
generation which never emits end-of-speech stops at about twice the expected duration.

Pure Python; no model needed.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from .errors import ProfileError

#: Upper bound of one segment, in length units (a Latin character = 1 unit, a CJK character =
#: CJK_UNITS). 220 units is ~15 s of English speech, well inside what the model phrases well.
MAX_SEGMENT_UNITS = 220
#: A CJK character (Han, kana, Hangul) takes ~3.5 times as long to say as a Latin letter
#: (Mandarin ~4 syllables/s vs English ~14 characters/s).
CJK_UNITS = 3.5

#: Expected codec frames per length unit: English runs at ~14 characters per second, i.e.
#: 12.5 / 14 = 0.9 frames per character.
FRAMES_PER_UNIT = 0.9
#: The budget allows this many times the expected length (slow speakers, long pauses).
BUDGET_SAFETY = 2.0
#: Smallest budget (frames): 24 frames = 1.9 s, room for a one-word line.
MIN_BUDGET_FRAMES = 24

#: Pauses inserted after a segment, by how it ended (s). Natural reading pauses: ~0.2 s at a
#: comma, ~0.4 s at a full stop, ~0.6 s between paragraphs.
PAUSE_PARAGRAPH_S = 0.6
PAUSE_SENTENCE_S = 0.4
PAUSE_CLAUSE_S = 0.2
PAUSE_WORD_S = 0.08

# A sentence is the shortest run of text ending in . ! ? ... (plus closing quotes/brackets)
# followed by whitespace or the end, or in a CJK/Devanagari full stop (no space needed after
# it), or the rest of the text. Decimal points ("3.14") are not followed by a space.
_SENTENCE = re.compile(
    r"""\S.*?(?:[.!?\u2026]+["')\]\u201d\u2019]*(?=\s|$)"""
    r"""|[\u3002\uff01\uff1f\u0964]+["')\]\u201d\u2019\u300d\u300f]*|$)""",
    re.S,
)
# Clause boundaries: after , ; : and their CJK forms (the whitespace after is dropped), or
# before a spaced dash.
_CLAUSE_END = re.compile(r"""(?<=[,;:\u2014\u2013\uff0c\uff1b\uff1a\u3001])\s*|\s+(?=[\u2014\u2013]\s)""")
_PARAGRAPH = re.compile(r"\n\s*\n")
_CJK_PUNCT = "\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\u300d\u300f"


@dataclass(frozen=True)
class Segment:
    """One generation call's worth of text."""

    text: str
    pause_after_s: float
    """Silence to insert after this segment when joining (0 after the last one)."""

    @property
    def units(self) -> float:
        return text_units(self.text)


def normalize_text(text: str) -> str:
    """NFC-normalise and collapse every whitespace run (incl. newlines) to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def is_cjk(ch: str) -> bool:
    """True for Han ideographs, kana and Hangul (scripts written without spaces)."""
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # hiragana, katakana
        or 0x3400 <= o <= 0x9FFF  # CJK ideographs (ext. A + unified)
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= o <= 0x2FFFF  # ideograph extensions B+
    )


def join_texts(left: str, right: str) -> str:
    """Join two pieces with a space, except between CJK text (written without spaces)."""
    if left and right and (is_cjk(left[-1]) or left[-1] in _CJK_PUNCT or is_cjk(right[0])):
        return left + right
    return f"{left} {right}"


def text_units(text: str) -> float:
    """Length in units: 1 per character, CJK_UNITS per CJK character."""
    cjk = sum(1 for ch in text if is_cjk(ch))
    return (len(text) - cjk) + cjk * CJK_UNITS


def frame_budget(text: str, *, cap: int | None = None) -> int:
    """Most codec frames one segment may generate.

    ``max(MIN_BUDGET_FRAMES, ceil(BUDGET_SAFETY * FRAMES_PER_UNIT * units))``, then capped by
    ``cap`` (the caller's ``max_new_frames``).

    Examples
    --------
    >>> frame_budget("Hello there, how are you?")
    45
    >>> frame_budget("Hello there, how are you?", cap=16)
    16
    """
    budget = max(MIN_BUDGET_FRAMES, math.ceil(BUDGET_SAFETY * FRAMES_PER_UNIT * text_units(text)))
    return budget if cap is None else min(budget, int(cap))


def split_text(text: str, *, max_units: float = MAX_SEGMENT_UNITS) -> list[Segment]:
    """Split ``text`` into segments of at most ``max_units`` length units.

    Parameters
    ----------
    text : str
        Any text; whitespace is normalised. Empty or whitespace-only text gives ``[]``.
    max_units : float
        Bound of one segment (see :func:`text_units`); at least 8.

    Returns
    -------
    list of Segment
        In reading order; the last one has ``pause_after_s == 0``.

    Examples
    --------
    >>> [s.text for s in split_text("One. Two, three.", max_units=8)]
    ['One.', 'Two,', 'three.']
    """
    if max_units < 8:
        raise ValueError(f"max_units must be at least 8, got {max_units}")
    pieces: list[tuple[str, float]] = []
    paragraphs = [p for p in _PARAGRAPH.split(unicodedata.normalize("NFC", text)) if p.strip()]
    for p_idx, paragraph in enumerate(paragraphs):
        sentences = [m.group(0) for m in _SENTENCE.finditer(normalize_text(paragraph)) if m.group(0).strip()]
        for s_idx, sentence in enumerate(sentences):
            last_in_paragraph = s_idx == len(sentences) - 1 and p_idx < len(paragraphs) - 1
            end_pause = PAUSE_PARAGRAPH_S if last_in_paragraph else PAUSE_SENTENCE_S
            pieces.extend(_split_long(sentence.strip(), max_units, end_pause))
    segments = _pack(pieces, max_units)
    if segments:
        segments[-1] = Segment(segments[-1].text, 0.0)
    return segments


def _split_long(sentence: str, max_units: float, end_pause: float) -> list[tuple[str, float]]:
    """A sentence as (text, pause) pieces that each fit ``max_units``."""
    if text_units(sentence) <= max_units:
        return [(sentence, end_pause)]
    out: list[tuple[str, float]] = []
    clauses = [c.strip() for c in _CLAUSE_END.split(sentence) if c.strip()]
    for i, clause in enumerate(clauses):
        pause = end_pause if i == len(clauses) - 1 else PAUSE_CLAUSE_S
        if text_units(clause) <= max_units:
            out.append((clause, pause))
            continue
        words = _split_words(clause, max_units)
        out.extend((w, PAUSE_WORD_S) for w in words[:-1])
        out.append((words[-1], pause))
    return _pack_fragments(out, max_units)


def _split_words(clause: str, max_units: float) -> list[str]:
    """Greedy split between words; a word (or CJK run) longer than the bound is cut."""
    chunks: list[str] = []
    current = ""
    for word in clause.split(" "):
        for part in _cut_word(word, max_units):
            candidate = join_texts(current, part) if current else part
            if current and text_units(candidate) > max_units:
                chunks.append(current)
                candidate = part
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _cut_word(word: str, max_units: float) -> list[str]:
    """Cut a single over-long word into pieces of at most ``max_units``."""
    parts: list[str] = []
    current = ""
    for ch in word:
        if current and text_units(current + ch) > max_units:
            parts.append(current)
            current = ""
        current += ch
    return parts + ([current] if current else [])


def _pack_fragments(pieces: list[tuple[str, float]], max_units: float) -> list[tuple[str, float]]:
    """Merge consecutive small fragments of one sentence back up to the bound."""
    return [(s.text, s.pause_after_s) for s in _pack(pieces, max_units)]


def _pack(pieces: list[tuple[str, float]], max_units: float) -> list[Segment]:
    """Greedily join consecutive pieces while the joined text fits ``max_units``.

    A paragraph break is never packed across.
    """
    segments: list[Segment] = []
    text, pause = "", 0.0
    for piece, piece_pause in pieces:
        joined = join_texts(text, piece) if text else piece
        if text and (text_units(joined) > max_units or pause >= PAUSE_PARAGRAPH_S):
            segments.append(Segment(text, pause))
            joined = piece
        text, pause = joined, piece_pause
    if text:
        segments.append(Segment(text, pause))
    return segments


def check_speakable(text: str) -> None:
    """Refuse text with nothing to say: no letter or digit ("...", a lone emoji).

    The model given only punctuation or symbols babbles for seconds; no line is written.
    """
    if not any(ch.isalnum() for ch in text):
        shown = text.strip()
        what = f"{shown!r} has no letters or digits" if shown else "the line is empty"
        raise ProfileError(f"nothing to speak: {what}. Type words to speak them.")
