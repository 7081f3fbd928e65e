"""How the command-line tools talk to their user: progress lines on stderr (so stdout stays the
result), and user mistakes as one clear line with exit code 2 instead of a stack trace."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from .adapter import AdapterFormatError
from .model_loading import ModelNotAvailableError

# Errors a user can cause and fix (bad paths, bad files, missing models); anything else is a bug
# and keeps its traceback.
USER_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError, ModelNotAvailableError, AdapterFormatError, ValueError)


def say(message: str) -> None:
    """One progress line on stderr, flushed at once (long benchmarks print while they run)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
