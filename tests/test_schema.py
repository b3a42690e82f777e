"""The schema adapter: strict types, unknown keys and missing fields named with their full key path."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from approxtvm.errors import ApproxTvmError, ConfigError, PolicyError
from approxtvm.schema import OMIT, FieldHook, Invalid, Schema, check


@dataclass(frozen=True)
class Port:
    width_bits: int
    energy_pj: float = 1.0

    def __post_init__(self) -> None:
        check(self.width_bits > 0, "width_bits", "impossible width", expected="> 0", found=self.width_bits, fix="x")


@dataclass(frozen=True)
class Chip:
    name: str
    ports: tuple[Port, ...]
    node: tuple[int, int] = (0, 0)
    spare: Port | None = None


SCHEMA = Schema(ConfigError)


def _error(data: object, schema: Schema = SCHEMA) -> ApproxTvmError:
    with pytest.raises(ApproxTvmError) as exc:
        schema.structure(data, Chip, source="chip.yaml")
    assert "chip.yaml" in str(exc.value) and exc.value.expected and exc.value.fix
    return exc.value


def test_round_trip_and_defaults() -> None:
    chip = SCHEMA.structure({"name": "a", "ports": [{"width_bits": 8}]}, Chip, source="s")
    assert chip == Chip("a", (Port(8),))
    assert SCHEMA.structure(SCHEMA.unstructure(chip), Chip, source="s") == chip
    assert SCHEMA.unstructure(chip)["ports"] == [{"width_bits": 8, "energy_pj": 1.0}]  # lists, not tuples


@pytest.mark.parametrize(
    ("data", "key", "what"),
    [
        ({"name": "a", "ports": [], "nodes": [1, 2]}, "'nodes'", "did you mean 'node'"),
        ({"name": "a", "ports": [{"width_bits": 8}, {"width_bit": 8}]}, "'ports[1].width_bit'", "unknown key"),
        ({"name": "a", "ports": [{"energy_pj": 2.0}]}, "'ports[0].width_bits'", "missing field of Port"),
        ({"name": "a", "ports": [{"width_bits": "8 bits"}]}, "'ports[0].width_bits'", "units are in the key name"),
        ({"name": "a", "ports": [{"width_bits": True}]}, "'ports[0].width_bits'", "an integer"),
        ({"name": "a", "ports": [{"width_bits": 0}]}, "'ports[0].width_bits'", "impossible width"),
        ({"name": "a", "ports": [], "spare": {"width_bits": -1}}, "'spare.width_bits'", "impossible width"),
        ({"name": "a", "ports": [], "node": [1, 2, 3]}, "'node'", "wrong length"),
        ({"name": "a", "ports": "p"}, "'ports'", "a list"),
        ({"name": 7, "ports": []}, "'name'", "a string"),
        ({"name": "a", "ports": [3]}, "'ports[0]'", "a mapping for Port"),
    ],
)
def test_errors_name_the_key(data: object, key: str, what: str) -> None:
    err = _error(data)
    assert isinstance(err, ConfigError)
    assert key in str(err) and what in str(err)


def test_unknown_keys_are_reported_before_the_fields_they_leave_missing() -> None:
    err = _error({"name": "a", "ports": [{"widht_bits": 8}]})
    assert "'ports[0].widht_bits'" in str(err) and "did you mean 'width_bits'" in str(err)


def test_the_error_class_and_field_hooks_are_the_callers() -> None:
    def doubled(value: object, _: Schema) -> tuple[Port, ...]:
        if not isinstance(value, int):
            raise Invalid("not a count", expected="an integer", found=repr(value), fix="write a count", key="n")
        return (Port(8),) * value

    schema = Schema(PolicyError, hooks=(FieldHook(Chip, "ports", doubled),))
    assert schema.structure({"name": "a", "ports": 2}, Chip, source="s").ports == (Port(8), Port(8))
    err = _error({"name": "a", "ports": "two"}, schema)
    assert isinstance(err, PolicyError) and "'ports.n'" in str(err)


def test_top_level_non_mapping() -> None:
    assert "a mapping for Chip" in str(_error([1, 2]))


def test_fields_left_out_of_the_plain_data() -> None:
    # OMIT from a field's own hook (a default section), omit= from the whole object (keys written together)
    schema = Schema(
        ConfigError,
        hooks=(
            FieldHook(
                Chip, "spare", lambda v, s: s.convert(v, Port), lambda v, s: OMIT if v is None else s.unstructure(v)
            ),
            FieldHook(Chip, "node", lambda v, s: s.convert(v, tuple[int, int]), omit=lambda c: not c.ports),
        ),
    )
    bare = Chip("a", ())
    assert schema.unstructure(bare) == {"name": "a", "ports": []}
    assert schema.structure(schema.unstructure(bare), Chip, source="x") == bare
    full = Chip("b", (Port(8),), (1, 2), Port(4, 2.0))
    d = schema.unstructure(full)
    assert d["node"] == [1, 2] and d["spare"] == {"width_bits": 4, "energy_pj": 2.0}
    assert schema.structure(d, Chip, source="x") == full
