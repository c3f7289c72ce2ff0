"""PowerShell output: safe literals (quote.py) and a batch exported as an idempotent script (export.py)."""
