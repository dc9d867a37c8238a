"""Exception and warning hierarchy.

Every error raised by session_presets derives from :class:`SessionPresetsError`.
Errors that a request can raise also derive from the requests exception a caller
already catches, so ``except requests.RequestException`` keeps working.
"""

from __future__ import annotations

import requests
from urllib3.exceptions import InsecureRequestWarning

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "DestinationInUseError",
    "DiskFullError",
    "ForeignAdapterWarning",
    "IdentifierInUseError",
    "InsecureRedirectError",
    "InsecureSessionWarning",
    "InvalidationTimeoutError",
    "RateLimitedError",
    "SessionInvalidatedError",
    "SessionPresetsError",
    "SessionPresetsWarning",
    "SessionReuseError",
    "SessionReuseWarning",
    "SharedSessionError",
    "TotalTimeoutError",
    "TransferError",
    "UnknownPresetError",
    "UnknownVariableWarning",
]


def add_note(exc: BaseException, note: str) -> None:
    """Attach ``note`` to ``exc`` where a traceback shows it, on every supported Python.

    From Python 3.11 this is ``exc.add_note(note)``. Python 3.10 has no notes
    and its tracebacks ignore ``__notes__``, so there the note is also added to
    the exception's arguments, which its message shows; the arguments that
    were there stay first, in place.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(note)
        return
    notes = getattr(exc, "__notes__", None)
    exc.__notes__ = [*(notes if isinstance(notes, list) else []), note]  # type: ignore[attr-defined]
    exc.args = (*exc.args, note)


class SessionPresetsError(Exception):
    """Base class of every error raised by session_presets."""


class ConfigError(SessionPresetsError, ValueError):
    """A preset field, factory argument or environment variable is invalid.

    The message names the field or variable, the value given and the accepted form.
    When several environment variables are bad, ``problems`` lists one line each.

    Attributes:
        field: the field (or ``field[key]`` of a mapping) that was refused, if one was.
        value: the value given, URL passwords masked.
        expected: the accepted form of the field.
        reason: what was wrong, without the field and the value (``"expected ..."``
            for a value of the wrong form); the whole message when no field is named.
        problems: one line per problem (several for the environment).
    """

    def __init__(
        self,
        message: str,
        *,
        problems: list[str] | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]
        self.field = field
        self.value = value
        self.expected = expected
        self.reason: str = reason if reason is not None else message


class UnknownPresetError(ConfigError, KeyError):
    """No preset has the requested name; the message suggests the nearest one."""

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class SessionInvalidatedError(SessionPresetsError, requests.RequestException):
    """The session was invalidated: it refuses new requests, or cancelled this one."""


class SharedSessionError(SessionPresetsError, AttributeError):
    """A shared (registry) session's configuration was changed: it is read-only.

    Every module of the process holds the same shared session, so a header, an
    ``auth`` or a mounted adapter set by one would be sent by all. Configure
    shared sessions with ``register_preset(...)``, or build a private one with
    ``default_session(...)``.
    """


class TotalTimeoutError(SessionPresetsError, requests.Timeout):
    """A call ran past its ``total_timeout`` deadline (retries and body included)."""


class BodyReadTimeoutError(SessionPresetsError, requests.ReadTimeout, requests.ConnectionError):
    """The response body stopped arriving for ``read_timeout`` after the headers came.

    Plain requests reports this as a ``ConnectionError`` ("Read timed out"); it is a
    ``ReadTimeout`` here, as for a response head that never comes, and still a
    ``ConnectionError`` for code written against requests (as requests' own
    ``ConnectTimeout`` is both).
    """


class _OriginRefusedError(SessionPresetsError, requests.ConnectionError):
    """A call refused for its origin before anything was sent: the common part of the two errors below.

    Attributes:
        origin: ``scheme://host:port`` of the refused call.
        preset: the preset whose breaker or limit refused it.
        state: what holds the call (see each subclass).
        retry_at: when the origin lets calls through again (``time.time()`` seconds).
    """

    def __init__(
        self, message: str, *, origin: str, preset: str, state: str, retry_at: float, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)
        self.origin = origin
        self.preset = preset
        self.state = state
        self.retry_at = retry_at


class CircuitOpenError(_OriginRefusedError):
    """The circuit breaker of the origin is open: the call was refused at once, nothing was sent.

    Attributes:
        origin: ``scheme://host:port`` of the refused call.
        preset: the preset whose breaker is open.
        state: ``"open"``, or ``"half-open"`` when every probe slot is taken.
        retry_at: when the origin lets calls through again (``time.time()`` seconds).
    """


class RateLimitedError(_OriginRefusedError):
    """No rate-limit permit (or end of a Retry-After pause) fits in the call's deadline; nothing was sent.

    Attributes:
        origin: ``scheme://host:port`` of the refused call.
        preset: the preset whose limit refused it.
        state: what holds the call: ``"rate limit 10/s"`` or ``"a Retry-After pause"``.
        retry_at: when a permit is expected to be free (``time.time()`` seconds).
    """


class InsecureRedirectError(SessionPresetsError, requests.exceptions.InvalidURL):
    """A redirect from https to http was refused (see ``allow_insecure_redirects``)."""


class TransferError(SessionPresetsError, requests.RequestException):
    """A background transfer or its journal failed; the message names the file."""


class IdentifierInUseError(TransferError):
    """Another live process holds the background session identifier."""


class DestinationInUseError(TransferError):
    """Another task (in this process or another) is writing the same destination file."""


class DiskFullError(TransferError):
    """Writing a download failed for lack of space (ENOSPC, EFBIG, EDQUOT).

    The ``.part`` file and the journal are kept, so the next run resumes.
    """


class InvalidationTimeoutError(SessionPresetsError, TimeoutError):
    """finish_tasks_and_invalidate timed out; the session stays invalidating."""


class SessionReuseError(SessionPresetsError):
    """Strict reuse mode: too many caller-owned sessions of one preset were created."""


class SessionPresetsWarning(UserWarning):
    """Base class of every warning emitted by session_presets."""


class SessionReuseWarning(SessionPresetsWarning):
    """Many short-lived sessions of one preset were created: use ``get_session``."""


class ForeignAdapterWarning(SessionPresetsWarning):
    """An adapter that is not a PresetAdapter was mounted on a PresetSession.

    The preset's default headers still apply, but its timeouts, retries,
    total_timeout enforcement, shared TLS context and statistics do not reach
    requests sent through that adapter. Subclass ``PresetAdapter`` to keep them.
    """


class UnknownVariableWarning(SessionPresetsWarning):
    """A ``SESSION_PRESETS_*`` variable matches no preset and field."""


class InsecureSessionWarning(SessionPresetsWarning, InsecureRequestWarning):
    """A session was built with ``verify=False``; emitted once per session."""
