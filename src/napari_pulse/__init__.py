"""napari-pulse: upscale images by latent-space search in a domain generator (PULSE).

The core (this package minus ``_widget``) imports neither napari nor Qt.
"""

__version__ = "0.1.0"

from .api import iter_upscale, upscale  # noqa: E402
from .events import Cancelled, Finished, Progress  # noqa: E402
from .options import Options  # noqa: E402
from .result import Result  # noqa: E402

__all__ = [
    "Cancelled",
    "Finished",
    "Options",
    "Progress",
    "Result",
    "__version__",
    "iter_upscale",
    "upscale",
]
