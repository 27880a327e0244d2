"""The names of the model types, light enough for a DAG file to import when it is parsed.

``velocast.ml.models`` holds the types themselves (and scikit-learn); it refuses to import if its
types and these names ever differ.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MODEL_TYPE: Final = "hgb"
MODEL_TYPE_NAMES: Final[tuple[str, ...]] = ("hgb", "rf")

__all__ = ["DEFAULT_MODEL_TYPE", "MODEL_TYPE_NAMES"]
