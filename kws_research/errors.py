"""Errors a user can fix, reported as one line instead of a traceback."""

from __future__ import annotations


class KwsError(Exception):
    """Bad input or environment; the message names the file/key and what to do."""


class ConfigError(KwsError):
    """A configuration value is invalid; the message names the key."""

    def __init__(self, key: str, problem: str, hint: str = "") -> None:
        message = f"{key}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.key = key


def refuse_unknown_keys(prefix: str, given, known) -> None:
    """A settings block with a key its dataclass does not have: one line naming the first."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}", "no such key", f"keys: {', '.join(sorted(known))}")


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """``Type: message`` on one line; a long one keeps its start and its end, where
    TensorFlow and Keras put the actual cause."""
    text = f"{type(exc).__name__}: " + (" ".join(str(exc).split()) or type(exc).__name__)
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} ... {text[-(limit - head - 5) :]}"
