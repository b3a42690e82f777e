"""Error hierarchy: every error the project raises derives from :class:`ApproxTvmError`.

Each error says what happened, what was expected, what was found and how to fix it, so a user
never has to read a traceback from deep inside TVM or numpy.
"""

from __future__ import annotations


class ApproxTvmError(Exception):
    """Base class of all approxtvm errors.

    Parameters
    ----------
    what
        One sentence: what went wrong (name the file, key or layer).
    expected
        What the tool expected.
    found
        What it found instead.
    fix
        How the user can fix it.
    """

    def __init__(self, what: str, *, expected: str = "", found: str = "", fix: str = "") -> None:
        self.what, self.expected, self.found, self.fix = what, expected, found, fix
        parts = [what]
        if expected:
            parts.append(f"expected: {expected}")
        if found:
            parts.append(f"found: {found}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("\n  ".join(parts))


class ModelError(ApproxTvmError):
    """The ONNX model is missing, malformed or uses unsupported operators."""


class UnsupportedOperatorError(ModelError):
    """One or more ONNX operators cannot be imported (all are listed at once)."""


class PolicyError(ApproxTvmError):
    """An approximation policy (object or YAML file) is invalid."""


class ConfigError(ApproxTvmError):
    """A configuration file (accelerator YAML, energy table) is invalid."""


class MultiplierError(ApproxTvmError):
    """A multiplier table, C model or name is invalid or cannot be found."""


class DataError(ApproxTvmError):
    """A dataset or an input tensor does not match what the model expects."""


class ScheduleError(ApproxTvmError):
    """A layer schedule is invalid (tile exceeds capacity, loop bounds do not cover the layer)."""


class CompressionError(ApproxTvmError):
    """A compressed weight blob is corrupted or truncated."""


class CompileError(ApproxTvmError):
    """A compilation phase (import, partition, codegen, host build) failed inside TVM."""


class ExplorationError(ApproxTvmError):
    """An exploration run cannot start or resume."""


class TrainingError(ApproxTvmError):
    """Fine-tuning cannot run (missing ``train`` extra, bad options, incompatible checkpoint)."""


def ensure_ffi_errors() -> None:
    """Let our errors cross TVM's FFI with their type (idempotent).

    An exception raised inside a Python pass returns through TVM's C++ pass manager; unless
    its class is known to ``tvm_ffi`` it comes back as a bare ``RuntimeError``. Called by the
    passes and the codegen before they run, never at import.
    """
    import tvm_ffi

    for cls in (ApproxTvmError, *_all_subclasses(ApproxTvmError)):
        tvm_ffi.register_error(cls)


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out
