"""Where survivors go and how they come back: the batches a selection keeps, the one Parquet writer policy
(writer: statistics, page index, CRCs, row groups, encodings every reader decodes), the Parquet sink and
rfsweep's own encoder, datasets (parts and manifest), and selections over written outputs (ids, where,
top).

May import: rfsweep.engine, rfsweep.space, rfsweep.network, rfsweep.kernels, rfsweep.core.
"""
