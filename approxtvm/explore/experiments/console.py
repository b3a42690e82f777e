"""Progress lines of the experiments (a ``rich`` console, or silence)."""

from __future__ import annotations

from typing import Any


def say(console: Any, text: str) -> None:
    """Print ``text`` on ``console`` unless it is ``None`` (the API's silent default)."""
    if console is not None:
        console.print(text)
