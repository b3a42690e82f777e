"""Turn failures inside TVM into project errors that name the ONNX node and say what to do.

Every compilation phase runs through :func:`phase`; the Relax ONNX import runs through
:func:`import_onnx`, which also finds the ONNX node the importer was converting when it failed.
"""

from __future__ import annotations

import contextlib
import io
import types
from collections.abc import Callable
from typing import Any, TypeVar

import onnx

from approxtvm.errors import ApproxTvmError, CompileError, ModelError, ensure_ffi_errors

T = TypeVar("T")

#: What the user can do when a phase fails, per phase.
_FIXES = {
    "prepare": "check the model with onnx.checker and onnxruntime; re-export it with opset 13–20",
    "annotate": "report this model; meanwhile check the policy's layer names (`approxtvm inspect MODEL`)",
    "bind": "report this model",
    "partition": "report this model; meanwhile keep the layer named in the error on the host with a "
    "policy rule `host: [<node name>]`",
    "codegen": "keep the named layer on the host with a policy rule `host: [<node name>]` and report it",
    "build": "report this model; meanwhile keep recently changed layers on the host (policy `host:` list)",
}


def _summary(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    # TVM's messages end with the useful line after a C++ backtrace
    msg = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {msg[:400]}"


def phase(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one compilation phase; any non-project exception becomes a :class:`CompileError`."""
    ensure_ffi_errors()
    try:
        return fn(*args, **kwargs)
    except ApproxTvmError:
        raise
    except Exception as exc:  # TVM raises InternalError, TVMError, ValueError, AssertionError...
        raise CompileError(
            f"compilation failed in the {name} phase",
            expected=f"the {name} phase to accept the model",
            found=_summary(exc),
            fix=_FIXES.get(name, "report this model"),
        ) from exc


def _failing_node(tb: types.TracebackType | None) -> onnx.NodeProto | None:
    """The ONNX node the Relax importer was converting (a local of its node loop)."""
    node = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("_construct_nodes", "_convert_subgraph"):
            cand = tb.tb_frame.f_locals.get("node")
            if isinstance(cand, onnx.NodeProto):
                node = cand
        tb = tb.tb_next
    return node


def import_onnx(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> Any:
    """``from_onnx`` with weights kept as parameters; a failure names the ONNX node.

    Raises
    ------
    ModelError
        The importer rejected a node (its name and op type are in the message).
    """
    from tvm.relax.frontend.onnx import from_onnx

    ensure_ffi_errors()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its own partial report
            return from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    except ApproxTvmError:
        raise
    except Exception as exc:  # the importer raises many types; the user needs one clear message
        node = _failing_node(exc.__traceback__)
        where = f"node {node.name!r} ({node.op_type})" if node is not None else "the model"
        raise ModelError(
            f"the Relax ONNX importer rejected {where}",
            expected="an ONNX node the importer can convert (static shapes, supported attributes)",
            found=_summary(exc),
            fix="simplify or re-export this part of the model (opset 13–20, static shapes); "
            "if the node is valid ONNX, report it",
        ) from None
