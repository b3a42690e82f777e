"""Run-time detection of the host CPU (never assume AVX-512)."""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuInfo:
    """What the kernels need to know about the host.

    Attributes
    ----------
    llvm_cpu
        LLVM's name of the host CPU (``znver4``, ``haswell``, ...); ``"generic"`` when unknown.
    avx2, avx512, vnni
        Instruction-set extensions (``avx512`` = AVX-512 F + BW + VL).
    machine
        ``platform.machine()``.
    """

    llvm_cpu: str
    avx2: bool
    avx512: bool
    vnni: bool
    machine: str

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly view."""
        return {
            "llvm_cpu": self.llvm_cpu,
            "avx2": self.avx2,
            "avx512": self.avx512,
            "vnni": self.vnni,
            "machine": self.machine,
        }


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_cpu() -> CpuInfo:
    """Detect the host CPU with LLVM (through TVM) or, without TVM, from ``/proc/cpuinfo``."""
    try:
        import tvm  # noqa: F401  (loads libtvm, which registers the LLVM host queries)
        import tvm_ffi

        name = str(tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUName")())
        feats_obj = tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUFeatures")()
        feats = {str(k) for k, v in feats_obj.items() if bool(v)}
        return CpuInfo(
            llvm_cpu=name or "generic",
            avx2="avx2" in feats,
            avx512={"avx512f", "avx512bw", "avx512vl"} <= feats,
            vnni="avx512vnni" in feats or "avxvnni" in feats,
            machine=platform.machine(),
        )
    except Exception:  # no TVM / no LLVM: fall back to the kernel's view
        flags = _cpuinfo_flags()
        return CpuInfo(
            llvm_cpu="generic",
            avx2="avx2" in flags,
            avx512={"avx512f", "avx512bw", "avx512vl"} <= flags,
            vnni="avx512_vnni" in flags or "avx_vnni" in flags,
            machine=platform.machine(),
        )
