"""rfsweep: exact receptive-field arithmetic and Numba-accelerated architecture sweeps."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("rfsweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from rfsweep.errors import RFSweepError, SpecError  # noqa: E402
from rfsweep.analyze import analyze  # noqa: E402

__all__ = ["analyze", "RFSweepError", "SpecError", "__version__"]
