"""`migrator grant` / `migrator revoke`: the exact incremental change to a migrated app's RBAC setup.

setup.py (the tenant's RBAC-for-Applications setup as read by `audit.observed.read_observed`, pure), incremental.py
(the smallest exact change for one request, its simulation and the drift check, pure), folder.py (the change as a
plan folder in `migrator plan`'s shape, and back). The executor side is migrator/executor/change.py.
"""
