"""Read the legacy grants into an inventory folder: from PowerShell exports (exports.py) or live (tenant.py).

store.py owns the folder format (INTERNALS.md §1) that the planner reads.
"""
