"""The installed package's version (``0.0.0+unknown`` in a source tree that was never installed).

Every layer that writes it into an output (Parquet metadata, manifests, exported code) imports it from
here, not from the package root: the root imports the layers.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("rfsweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
