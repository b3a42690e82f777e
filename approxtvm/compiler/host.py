"""The host CPU as an llvm target (detected, never assumed: AVX-512 on some machines, AVX2 on others)."""

from __future__ import annotations

import os

import tvm
import tvm_ffi


def host_cpu_name() -> str:
    """LLVM's name for this CPU (``znver4``, ``znver3``, ``skylake-avx512`` ...)."""
    return str(tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUName")())


def host_target() -> tvm.target.Target:
    """llvm target for this CPU with all its cores (0.27 rejects CLI strings: dict form)."""
    return tvm.target.Target({"kind": "llvm", "mcpu": host_cpu_name(), "num-cores": os.cpu_count() or 1})
