"""The virtual approximate accelerator ``vacc``: specs, patterns, partitioning, mapping, codegen.

Importing this package registers the ``relax.ext.vacc`` BYOC codegen (as TVM's own backends do),
so a module partitioned with :func:`partition_for_vacc` builds with ``relax.build`` and runs in
``relax.VirtualMachine``; see :mod:`approxtvm.targets.vacc.byoc`.
"""

from __future__ import annotations

from approxtvm.targets.vacc import byoc as _byoc
from approxtvm.targets.vacc.partition import partition_for_vacc

_byoc.register()

__all__ = ["partition_for_vacc"]
