"""Exchange Online cmdlets of the sandbox: one function per cmdlet, registered by name (docs/exchange.md §3).

Parameter names, output field names and error types are Microsoft's. Faithfully modelled hazards:
- the Get-* cmdlets in `RETURNS_ALL_ON_BAD_IDENTITY` return every object for a $null, empty or unknown -Identity;
- -ResultSize defaults to 1000 rows (with Exchange's warning) unless `Unlimited` or a number is given;
- a just-created group is invisible to other cmdlets for `settings.replication_delay` seconds, yet New- of the
  same name already fails;
- `-Exclusive` scopes are accepted but do not restrict apps; a scope in use cannot be removed.
Every write records the access it changes in the timeline (state.sync_access).

Modules: base (binding, registry, rows), recipients, permissions, groups, rbac, aap (Application Access
Policies). Importing this package registers
every cmdlet.
"""

from migrator.sandbox.cmdlets import aap, groups, permissions, rbac, recipients  # noqa: F401 - registers them
from migrator.sandbox.cmdlets.base import (
    DEFAULT_RESULT_SIZE,
    MAX_UPDATE_MEMBERS,
    RESULT_SIZE_WARNING,
    RETURNS_ALL_ON_BAD_IDENTITY,
    CmdletError,
    Params,
    is_write,
    registry,
    run_cmdlet,
)

__all__ = ["DEFAULT_RESULT_SIZE", "MAX_UPDATE_MEMBERS", "RESULT_SIZE_WARNING", "RETURNS_ALL_ON_BAD_IDENTITY",
           "CmdletError", "Params", "is_write", "registry", "run_cmdlet"]
