"""One network, exactly: specs and their files, the per-layer arithmetic (rf, jump, offsets, out size,
params, MACs), analysis, the effective receptive field, reports, the zoo and the importers (ONNX,
PyTorch).

May import: rfsweep.core and rfsweep.kernels (the shared cost formulas). Never a space, the engine or
an output.
"""
