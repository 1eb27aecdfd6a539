"""Runs the kernels over a space: plans the work (tasks, shards, slabs), picks the device, counts
(dynamic programmes and pruned enumeration), selects (top-k, Pareto fronts, exact selections on spaces of
stages), samples uniformly, and steers long runs (progress, Ctrl-C).

May import: rfsweep.space, rfsweep.network, rfsweep.kernels, rfsweep.core. Never an output: batches
leave the engine as arrays.
"""
