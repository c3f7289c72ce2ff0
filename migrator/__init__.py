"""migrator: move Exchange Online per-mailbox SendAs grants held by apps to RBAC for Applications."""

__version__ = "0.1.0"
