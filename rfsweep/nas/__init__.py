"""NAS use: export chosen rows as PyTorch source, modules or JSONL specs, and the torch modules both are
built from (torch itself is imported lazily, only where a module is built).

May import: rfsweep.output and everything below it. Beside rfsweep.anchors, never importing it.
"""

from rfsweep.nas._suggest import Candidate, suggest

__all__ = ["Candidate", "suggest"]
