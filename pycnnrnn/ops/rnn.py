"""rnn ops (numpy in/out)."""

from __future__ import annotations

__all__: list[str] = []
