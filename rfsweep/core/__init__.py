"""The floor every layer stands on: errors (one line naming the field and the value), number formatting,
file paths (reading inputs, writing outputs atomically) and the package version.

Imports nothing from rfsweep; every other layer may import it.
"""
