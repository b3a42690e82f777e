"""The ``relax.ext.vacc`` BYOC backend as TVM backends register it: usable from any Relax pipeline.

Importing :mod:`approxtvm.targets.vacc` registers :func:`vacc_codegen` as ``relax.ext.vacc``, so
``partition_for_vacc`` → ``RunCodegen`` (or ``relax.build``) → ``relax.VirtualMachine`` works with
TVM's own API. The codegen lowers each offloaded function to a :class:`LayerSchedule` and emits,
per function, a small C entry point (a ``CSourceModule`` that ``relax.build`` compiles and
``export_library`` links) holding the layer as one embedded blob: schedule, accelerator spec,
weight and bias codes. At run time the entry calls the global ``approxtvm.vacc.execute`` with the
blob, which the runtime (:mod:`approxtvm.runtime.vacc_calls`) decodes once and executes
bit-exactly. A library exported this way therefore runs in a new process once ``approxtvm`` is
imported, and says so if it is not.

``compile_onnx`` does not use this path: it lowers in-process through
:class:`approxtvm.targets.vacc.codegen.CodegenSession` and keeps its layers in Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import tvm_ffi
from tvm import relax

from approxtvm.errors import ApproxTvmError, ScheduleError, ensure_ffi_errors
from approxtvm.targets.vacc.codegen import CODEGEN_NAME, MultiplierInfo, lower_function
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.layer_blob import pack_layer
from approxtvm.targets.vacc.partition import ACCELERATOR_ATTR

#: Global function the emitted C entries call: ``(symbol, blob pointer, blob bytes, *DPS tensors)``.
EXECUTE_NAME = "approxtvm.vacc.execute"
DEFAULT_ACCELERATOR = "simba_like"
_MAX_ARGS = 14  # DPS tensors of one layer call: inputs and outputs (today at most 1 + 2)

_C_PRELUDE = r"""#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
/* The TVM FFI C ABI (tvm/ffi/c_api.h), declared here so the file compiles without TVM headers. */
typedef struct {
  int32_t type_index; uint32_t pad;
  union { int64_t v_int64; void* v_ptr; const char* v_c_str; };
} VaccAny;
typedef struct { const char* data; size_t size; } VaccBytes;
int TVMFFIFunctionGetGlobal(const VaccBytes* name, void** out);
int TVMFFIFunctionCall(void* func, VaccAny* args, int32_t num_args, VaccAny* result);
void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message);
static void* vacc_execute = 0;
static int vacc_call(const char* symbol, const char* blob, int64_t size,
                     const VaccAny* args, int32_t n, VaccAny* ret) {
  VaccAny a[%(max_args)d + 3];
  if (n > %(max_args)d) {
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", "vacc: too many tensors in one layer call");
    return -1;
  }
  if (!vacc_execute) {
    VaccBytes name = {"%(execute)s", %(execute_len)d};
    if (TVMFFIFunctionGetGlobal(&name, &vacc_execute) != 0) return -1;
    if (!vacc_execute) {
      TVMFFIErrorSetRaisedFromCStr("RuntimeError",
        "this module offloads layers to the approxtvm vacc accelerator, but %(execute)s is not registered: "
        "`import approxtvm.targets.vacc` in this process before running it");
      return -1;
    }
  }
  a[0].type_index = 8; a[0].pad = 0; a[0].v_c_str = symbol;        /* kTVMFFIRawStr */
  a[1].type_index = 4; a[1].pad = 0; a[1].v_ptr = (void*)blob;     /* kTVMFFIOpaquePtr */
  a[2].type_index = 1; a[2].pad = 0; a[2].v_int64 = size;          /* kTVMFFIInt */
  for (int32_t i = 0; i < n; ++i) a[i + 3] = args[i];
  return TVMFFIFunctionCall(vacc_execute, a, n + 3, ret);
}
"""

_C_ENTRY = r"""static const char %(sym)s_blob[] =
%(literal)s;
int __tvm_ffi_%(sym)s(void* self, const VaccAny* args, int32_t n, VaccAny* ret) {
  return vacc_call("%(sym)s", %(sym)s_blob, (int64_t)(sizeof(%(sym)s_blob) - 1), args, n, ret);
}
"""

_C_END = """#ifdef __cplusplus
}
#endif
"""


def _c_literal(blob: bytes, width: int = 96) -> str:
    """``blob`` as adjacent C string literals of octal escapes (unambiguous, NUL-safe)."""
    esc = "".join(f"\\{b:03o}" for b in blob)
    step = width * 4
    return "\n".join(f'  "{esc[i : i + step]}"' for i in range(0, max(len(esc), 1), step)) or '  ""'


def c_source(layers: list[tuple[str, bytes]]) -> str:
    """C source of the entry points of ``(symbol, blob)`` layers."""
    parts = [_C_PRELUDE % {"max_args": _MAX_ARGS, "execute": EXECUTE_NAME, "execute_len": len(EXECUTE_NAME)}]
    for sym, blob in layers:
        parts.append(_C_ENTRY % {"sym": sym, "literal": _c_literal(blob)})
    parts.append(_C_END)
    return "\n".join(parts)


# ---------------------------------------------------------------------------- the codegen
def _accelerator_of(func: relax.Function) -> AcceleratorSpec:
    value = str(func.attrs.get(ACCELERATOR_ATTR, DEFAULT_ACCELERATOR)) if func.attrs else DEFAULT_ACCELERATOR
    if value.lstrip().startswith("{"):
        return AcceleratorSpec.from_dict(json.loads(value), "vacc.accelerator attribute")
    return AcceleratorSpec.load(value)


def _resolver(spec: AcceleratorSpec) -> Callable[[str, bool], MultiplierInfo]:
    from approxtvm.runtime.multipliers.resolver import MultiplierResolver  # imported on first codegen

    return MultiplierResolver(spec).info


def vacc_codegen(functions: list[relax.Function], options: Any, constant_names: Any) -> list[Any]:
    """``relax.ext.vacc``: lower every offloaded function and emit its C entry point."""
    ensure_ffi_errors()
    layers = []
    specs: dict[str, tuple[AcceleratorSpec, Callable[[str, bool], MultiplierInfo]]] = {}
    for index, func in enumerate(functions):
        key = str(func.attrs.get(ACCELERATOR_ATTR, DEFAULT_ACCELERATOR))
        if key not in specs:
            spec = _accelerator_of(func)
            specs[key] = (spec, _resolver(spec))
        spec, resolve = specs[key]
        lowered = lower_function(func, spec, resolve)
        layers.append((lowered.schedule.symbol, pack_layer(lowered, spec, index)))
    if not layers:
        return []
    make = tvm_ffi.get_global_func("runtime.CSourceModuleCreate")
    return [make(c_source(layers), "c", [sym for sym, _ in layers], [])]


def _execute(symbol: str, blob: Any, size: int, *tensors: Any) -> None:
    # imported on first use: the runtime is not needed to compile, only to run
    from approxtvm.runtime.vacc_calls import execute

    try:
        execute(symbol, blob, size, *tensors)
    except ApproxTvmError:
        raise
    except Exception as exc:  # a user running a VM sees one project error, not a numpy traceback
        raise ScheduleError(
            f"offloaded layer {symbol} failed",
            expected="a layer call with the tensors its schedule describes",
            found=f"{type(exc).__name__}: {exc}",
            fix="rebuild the module with the installed approxtvm; report the model if it persists",
        ) from exc


def register() -> None:
    """Register ``relax.ext.vacc`` and the runtime entry (idempotent; done on import of the target)."""
    ensure_ffi_errors()
    tvm_ffi.register_global_func(CODEGEN_NAME, vacc_codegen, override=True)
    tvm_ffi.register_global_func(EXECUTE_NAME, _execute, override=True)
