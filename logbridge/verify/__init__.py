"""``logbridge verify``: prove a store is the trail that arrived (docs/tamper-evidence.md).

scan (list the store) → check (hash files, compare manifests, follow chains; localize changed
lines) → findings (what is tampering, what is a notice) → command (text, JSON, exit code).
"""
