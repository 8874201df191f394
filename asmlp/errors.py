"""Error text for people: one line per failure (the app's status lines, problem lists, CLI messages)."""
from __future__ import annotations

__all__ = ['first_line']


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first line of ``error``'s message (its type name when the message is empty), cut to ``limit``."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ''
    return text.splitlines()[0][:limit]
