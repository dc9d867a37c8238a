"""Testing support: a real loopback HTTP server for your tests, a process-state reset and a pytest plugin.

``import session_presets`` never imports this package; import it from tests::

    from session_presets.testing import MockResponse, MockServer, ResumableUploadRoute, reset

With the ``testing`` extra installed (``pip install 'session-presets[testing]'``,
which brings trustme for HTTPS), pytest picks up the plugin by itself and
offers the fixtures ``mock_server``, ``mock_tls_server`` and
``session_presets_isolation`` (see :mod:`session_presets.testing.plugin`).
"""

from __future__ import annotations

from ._reset import reset
from ._resumable import ResumableUpload, ResumableUploadRoute
from ._server import Exchange, Fault, FileRoute, Headers, MockResponse, MockServer, RecordedRequest

__all__ = [
    "Exchange",
    "Fault",
    "FileRoute",
    "Headers",
    "MockResponse",
    "MockServer",
    "RecordedRequest",
    "ResumableUpload",
    "ResumableUploadRoute",
    "reset",
]
