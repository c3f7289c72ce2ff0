"""SMTP AUTH as apps use it: a probe (probe.py) and the opt-in `verify-smtp` check of a batch (verify.py)."""
