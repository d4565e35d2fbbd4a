"""The exceptions convscope raises for things a person can fix.

Every message is written for the person who typed the command: what was wrong
and what to do about it. The command line prints it as one line and exits 2
(`CONVSCOPE_DEBUG=1` shows the traceback instead); the server answers 4xx.
"""
from __future__ import annotations


class ConvscopeError(Exception):
    """Base class: a mistake the user can fix; the message says how."""


class UserError(ConvscopeError, ValueError):
    """A bad argument, option or request (a number out of range, an unknown name)."""


class RunError(ConvscopeError, ValueError):
    """A run folder that is missing, incomplete, corrupt, locked or in the way."""


class DataError(ConvscopeError, ValueError):
    """A dataset or image that cannot be read or does not fit the model."""


class ImageTooLarge(DataError):
    """An image over `convscope.limits.MAX_IMAGE_PIXELS` (refused before it is decoded)."""


def one_line(message: object) -> str:
    """A message as the one line the command line prints (newlines folded, long tails cut)."""
    text = " ".join(str(message).split())
    return text if len(text) <= 600 else text[:597] + "..."
