"""rfsweep: exact receptive-field arithmetic and Numba-accelerated architecture sweeps.

The Python API, above every layer it calls (``rfsweep.cli`` is the only thing above it):

* ``rfsweep.analyze(model)``: the per-layer table of one network (rfsweep.network);
* ``rfsweep.search(...)``, ``search_to_parquet``, ``count``, ``count_details``: sweeps (rfsweep.api);
* ``rfsweep.from_onnx``, ``from_torch``: importers (rfsweep.network.importers);
* ``rfsweep.torch.build``: candidates as PyTorch modules (rfsweep.nas).

The layers, bottom to top: ``core`` < ``kernels`` < ``network`` < ``space`` < ``engine`` < ``output`` <
``nas`` | ``anchors`` < ``distributed`` < the API < ``cli``; each imports only those below it (the
import-linter contract in pyproject.toml, checked in CI).
"""


def _source_checkout_aliases() -> None:
    """Make a source checkout importable like the installed package.

    The design card keeps the numba code in a top-level kernels/ folder and the zoo in data/; the
    wheel installs them as rfsweep.kernels and rfsweep._data. When Python picks up ./rfsweep from a
    checkout (``python -c`` in the repository root, even with the package installed), those two are
    not inside it: load them from the folders beside it under their installed names.
    """
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    for name, folder in (("kernels", "kernels"), ("_data", "data")):
        full = f"rfsweep.{name}"
        init = os.path.join(root, folder, "__init__.py")
        if full in sys.modules or not os.path.isfile(init):
            continue
        found = importlib.util.find_spec(full)
        origin = os.path.abspath(found.origin) if found is not None and found.origin else None
        # an installed wheel's own copy (inside this package) or this very folder is imported as usual; an
        # editable install of another checkout (a git worktree beside this one) must not lend its kernels
        # to this checkout's rfsweep
        if found is not None and (origin is None or origin == init or origin.startswith(here + os.sep)):
            continue
        spec = importlib.util.spec_from_file_location(full, init, submodule_search_locations=[os.path.dirname(init)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)


_source_checkout_aliases()

from rfsweep.core.errors import RFSweepError, SpecError  # noqa: E402
from rfsweep.core.version import __version__  # noqa: E402
from rfsweep.network.zoo import analyze  # noqa: E402

_SWEEP = ("search", "search_to_parquet", "count", "count_details")
_IMPORTERS = ("from_onnx", "from_torch")


def __getattr__(name):
    """The sweep API loads numba, the importers onnx (and torch), on first use: `import rfsweep` stays light."""
    if name in _SWEEP:
        from rfsweep import api as sweep

        return getattr(sweep, name)
    if name in _IMPORTERS:
        from rfsweep.network import importers

        return getattr(importers, name)
    raise AttributeError(f"module 'rfsweep' has no attribute {name!r}")


__all__ = ["analyze", "RFSweepError", "SpecError", "__version__", *_SWEEP, *_IMPORTERS]
