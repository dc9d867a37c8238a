"""Warnings that point at the user's line, however deep in the library they are raised."""

from __future__ import annotations

import os
import sys
import warnings

import requests
import urllib3

__all__ = ["warn"]

# Frames in these directories are skipped: the warning belongs to the first caller outside them,
# whether the user called us directly or through requests' Session.get.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(module_file)) + os.sep
    for module_file in (__file__, requests.__file__, urllib3.__file__)
    if module_file is not None
)


def warn(message: str, category: type[Warning]) -> None:
    """Emit ``message`` as ``category`` attributed to the first frame outside this library.

    A fixed ``stacklevel`` is wrong as soon as a call path gets one frame deeper
    (``get_session`` and ``default_session`` reach the same code at different depths);
    ``skip_file_prefixes`` would do this but is Python 3.12+ only.
    """
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
