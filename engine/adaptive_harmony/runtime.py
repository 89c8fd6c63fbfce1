"""Import-compatible name for ``galley.runtime``: the same objects under the Adaptive Engine name."""

from galley.runtime import *  # noqa: F403
from galley.runtime import __all__ as __all__  # noqa: PLC0414
