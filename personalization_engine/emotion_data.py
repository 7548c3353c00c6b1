"""Alias of :mod:`personalization_engine.emotion.training.data` (kept for existing imports).

The alias is the module itself, not a copy of some of its names: importing
``personalization_engine.emotion_data`` gives the very same module object.
"""

import sys

from .emotion.training import data as _data

sys.modules[__name__] = _data
