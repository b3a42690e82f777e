"""Strict YAML reading for configuration files: duplicate keys are errors, errors name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from approxtvm.errors import ApproxTvmError, ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""

    source_name: str = "<string>"
    error: type[ApproxTvmError] = ConfigError


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise loader.error(
                f"{loader.source_name}: duplicate key {key!r} (line {key_node.start_mark.line + 1})",
                expected="each key once per mapping",
                found=f"{key!r} first on line {seen[key]} and again on line {key_node.start_mark.line + 1}",
                fix=f"delete one of the two {key!r} entries",
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_strict_yaml(path: Path, error: type[ApproxTvmError] = ConfigError, what: str = "accelerator spec") -> Any:
    """Parse ``path`` as YAML; unreadable files, bad syntax and duplicate keys raise ``error``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(
            f"cannot read {what} {path}",
            found=str(exc),
            fix="pass an existing YAML file"
            + (" or a shipped spec name such as 'simba_like'" if what == "accelerator spec" else ""),
        ) from exc
    loader = _StrictLoader(text)
    loader.source_name = str(path)
    loader.error = error
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML", found=str(exc).splitlines()[0], fix="fix the YAML syntax") from exc
    finally:
        loader.dispose()
