"""GenerateOptions and the plan of a generate call (``tts/options.py``): no model, no torch.

The record is checked once, when made; keyword overrides build or replace its fields.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from personalization_engine.errors import ProfileError, SynthesisError
from personalization_engine.tts.options import (
    SUPPORTED_LANGUAGES,
    GenerateOptions,
    StreamOptions,
    make_plan,
)


def test_overrides_replace_fields_of_the_given_record() -> None:
    base = GenerateOptions(seed=1, max_new_frames=40, language="en")
    got = GenerateOptions.build(base, {"seed": 0, "stream": True, "_min_new_frames": 30})
    assert (got.seed, got.max_new_frames, got.language, got.stream, got.min_new_frames) == (0, 40, "en", True, 30)
    assert base.seed == 1 and not base.stream  # the given record is unchanged (frozen)
    assert GenerateOptions.build(base, {}) is base and GenerateOptions.build(None, None) == GenerateOptions()


def test_numpy_integers_are_accepted_and_stored_as_int() -> None:
    opts = GenerateOptions(seed=np.int64(7), max_new_frames=np.int32(12))
    assert type(opts.seed) is int and type(opts.max_new_frames) is int and opts.seed == 7


def test_sampling_keywords_and_stream_options() -> None:
    assert GenerateOptions().sampling == {} and GenerateOptions().stream_options is None
    assert GenerateOptions(temperature=0).sampling == {"do_sample": False, "subtalker_dosample": False}  # greedy
    assert GenerateOptions(temperature=0.7, top_k=20, top_p=0.9).sampling == {"temperature": 0.7, "top_k": 20, "top_p": 0.9}
    streamed = GenerateOptions(stream=True, first_chunk_frames=3, chunk_frames=8, left_context_frames=12)
    assert streamed.stream_options == StreamOptions(3, 8, 12)
    assert [streamed.stream_options.chunk_size(i) for i in range(3)] == [3, 8, 8]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"temperature": -0.5}, ProfileError, r"temperature must be a number in \[0, 2\]"),
        ({"top_p": 0.0}, ProfileError, r"top_p must be in \(0, 1\]"),
        ({"top_k": 5000}, ProfileError, r"top_k must be an integer in \[0, 3072\], got 5000"),
        ({"seed": True}, ProfileError, "seed must be an integer"),  # a bool is not a seed
        ({"max_new_frames": 0}, ProfileError, r"max_new_frames must be an integer in \[1, 8192\]"),
        ({"_min_new_frames": 50, "max_new_frames": 20}, ProfileError, r"_min_new_frames \(50\) exceeds max_new_frames \(20\)"),
        ({"stream": "yes"}, ProfileError, "stream must be True or False"),  # truthy string is not a bool
        ({"chunk_frames": 2.5}, ProfileError, "chunk_frames must be an integer"),
        ({"left_context_frames": None}, ProfileError, r"left_context_frames .* got None"),
        ({"language": 3}, SynthesisError, "language must be a string"),
        ({"sedd": 1}, TypeError, r"unexpected keyword argument 'sedd'; the options are .*seed"),  # a typo
    ],
)
def test_bad_options_are_refused_when_built(overrides, error, match) -> None:
    with pytest.raises(error, match=match):
        GenerateOptions.build(None, overrides)


def test_options_must_be_a_record() -> None:
    """Regression guard: a dict passed positionally must not be silently ignored."""
    with pytest.raises(ProfileError, match="options must be a GenerateOptions or None, got dict"):
        GenerateOptions.build({"seed": 1}, {})  # type: ignore[arg-type]


def test_replace_checks_again() -> None:
    with pytest.raises(ProfileError, match="seed"):
        dataclasses.replace(GenerateOptions(), seed=-1)


def test_plan_splits_the_text_and_resolves_the_language() -> None:
    text = "First sentence here. " * 20 + "And the end."
    plan = make_plan(text, GenerateOptions(language="FR", seed=4), languages=SUPPORTED_LANGUAGES, model_id="m")
    assert plan.language == "french" and plan.options.seed == 4 and plan.stream is None
    assert len(plan.segments) >= 2 and plan.segments[-1].pause_after_s == 0.0
    with pytest.raises(SynthesisError, match="'klingon' is not supported by m"):
        make_plan("Hello.", GenerateOptions(language="klingon"), languages=SUPPORTED_LANGUAGES, model_id="m")
    with pytest.raises(SynthesisError, match="empty"):
        make_plan("   ", GenerateOptions(), languages=SUPPORTED_LANGUAGES, model_id="m")
