"""A sweep cut into shards (ranges of prefixes) and run where the user says: this process, local Dask
workers or a running scheduler. Plans, submits, retries and merges; never computes a metric.

May import: rfsweep.output and everything below it.
"""
