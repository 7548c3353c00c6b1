"""Alias of :mod:`personalization_engine.emotion.features` (kept for existing imports).

The alias is the module itself, not a copy of some of its names: importing
``personalization_engine.emotion_features`` gives the very same module object.
"""

import sys

from .emotion import features as _features

sys.modules[__name__] = _features
