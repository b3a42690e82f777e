"""Every pass under test runs inside WellFormedInstrument (as TVM's own pass tests do)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tvm
from tvm.relax.ir.instrument import WellFormedInstrument


@pytest.fixture(autouse=True)
def _well_formed() -> Iterator[None]:
    with tvm.transform.PassContext(instruments=[WellFormedInstrument()]):
        yield
