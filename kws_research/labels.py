"""The two class names every task has besides its command words.

A bottom module: data, models (the open-set gate), metrics and export all name
these classes without importing each other.
"""

from __future__ import annotations

SILENCE = "silence"
UNKNOWN = "unknown"


def is_command(label: str) -> bool:
    """Whether ``label`` names a command word (neither silence nor unknown)."""
    return label not in (SILENCE, UNKNOWN)
