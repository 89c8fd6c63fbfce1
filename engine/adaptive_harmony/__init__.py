"""Import-compatible name for the Galley SDK, so recipes written for Adaptive Engine run unchanged.

Every name here is the same object as in ``galley``; ``adaptive_harmony.runtime`` is
``galley.runtime``'s names.
"""

from galley import *  # noqa: F403
from galley import __all__ as __all__  # noqa: PLC0414
