"""ulmfit: ULMFiT-style transfer learning on one model-agnostic core."""

__version__ = "0.1.0"

from ulmfit.errors import UlmfitError  # noqa: E402

__all__ = ["UlmfitError", "__version__"]
