"""Tests of text splitting and frame budgets (pure Python, no model)."""

from __future__ import annotations

import pytest

from personalization_engine.text_segmenter import (
    MAX_SEGMENT_UNITS,
    MIN_BUDGET_FRAMES,
    PAUSE_CLAUSE_S,
    PAUSE_PARAGRAPH_S,
    PAUSE_SENTENCE_S,
    frame_budget,
    normalize_text,
    split_text,
    text_units,
)

LONG_EN = (
    "The quick brown fox jumps over the lazy dog, and then it runs across the wide field; nobody "
    "knows where it goes. Dr. Smith measured 3.14 metres of fence that day! Did he really? "
    "\"Yes,\" she said. "
) * 8
LONG_ZH = "今天天气很好，我们一起去公园散步吧！明天也许会下雨。" * 12


def _chars(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("text", [LONG_EN, LONG_ZH, "word " * 300, "x" * 1000, "Short.", "a\n\nb\n\n\nc"])
def test_nothing_is_cut_off_and_segments_are_bounded(text: str) -> None:
    segments = split_text(text)
    assert _chars("".join(s.text for s in segments)) == _chars(normalize_text(text))
    assert all(0 < s.units <= MAX_SEGMENT_UNITS for s in segments)
    assert segments[-1].pause_after_s == 0.0


def test_latin_text_rejoins_exactly() -> None:
    segments = split_text(LONG_EN, max_units=80)
    assert " ".join(s.text for s in segments) == normalize_text(LONG_EN)


def test_short_sentences_are_packed_together() -> None:
    assert [s.text for s in split_text("One. Two. Three.")] == ["One. Two. Three."]


def test_split_prefers_sentences_then_clauses() -> None:
    text = "First sentence is here. Second one, with a clause, is a bit longer than that."
    segs = split_text(text, max_units=40)
    assert segs[0].text == "First sentence is here." and segs[0].pause_after_s == PAUSE_SENTENCE_S
    assert segs[1].text.endswith(",") and segs[1].pause_after_s == PAUSE_CLAUSE_S


def test_decimals_and_quotes_survive() -> None:
    text = 'He paid 3.50 dollars. "Fine," she said. "Really?" he asked.'
    segs = split_text(text, max_units=24)
    assert "3.50" in segs[0].text
    assert _chars(" ".join(s.text for s in segs)) == _chars(text)


def test_paragraphs_are_never_packed_together() -> None:
    segs = split_text("First paragraph.\n\nSecond paragraph.")
    assert [s.text for s in segs] == ["First paragraph.", "Second paragraph."]
    assert segs[0].pause_after_s == PAUSE_PARAGRAPH_S


def test_cjk_is_split_at_cjk_punctuation_without_adding_spaces() -> None:
    segs = split_text(LONG_ZH, max_units=40)
    assert len(segs) > 1 and all(" " not in s.text for s in segs)
    assert all(s.text[-1] in "，。！" for s in segs)


def test_empty_text_has_no_segments() -> None:
    assert split_text("   \n ") == []


def test_units_and_budget() -> None:
    assert text_units("abc") == 3 and text_units("你好") == 7.0
    assert frame_budget("Hi.") == MIN_BUDGET_FRAMES
    long = "word " * 40
    assert frame_budget(long) == pytest.approx(2 * 0.9 * len(long), abs=1)
    assert frame_budget(long, cap=10) == 10
    assert frame_budget("你好世界" * 10) > frame_budget("abcd" * 10)  # CJK takes longer to say


def test_bad_bound() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        split_text("Hello.", max_units=2)
