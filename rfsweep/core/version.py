"""rfsweep's version: the one place it is written (pyproject.toml reads it from here when the package is built).

Every layer that writes it into an output (Parquet metadata, manifests, exported code) imports it from
here, not from the package root: the root imports the layers. A constant, not
``importlib.metadata.version("rfsweep")``, which scanned the installed distributions on every start
(21 ms of the main job's ~0.5 s single-threaded start-up).
"""

__version__ = "0.7.0"
