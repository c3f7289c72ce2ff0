"""The planner: inventory in, plan folder out; pure (no tenant I/O).

source.py (inventory folder or grants CSV) -> cover.py/exact.py (fewest exact groups) -> reuse.py (existing groups,
attribute values) -> batches.py (pilot, waves) -> naming.py -> build.py (scopes, assignments, grants) -> plan.py
(write, load, check_exact). opath.py quotes and fills in OPATH filters. See docs/INTERNALS.md §6.
"""
