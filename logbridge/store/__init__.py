"""The store's own evidence: manifests, their chains, retention records (docs/tamper-evidence.md).

::

    digest      a staged file's SHA-256, line count and per-line digests, kept up to date as it grows
    manifest    the format: one canonical JSON header line + the line digests; hash, sign, parse
    layout      where manifests live in a store; partition path → stream key and partition time
    chain       a writer's streams: sequence numbers and heads, journaled in its state dir
    sealer      a filesystem sink's hook: seal a file at roll time, publish its manifest first
    retention   delete partitions past a destination's window, recorded in the chain
"""
