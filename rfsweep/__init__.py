"""rfsweep: exact receptive-field arithmetic and Numba-accelerated architecture sweeps."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("rfsweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from rfsweep.errors import RFSweepError, SpecError  # noqa: E402
from rfsweep.analyze import analyze  # noqa: E402  (the function, not the module of the same name)

_SWEEP = ("search", "search_to_parquet", "count", "count_details")


def __getattr__(name):
    """The sweep API loads numba on first use, so `import rfsweep` (and the CLI) stays light."""
    if name in _SWEEP:
        from rfsweep import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module 'rfsweep' has no attribute {name!r}")


__all__ = ["analyze", "RFSweepError", "SpecError", "__version__", *_SWEEP]
