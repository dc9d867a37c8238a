"""Every place the package stands in for, or reaches into, requests, urllib3, http.client or ssl.

Two kinds of code live here (docs/fast-path.md explains both):

- **The fast path**: copies of upstream functions, trimmed of work a preset
  session never needs, and memos of their results. Each copy is a
  :class:`Replaced` entry naming the upstream function, a fingerprint of its
  source, and the versions it was checked against. The fast path turns on at
  first use only when every fingerprint matches the installed code and
  ``SESSION_PRESETS_FAST_PATH`` is not ``off``; otherwise the package calls
  upstream's own methods (``super()``), correct and slower. A function patched
  at run time (a mock, a recorder, a tracer) is always called: a copy runs
  only while the function it stands in for is still the one fingerprinted
  (:meth:`Replaced.live`), looked at once per call of a PresetSession
  (:func:`begin_call`) and before each use elsewhere.
- **Hooks**: private upstream internals that a feature needs (TLS session
  resumption through ``ssl.SSLSocket._create``, the pool's queue). Each is
  detected when first needed; where it is missing the feature falls back to
  what upstream does on its own, and :func:`hooks_in_use` says so.

A fingerprint is the SHA-256 of the function's source with its indentation,
blank lines and whole-line comments removed (:func:`fingerprint`): any other
change to the function, a new check or a new header, changes it.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import contextvars
import hashlib
import http.client
import http.cookiejar
import importlib
import inspect
import linecache
import operator
import os
import ssl
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import requests
import requests.models
import requests.sessions
from requests.cookies import RequestsCookieJar, cookiejar_from_dict, merge_cookies
from requests.models import PreparedRequest, Response
from requests.sessions import merge_hooks, preferred_clock
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, resolve_proxies
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    InvalidHeader,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import HTTPError as _HTTPError
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError
from urllib3.util import Timeout

from . import _process
from ._calls import current_call

__all__ = [
    "FAST_PATH_VARIABLE",
    "HOOKS",
    "REPLACED",
    "GateState",
    "LRUMemo",
    "Replaced",
    "ResumingSSLSocket",
    "fingerprint",
    "gate",
    "hook_disabled",
    "hook_enabled",
]

#: The environment variable that forces the fallback: ``off`` (or 0/false/no).
FAST_PATH_VARIABLE: Final = "SESSION_PRESETS_FAST_PATH"
_OFF_VALUES: Final = frozenset({"off", "0", "false", "no"})
_ON_VALUES: Final = frozenset({"", "on", "1", "true", "yes", "auto"})

#: The versions every fingerprint below was taken from and its copy checked against.
CHECKED_REQUESTS: Final = "requests 2.34.2"
CHECKED_URLLIB3: Final = "urllib3 2.8.0"
CHECKED_PYTHON: Final = "CPython 3.11"


def _last_line(code: types.CodeType) -> int:
    """The last source line of ``code`` and of the code objects nested in it."""
    positions = getattr(code, "co_positions", None)
    if positions is not None:  # Python 3.11+: where each instruction's expression ends
        ends: list[int] = [end for _, end, _, _ in positions() if end is not None]
    else:
        ends = [line for _, _, line in code.co_lines() if line is not None]
    nested = [_last_line(const) for const in code.co_consts if isinstance(const, types.CodeType)]
    last: int = max([code.co_firstlineno, *ends, *nested])
    return last


def _source(target: Any) -> str | None:
    """The source lines of a function, from its first line (decorators included) to its last expression.

    What inspect.getsource returns, minus trailing comments, without tokenizing
    the module (which costs tens of milliseconds per function).
    """
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None
    return "".join(lines[code.co_firstlineno - 1 : _last_line(code)])


def fingerprint(function: Any) -> str | None:
    """The fingerprint of ``function``'s source (16 hex digits), or None when its source cannot be read.

    Indentation, blank lines, trailing spaces and whole-line comments do not
    count; everything else does.
    """
    target: Any = function.fget if isinstance(function, property) else function
    source = _source(getattr(target, "__func__", target))
    if not source:
        return None
    lines = (line.rstrip() for line in textwrap.dedent(source).splitlines())
    kept = "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return hashlib.sha256(kept.encode("utf-8")).hexdigest()[:16]


def _resolve(module: str, qualname: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) of ``module.qualname``."""
    owner: Any = importlib.import_module(module)
    *path, attribute = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attribute, getattr(owner, attribute)


class Replaced:
    """One upstream function the fast path stands in for.

    Args:
        module, qualname: where the upstream function lives (``requests.sessions``, ``Session.send``).
        fingerprints: the fingerprints of the sources the copy was checked against.
        checked_against: those versions, for a reader.
        used_by: where the copy runs, for a reader.
        standalone: the copy stands alone (the header-line memo and the standard library's
            putheader, whose source changes with the Python version): a mismatch turns off this
            copy only, not the whole fast path.
    """

    __slots__ = (
        "attribute", "checked_against", "fingerprints", "module", "original", "owner", "qualname", "standalone",
        "used_by",
    )

    def __init__(
        self,
        module: str,
        qualname: str,
        fingerprints: frozenset[str],
        checked_against: str,
        used_by: str,
        *,
        standalone: bool = False,
    ) -> None:
        self.standalone = standalone
        self.module = module
        self.qualname = qualname
        self.fingerprints = fingerprints
        self.checked_against = checked_against
        self.used_by = used_by
        self.owner, self.attribute, self.original = _resolve(module, qualname)

    @property
    def name(self) -> str:
        """The upstream function's dotted name."""
        return f"{self.module}.{self.qualname}"

    def current(self) -> Any:
        """The upstream function as it is now (a runtime patch included)."""
        return getattr(self.owner, self.attribute, None)

    def live(self) -> bool:
        """Whether the copy may run now: the fast path is on and nobody patched the function since import.

        Inside a call (see :func:`begin_call`) this is the answer taken when the call began.
        """
        taken = _taken.get()
        if taken is not None:
            return self in taken
        return self.live_now()

    def live_now(self) -> bool:
        """live(), looked at now."""
        state = _gate
        if state is None:
            state = gate()
        return (
            state.active
            and getattr(self.owner, self.attribute, None) is self.original
            and not (self.standalone and self.name in state.mismatched)
        )

    def __repr__(self) -> str:
        return f"<Replaced {self.name}>"


def _fp(*values: str) -> frozenset[str]:
    return frozenset(values)


# -- what the fast path replaces ---------------------------------------------------------------
# Each entry: the upstream function, the fingerprints of the versions its copy was checked
# against, and where the copy is. Measured with fingerprint() on requests 2.34.2, urllib3 2.8.0,
# CPython 3.11.

_R = CHECKED_REQUESTS
_U = CHECKED_URLLIB3
_P = CHECKED_PYTHON

SESSION_REQUEST: Final = Replaced(
    "requests.sessions", "Session.request", _fp("6233d2812a027a99"), _R, "PresetSession.request (session_request)"
)
SESSION_PREPARE_REQUEST: Final = Replaced(
    "requests.sessions", "Session.prepare_request", _fp("792b70d6dca88ba4"), _R, "PresetSession.prepare_request"
)
SESSION_SEND: Final = Replaced(
    "requests.sessions", "Session.send", _fp("019a7b0db1da75e1"), _R, "PresetSession.send (session_send)"
)
SESSION_RESOLVE_REDIRECTS: Final = Replaced(
    "requests.sessions", "Session.resolve_redirects", _fp("67e3dfda5416ced5"), _R,
    "PresetSession.resolve_redirects: nothing to follow without a redirect target",
)
SESSION_REDIRECT_TARGET: Final = Replaced(
    "requests.sessions", "Session.get_redirect_target", _fp("01a48137033e38ea"), _R,
    "session_send: a response without Location has no redirect target",
)
DISPATCH_HOOK: Final = Replaced(
    "requests.sessions", "dispatch_hook", _fp("0d3c9f78d42aa1d7"), _R, "session_send: no hook, nothing dispatched"
)
MERGE_SETTING: Final = Replaced(
    "requests.sessions", "merge_setting", _fp("51bb96ca1831ea11"), _R,
    "merge_setting (session_prepare): mappings merged without to_key_val_list's Protocol check",
)
SESSIONS_TO_KEY_VAL_LIST: Final = Replaced(
    "requests.sessions", "to_key_val_list", _fp("60f7af28fd48a60a"), _R,
    "merge_setting (session_prepare): a mapping's items, listed without the Protocol check",
)
ENCODE_PARAMS: Final = Replaced(
    "requests.models", "PreparedRequest._encode_params", _fp("8c7d2d1ea4db41cd"), _R,
    "PresetPreparedRequest._encode_params (encode_params): a dict of params",
)
MODELS_TO_KEY_VAL_LIST: Final = Replaced(
    "requests.models", "to_key_val_list", _fp("60f7af28fd48a60a"), _R,
    "encode_params: a dict's items, listed without the Protocol check",
)
EXTRACT_COOKIES: Final = Replaced(
    "requests.sessions", "extract_cookies_to_jar", _fp("afd2f8c2b6a5db83"), _R,
    "session_send: a response without Set-Cookie adds no cookie",
)
PREPARE_HEADERS: Final = Replaced(
    "requests.models", "PreparedRequest.prepare_headers", _fp("0183dd86a12f4573"), _R,
    "PresetPreparedRequest.prepare_headers: a shared session's headers, validated once",
)
PREPARE_BODY: Final = Replaced(
    "requests.models", "PreparedRequest.prepare_body", _fp("1955b65b3b4dacb8"), _R,
    "PresetPreparedRequest.prepare_body: no body",
)
PREPARE_HOOKS: Final = Replaced(
    "requests.models", "PreparedRequest.prepare_hooks", _fp("37ea1e42defff7fc"), _R,
    "PresetPreparedRequest.prepare_hooks: no hook",
)
PREPARE_AUTH: Final = Replaced(
    "requests.models", "PreparedRequest.prepare_auth", _fp("d4f58b9f97d2546f"), _R,
    "PresetPreparedRequest.prepare_auth: no auth and no userinfo",
)
PREPARE_COOKIES: Final = Replaced(
    "requests.models", "PreparedRequest.prepare_cookies", _fp("d02442f02fc70922"), _R,
    "PresetPreparedRequest.prepare_cookies: an empty jar",
)
ADAPTER_SEND: Final = Replaced(
    "requests.adapters", "HTTPAdapter.send", _fp("8b12f2e9fe4db2b7"), _R, "PresetAdapter.send (adapter_send)"
)
ADAPTER_BUILD_RESPONSE: Final = Replaced(
    "requests.adapters", "HTTPAdapter.build_response", _fp("f0864415a96a60cb"), _R,
    "PresetAdapter.build_response (build_response)",
)
ADAPTER_GET_CONNECTION: Final = Replaced(
    "requests.adapters", "HTTPAdapter.get_connection_with_tls_context", _fp("c84fc078840ac792"), _R,
    "PresetAdapter.get_connection_with_tls_context: pools remembered per origin",
)
ADAPTER_REQUEST_URL: Final = Replaced(
    "requests.adapters", "HTTPAdapter.request_url", _fp("9cbb324318db432d"), _R,
    "PresetAdapter.request_url: the path, without a proxy",
)
RESPONSE_INIT: Final = Replaced(
    "requests.models", "Response.__init__", _fp("434df210b621dc08"), _R, "new_response"
)
ENCODING_FROM_HEADERS: Final = Replaced(
    "requests.adapters", "get_encoding_from_headers", _fp("38e55bdc1fefc589"), _R,
    "PresetAdapter's encoding memo: one answer per Content-Type value",
)
HTTPLIB_PUTHEADER: Final = Replaced(
    "http.client", "HTTPConnection.putheader", _fp("44019b2db6f4f6c7"), _P,
    "the header-line memo (write_header_line)",
    standalone=True,
)
URLLIB3_PUTHEADER: Final = Replaced(
    "urllib3.connection", "HTTPConnection.putheader", _fp("fe321c29c640f5ba"), _U,
    "the header-line memo (write_header_line)",
    standalone=True,
)

#: Every function the fast path stands in for.
REPLACED: Final[tuple[Replaced, ...]] = tuple(
    value for value in list(globals().values()) if isinstance(value, Replaced)
)
#: Those whose mismatch turns off their own copy only.
_STANDALONE: Final = frozenset(piece.name for piece in REPLACED if piece.standalone)


# -- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateState:
    """Whether the fast path runs, and why not.

    Attributes:
        active: True when every fingerprint matched and the variable did not force it off.
        forced_off: True when ``SESSION_PRESETS_FAST_PATH`` turned it off.
        mismatched: the upstream functions whose source differs from what the copies were checked against.
        reason: one line saying why the fast path is off, or which standalone copies are off ("" when all run).
    """

    active: bool
    forced_off: bool
    mismatched: tuple[str, ...]
    reason: str


_gate: GateState | None = None
_gate_lock = threading.Lock()
#: Fingerprints of the installed functions, by name: they cannot change while the process runs.
_installed: dict[str, str | None] = {}


def _forced_off() -> bool:
    value = os.environ.get(FAST_PATH_VARIABLE, "").strip().lower()
    if value in _OFF_VALUES:
        return True
    if value not in _ON_VALUES:
        from ._errors import ConfigError

        raise ConfigError(
            f"{FAST_PATH_VARIABLE}={value!r} is invalid: "
            "expected 'off' to force the fallback, or 'on'/'auto' (the default)"
        )
    return False


def installed_fingerprint(piece: Replaced) -> str | None:
    """The fingerprint of the installed function ``piece`` stands in for (worked out once)."""
    try:
        return _installed[piece.name]
    except KeyError:
        found = _installed[piece.name] = fingerprint(piece.original)
        return found


def gate() -> GateState:
    """Decide, once, whether the fast path runs; later calls return the same answer (until reset)."""
    global _gate
    state = _gate
    if state is not None:
        return state
    with _gate_lock:
        if _gate is not None:
            return _gate
        forced = _forced_off()
        differing = [piece for piece in REPLACED if installed_fingerprint(piece) not in piece.fingerprints]
        mismatched = tuple(piece.name for piece in differing)
        probe = _header_dict_probe()
        if probe:
            mismatched += (probe,)
        blocking = [name for name in mismatched if name not in _STANDALONE]
        reasons = [f"{FAST_PATH_VARIABLE}=off"] if forced else []
        if blocking:
            reasons.append("the installed source differs from the checked one: " + ", ".join(blocking))
        alone = [name for name in mismatched if name in _STANDALONE]
        if alone and not forced and not blocking:
            reasons.append("except the copies of " + ", ".join(alone) + ": their source differs")
        active = not forced and not blocking
        _gate = GateState(active=active, forced_off=forced, mismatched=mismatched, reason="; ".join(reasons))
        return _gate


def reset_gate() -> None:
    """Decide again at next use (the environment may have changed): for tests."""
    global _gate, _unpatched
    with _gate_lock:
        _gate = None
        _unpatched = None


# -- once per call: which copies are live ----------------------------------------------------------

#: The copies live for the call running in this context, taken when it began (None: outside a call).
_taken: contextvars.ContextVar[frozenset[Replaced] | None] = contextvars.ContextVar(
    "session_presets_live_copies", default=None
)
#: (owners, attribute names, originals, every copy the gate lets run): for the check of a call with nothing patched.
_unpatched: tuple[tuple[Any, ...], tuple[str, ...], tuple[Any, ...], frozenset[Replaced]] | None = None
_NONE_LIVE: Final[frozenset[Replaced]] = frozenset()


def live_copies() -> frozenset[Replaced]:
    """The copies that may run now: each one's live(), looked at once for all of them."""
    global _unpatched
    state = _gate
    if state is None:
        state = gate()
    if not state.active:
        return _NONE_LIVE
    known = _unpatched
    if known is None:
        allowed = frozenset(
            piece for piece in REPLACED if not (piece.standalone and piece.name in state.mismatched)
        )
        known = _unpatched = (
            tuple(piece.owner for piece in REPLACED),
            tuple(piece.attribute for piece in REPLACED),
            tuple(piece.original for piece in REPLACED),
            allowed,
        )
    owners, attributes, originals, allowed = known
    try:
        # One pass in C: every function as it is now, against the one fingerprinted.
        if all(map(operator.is_, map(getattr, owners, attributes), originals)):
            return allowed
    except AttributeError:  # a function deleted: looked at one by one below
        pass
    return frozenset(piece for piece in REPLACED if piece.live_now())


def begin_call() -> contextvars.Token[frozenset[Replaced] | None] | None:
    """Take, for the call beginning in this context, which copies are live; None when a call is already running.

    A function patched at run time between two calls reaches the second call
    whole; one patched during a call reaches the next. Pass the result to
    :func:`end_call` when the call ends.
    """
    if _taken.get() is not None:
        return None
    return _taken.set(live_copies())


def end_call(token: contextvars.Token[frozenset[Replaced] | None] | None) -> None:
    """End what :func:`begin_call` began (nothing when it returned None)."""
    if token is not None:
        _taken.reset(token)


_process.on_reset(reset_gate, order=_process.ORDER_TLS)


def _header_dict_probe() -> str:
    """'' when urllib3's HTTPHeaderDict keeps ``_container`` as build_response reads it, else its name."""
    probe = HTTPHeaderDict()
    probe.add("A-B", "1")
    probe.add("a-b", "2")
    probe["C"] = "3"
    container = getattr(probe, "_container", None)
    if container == {"a-b": ["A-B", "1", "2"], "c": ["C", "3"]}:
        return ""
    return "urllib3._collections.HTTPHeaderDict._container"


# -- hooks ---------------------------------------------------------------------------------------

#: A feature hook's name and what it does, for diagnostics and docs/fast-path.md.
HOOKS: Final = {
    "tls_resumption": "ssl.SSLSocket._create takes session=: connections offer cached TLS sessions",
    "pool_queue": "urllib3 HTTPConnectionPool._get_conn/_put_conn and .pool: pool_block waits in line",
    "cuttable_connect": "urllib3 HTTPConnection._new_conn and ._dns_host: the connect phase can be cut",
    "header_lines": "http.client HTTPConnection._output and __state: the preset's header lines written as encoded once",
    "body_readinto": "urllib3 HTTPResponse._fp: background downloads read into their buffer",
}

_disabled: set[str] = set()
_detected: dict[str, bool] = {}


def _detect(name: str) -> bool:
    if name == "tls_resumption":
        create = getattr(ssl.SSLSocket, "_create", None)
        try:
            return create is not None and "session" in inspect.signature(create).parameters
        except (TypeError, ValueError):
            return False
    if name == "pool_queue":
        from urllib3 import HTTPConnectionPool

        methods = ("_get_conn", "_put_conn", "_new_conn")
        return all(callable(getattr(HTTPConnectionPool, method, None)) for method in methods)
    if name == "cuttable_connect":
        from urllib3.connection import HTTPConnection

        pooled = HTTPConnection("localhost", 1)
        return callable(getattr(HTTPConnection, "_new_conn", None)) and isinstance(
            getattr(pooled, "_dns_host", None), str
        )
    if name == "header_lines":
        connection = http.client.HTTPConnection("localhost", 1)
        return callable(getattr(connection, "_output", None)) and hasattr(connection, "_HTTPConnection__state")
    if name == "body_readinto":
        from urllib3.response import HTTPResponse

        return "_fp" in vars(HTTPResponse(body=b"", preload_content=False))
    raise KeyError(name)


def hook_enabled(name: str) -> bool:
    """Whether the hook ``name`` (a key of HOOKS) is present and not turned off; detected once."""
    if name in _disabled:
        return False
    try:
        return _detected[name]
    except KeyError:
        found = _detected[name] = _detect(name)
        return found


@contextmanager
def hook_disabled(name: str) -> Iterator[None]:
    """Run the block as if hook ``name`` were missing upstream (tests run each fallback so)."""
    if name not in HOOKS:
        raise KeyError(f"unknown hook {name!r}; known: {', '.join(sorted(HOOKS))}")
    _disabled.add(name)
    try:
        yield
    finally:
        _disabled.discard(name)


def hooks_in_use(state: GateState) -> dict[str, bool]:
    """Each hook's name and whether it is in use now (those of the fast path need it on, as ``state`` says)."""
    found = {name: hook_enabled(name) for name in HOOKS}
    found["body_readinto"] = found["body_readinto"] and state.active
    found["header_lines"] = (
        found["header_lines"] and state.active and not any(name in state.mismatched for name in _STANDALONE)
    )
    return found


# -- memos -----------------------------------------------------------------------------------------


class LRUMemo:
    """A bounded memo, least recently used first out; thread-safe enough for a cache (a miss recomputes)."""

    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: collections.OrderedDict[Any, Any] = collections.OrderedDict()

    def get(self, key: Any) -> Any:
        """The value under ``key`` (now the most recently used), or None."""
        data = self._data
        value = data.get(key)
        if value is not None:
            with contextlib.suppress(KeyError):  # dropped by another thread meanwhile
                data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used beyond maxsize."""
        data = self._data
        data[key] = value
        while len(data) > self.maxsize:
            try:
                data.popitem(last=False)
            except KeyError:
                break

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Any) -> bool:
        return key in self._data


# -- TLS session resumption (hook tls_resumption) ---------------------------------------------------

class ResumingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that offers the session its call put in ``Call.tls_offer`` (see ``_calls``).

    urllib3 calls ``SSLContext.wrap_socket`` with no ``session`` argument; the
    private ``SSLSocket._create`` that ``wrap_socket`` calls is the one place
    a session can be handed over (hook ``tls_resumption``).
    """

    @classmethod
    def _create(cls, sock: Any, *args: Any, session: ssl.SSLSession | None = None, **kwargs: Any) -> Any:
        if session is None:
            call = current_call()
            if call is not None:
                # Taken, not read: the offer is for this one handshake.
                session, call.tls_offer = call.tls_offer, None
        return super()._create(sock, *args, session=session, **kwargs)  # type: ignore[misc]


# -- copies: requests.models.PreparedRequest -------------------------------------------------------

#: Types of ``data`` that, when empty, make no body (requests' own outcome for them).
_EMPTY_BODY_TYPES: Final = (list, dict, tuple, str, bytes)
#: What requests.Request and PreparedRequest start with: no hook at all.
NO_HOOKS: Final[dict[str, list[Any]]] = {"response": []}


def empty_body(data: Any, files: Any, json: Any) -> bool:
    """True when requests would make no body of these: no JSON, no files, no or empty data."""
    return json is None and not files and (data is None or (type(data) in _EMPTY_BODY_TYPES and not data))


class PresetPreparedRequest(PreparedRequest):
    """A PreparedRequest that skips the work an empty field costs in requests (fast path only)."""

    #: Tells a PresetAdapter that a PresetSession prepared it: default headers, no netrc.
    preset_session_prepared = True

    def copy(self) -> PreparedRequest:
        # requests copies for every redirect hop; the hop keeps the marker.
        duplicate = super().copy()
        duplicate.__class__ = PresetPreparedRequest
        return duplicate

    def prepare_headers(self, headers: Any) -> None:
        # A shared session's default headers cannot change: requests' per-header
        # validation ran once, when they were frozen, and its result is copied.
        # With a template, ``headers`` are the request's own, laid over it here
        # as requests' merge_setting would (see session_prepare).
        template = self.__dict__.pop("_preset_header_template", None)
        if template is None:
            super().prepare_headers(headers)
            return
        if not PREPARE_HEADERS.live():
            super().prepare_headers(merge(headers, template, CaseInsensitiveDict))
            return
        fresh: CaseInsensitiveDict[Any] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        fresh._store = overlay_headers(template._store, headers)
        self.headers = fresh

    def _encode_params(self, data: Any) -> Any:  # type: ignore[override]
        # requests' own is a staticmethod called on the instance (prepare_url,
        # prepare_body); a method reaches a patched upstream with the same arguments.
        if type(data) in _PLAIN_DICTS and ENCODE_PARAMS.live() and MODELS_TO_KEY_VAL_LIST.live():
            return encode_params(data)
        return super()._encode_params(data)

    def prepare_body(self, data: Any, files: Any, json: Any = None) -> None:
        # No body at all (a GET): requests would end the same way, after ABC
        # isinstance checks on the empty data.
        if empty_body(data, files, json) and PREPARE_BODY.live():
            self.prepare_content_length(None)
            self.body = None
            return
        super().prepare_body(data, files, json)

    def prepare_hooks(self, hooks: Any) -> None:
        # requests.Request's default hooks register nothing, after a typing.Callable
        # isinstance check per event; PreparedRequest already starts with them.
        if hooks == NO_HOOKS and self.hooks == NO_HOOKS and PREPARE_HOOKS.live():
            return
        super().prepare_hooks(hooks)

    def prepare_auth(self, auth: Any, url: Any = "") -> None:
        # Without auth, requests looks for credentials in the URL (a full parse and
        # a caught TypeError); a URL without "@" has none, so there is nothing to do.
        if auth is None and "@" not in (self.url or "") and PREPARE_AUTH.live():
            return
        super().prepare_auth(auth, url)

    def prepare_cookies(self, cookies: Any) -> None:
        # An empty jar adds no Cookie header; a new RequestsCookieJar is empty
        # without iterating it (a jar emptied by removals may keep empty dicts).
        if (
            (type(cookies) is RequestsCookieJar and not cookies._cookies)  # type: ignore[attr-defined]
            or (isinstance(cookies, http.cookiejar.CookieJar) and next(iter(cookies), None) is None)
        ) and PREPARE_COOKIES.live():
            self._cookies = cookies
            return
        super().prepare_cookies(cookies)


# -- copies: requests.sessions.merge_setting and requests.models' _encode_params ------------------

#: Mapping classes whose items() requests' to_key_val_list lists, known without its Protocol check.
_PLAIN_DICTS: Final = frozenset({dict, collections.OrderedDict})
#: What to_key_val_list refuses to list.
_NOT_PAIRS: Final = (str, bytes, bool, int)


def merging() -> bool:
    """Whether merge() may run the copy: requests' merge_setting and the to_key_val_list it calls are unchanged."""
    return MERGE_SETTING.live() and SESSIONS_TO_KEY_VAL_LIST.live()


def merge(request_setting: Any, session_setting: Any, dict_class: Any) -> Any:
    """requests.sessions.merge_setting(request_setting, session_setting, dict_class), step for step.

    Both values are mappings when it merges (it checks), and a mapping has
    ``items``: there its to_key_val_list is ``list(value.items())``, without
    the runtime-checkable Protocol test (tens of microseconds in requests
    2.34) that it makes to find that out. Calls requests' own while it is
    changed or patched (see merging()).
    """
    if not merging():
        return requests.sessions.merge_setting(request_setting, session_setting, dict_class=dict_class)
    if session_setting is None:
        return request_setting
    if request_setting is None:
        return session_setting
    if not (
        isinstance(session_setting, collections.abc.Mapping) and isinstance(request_setting, collections.abc.Mapping)
    ):
        return request_setting
    merged = dict_class(_pairs(session_setting))
    merged.update(_pairs(request_setting))
    none_keys = [k for (k, v) in merged.items() if v is None]
    for key in none_keys:
        del merged[key]
    return merged


def _pairs(mapping: Any) -> Any:
    """to_key_val_list(mapping) for a mapping: its items, listed."""
    if isinstance(mapping, _NOT_PAIRS) or getattr(mapping, "items", None) is None:
        return requests.sessions.to_key_val_list(mapping)  # type: ignore[attr-defined]
    return list(mapping.items())


def encode_params(data: dict[Any, Any]) -> str:
    """requests' RequestEncodingMixin._encode_params for a dict (or OrderedDict), step for step.

    A plain dict is neither a string nor readable, and its to_key_val_list is
    ``list(data.items())``: the two runtime-checkable Protocol tests requests
    makes to find that out are left out. Only called while ENCODE_PARAMS and
    MODELS_TO_KEY_VAL_LIST are live.
    """
    result: list[tuple[Any, Any]] = []
    for k, vs in list(data.items()):
        values = [vs] if isinstance(vs, (str, bytes)) or not hasattr(vs, "__iter__") else vs
        for v in values:
            if v is not None:
                result.append(
                    (
                        k.encode("utf-8") if isinstance(k, str) else k,
                        v.encode("utf-8") if isinstance(v, str) else v,
                    )
                )
    encoded: str = requests.models.urlencode(result, doseq=True)  # type: ignore[attr-defined]
    return encoded


def overlays(request_headers: Any) -> bool:
    """Whether overlay_headers() takes these request headers: a dict, or a CaseInsensitiveDict, of str names."""
    if type(request_headers) is CaseInsensitiveDict:
        return all(type(name) is str for name, _ in request_headers._store.values())
    return type(request_headers) in _PLAIN_DICTS and all(type(name) is str for name in request_headers)


def overlay_headers(
    template: collections.OrderedDict[str, tuple[str, Any]], request_headers: Any
) -> collections.OrderedDict[str, tuple[str, Any]]:
    """What requests' prepare_headers stores for merge_setting(request_headers, session headers).

    ``template`` is the store of the session's headers as prepare_headers made
    them (every line already validated). merge_setting sets the request's
    headers over the session's, case-blind, then drops those set to None;
    prepare_headers then validates each header in that order and stores it
    under its name. Only the request's own survivors are validated here, in
    the same order, by requests' check_header_validity. Only called while
    PREPARE_HEADERS, MERGE_SETTING and SESSIONS_TO_KEY_VAL_LIST are live, with
    headers overlays() takes.
    """
    store = template.copy()
    if not request_headers:
        return store
    touched = set()
    for name, value in list(request_headers.items()):
        key = name.lower()
        store[key] = (name, value)
        touched.add(key)
    for key in [key for key, (_, value) in store.items() if value is None]:
        del store[key]
    check = requests.models.check_header_validity  # type: ignore[attr-defined]
    for key, header in store.items():
        if key in touched:
            check(header)
    return store


# -- copies: requests.sessions.Session -------------------------------------------------------------


def session_request(session: Any, method: Any, url: Any, fields: dict[str, Any], send_kwargs: dict[str, Any]) -> Any:
    """requests.Session.request, step for step, without building a Request when the session prepares it itself.

    ``fields`` are request()'s params, data, headers, cookies, files, auth, hooks
    and json; ``send_kwargs`` its timeout, allow_redirects, proxies, stream,
    verify and cert. Only called while SESSION_REQUEST.live().
    """
    if isinstance(url, bytes):
        url = url.decode("utf-8")
    hooks = fields["hooks"]
    data = fields["data"] or {}
    params = fields["params"] or {}
    if hooks is None and SESSION_PREPARE_REQUEST.live() and session.preset_prepares_itself():
        # The fields requests.Request(...) would hold (hooks register nothing), without building it.
        headers = fields["headers"]
        files = fields["files"]
        prep = session_prepare(
            session, method.upper(), url, {} if headers is None else headers, [] if files is None else files,
            data, fields["json"], params, fields["auth"], fields["cookies"], {"response": []},
        )
    else:
        prep = session.prepare_request(
            requests.Request(
                method=method.upper(), url=url, headers=fields["headers"], files=fields["files"], data=data,
                json=fields["json"], params=params, auth=fields["auth"], cookies=fields["cookies"], hooks=hooks,
            )
        )
    settings = session.merge_environment_settings(
        prep.url, send_kwargs["proxies"] or {}, send_kwargs["stream"], send_kwargs["verify"], send_kwargs["cert"]
    )
    kwargs: dict[str, Any] = {"timeout": send_kwargs["timeout"], "allow_redirects": send_kwargs["allow_redirects"]}
    kwargs.update(settings)
    return session.send(prep, **kwargs)


def session_prepare(
    session: Any,
    request_method: Any,
    url: Any,
    request_headers: Any,
    files: Any,
    data: Any,
    json: Any,
    request_params: Any,
    request_auth: Any,
    request_cookies: Any,
    request_hooks: Any,
) -> PreparedRequest:
    """requests.Session.prepare_request for a Request's fields, minus the work an empty mapping costs there.

    netrc is what ``session._netrc_auth(url)`` reads (a preset reads it only
    with store_credentials). Only called while SESSION_PREPARE_REQUEST.live().
    """
    merged_cookies: Any = RequestsCookieJar()
    jar = session.cookies
    # An empty jar has nothing to merge; a jar of another class may iterate differently.
    if type(jar) is not RequestsCookieJar or jar._cookies:  # type: ignore[attr-defined]
        merged_cookies = merge_cookies(merged_cookies, jar)
    if request_cookies:
        cookies: Any = request_cookies
        if not isinstance(cookies, http.cookiejar.CookieJar):
            cookies = cookiejar_from_dict(cookies)
        merged_cookies = merge_cookies(merged_cookies, cookies)
    auth = request_auth
    if not auth and not session.auth:
        auth = session._netrc_auth(url) or auth
    headers: Any = session.headers
    template = session._header_template
    header_none = session._header_none
    if header_none is None:
        header_none = has_none_value(headers)
    if template is not None and not header_none and overlays(request_headers) and merging():
        # The request's own headers go over the session's validated ones in prepare_headers.
        headers = request_headers
    else:
        template = None
        if request_headers or header_none or not merging():
            # requests' merge also drops the session headers set to None.
            headers = merge(request_headers, session.headers, CaseInsensitiveDict)
    params: Any = None
    if request_params or session.params or not (merging() and ENCODE_PARAMS.live() and MODELS_TO_KEY_VAL_LIST.live()):
        # Without params requests still merges two empty mappings and encodes the result: a
        # changed merge or encoding (patched, say) runs for every request, as in requests.
        params = merge(request_params, session.params, collections.OrderedDict)
    prepared = PresetPreparedRequest()
    if template is not None:
        prepared._preset_header_template = template  # type: ignore[attr-defined]
    prepared.prepare(
        method=(request_method or "").upper(),
        url=url,
        files=files,
        data=data,
        json=json,
        headers=headers,
        params=params,
        auth=merge(auth, session.auth, collections.OrderedDict),
        cookies=merged_cookies,
        hooks=merge_hooks(request_hooks, session.hooks),
    )
    return prepared


def has_none_value(headers: Any) -> bool:
    """True when a session header is None (requests drops those when it merges), or the headers are."""
    if headers is None:
        # session.headers = None: requests merges the request's own headers alone.
        return True
    store = getattr(headers, "_store", None)  # CaseInsensitiveDict: skip its per-key lookups
    if isinstance(store, dict):
        return any(value is None for _, value in store.values())
    return None in headers.values()


def session_send(session: Any, request: PreparedRequest, kwargs: dict[str, Any]) -> Any:
    """requests.Session.send, step for step, minus a cookie extraction that cannot find a cookie.

    requests reads the Set-Cookie headers of every response through a mock
    request and response pair; when the adapter saw none in the response
    (see build_response), there is nothing to store. Only called while
    SESSION_SEND.live().
    """
    # kwargs is this call's own dict (send's **kwargs): changed here as requests changes its own.
    kwargs.setdefault("stream", session.stream)
    kwargs.setdefault("verify", session.verify)
    kwargs.setdefault("cert", session.cert)
    if "proxies" not in kwargs:
        # A PresetSession's proxies=None means the environment's, as read when it was built.
        kwargs["proxies"] = resolve_proxies(request, session._session_proxies(), session.trust_env)
    if isinstance(request, requests.Request):
        raise ValueError("You can only send PreparedRequests.")
    allow_redirects = kwargs.pop("allow_redirects", True)
    stream = kwargs.get("stream")
    hooks = request.hooks
    adapter = session.get_adapter(url=request.url)
    start = preferred_clock()
    r = adapter.send(request, **kwargs)
    r.elapsed = timedelta(seconds=preferred_clock() - start)
    if not DISPATCH_HOOK.live() or (hooks and hooks.get("response")):
        # requests' dispatch_hook hands back the response untouched when no hook is registered.
        r = requests.sessions.dispatch_hook("response", hooks, r, **kwargs)  # type: ignore[attr-defined]
    extract = requests.sessions.extract_cookies_to_jar  # type: ignore[attr-defined]
    if r.history:
        # Responses a hook made part of the history keep their cookies too.
        for resp in r.history:
            extract(session.cookies, resp.request, resp.raw)
    if not (
        r.__dict__.get("_preset_cookieless") is r.raw
        and type(session.cookies) is RequestsCookieJar
        and extract is EXTRACT_COOKIES.original
        and EXTRACT_COOKIES.live()
    ):
        extract(session.cookies, request, r.raw)
    history = []
    if allow_redirects and may_redirect(session, r):
        history = list(session.resolve_redirects(r, request, **kwargs))
    if history:
        history.insert(0, r)
        r = history.pop()
        r.history = history
    if not allow_redirects:
        with contextlib.suppress(StopIteration):
            r._next = next(session.resolve_redirects(r, request, yield_requests=True, **kwargs))
    if not stream:
        r.content  # noqa: B018
    return r


#: requests' redirect test of a response, which looks for a Location header.
_IS_REDIRECT: Final = Response.is_redirect


def may_redirect(session: Any, resp: Response) -> bool:
    """False when resolve_redirects would surely follow nothing: no Location header, requests' own checks."""
    headers = resp.headers
    return not (
        type(headers) is CaseInsensitiveDict
        and "location" not in headers._store
        and type(resp).is_redirect is _IS_REDIRECT
        and SESSION_REDIRECT_TARGET.live()
        and SESSION_RESOLVE_REDIRECTS.live()
        and session.preset_plain_redirects()
    )


# -- copies: requests.adapters.HTTPAdapter ---------------------------------------------------------


def adapter_send(
    adapter: Any,
    request: PreparedRequest,
    stream: bool,
    timeout: Any,
    verify: Any,
    cert: Any,
    proxies: Any,
    *,
    check_cert: bool,
    add_headers: bool,
) -> Response:
    """HTTPAdapter.send, step for step, handing urllib3 the headers as a plain dict.

    urllib3 copies the headers it is given, merges the pool's proxy headers
    into the copy and iterates it twice; requests gives it its
    CaseInsensitiveDict, where each of those is Python calls per header. A
    dict of the same names, spelt and ordered the same, sends the same lines.
    ``check_cert`` and ``add_headers``: whether the adapter's cert_verify and
    add_headers have anything to do. Only called while ADAPTER_SEND.live().
    """
    try:
        conn = adapter.get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
    except LocationValueError as e:
        raise requests.exceptions.InvalidURL(e, request=request)  # noqa: B904
    if check_cert:
        adapter.cert_verify(conn, request.url, verify, cert)
    url = adapter.request_url(request, proxies)
    if add_headers:
        adapter.add_headers(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
    headers: Any = request.headers
    chunked = not (request.body is None or "Content-Length" in headers)
    if type(headers) is CaseInsensitiveDict and not getattr(conn, "proxy_headers", True):
        # Without proxy headers to merge (case-blind in a CaseInsensitiveDict), a dict is equivalent.
        headers = dict(headers._store.values())
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
            resolved_timeout = Timeout(connect=connect, read=read)
        except ValueError:
            raise ValueError(  # noqa: B904
                f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
                f"or a single float to set both timeouts to the same value."
            )
    elif isinstance(timeout, Timeout):
        resolved_timeout = timeout
    else:
        resolved_timeout = Timeout(connect=timeout, read=timeout)
    # The errors urllib3 raises become requests' exceptions, as HTTPAdapter.send
    # maps them (chained implicitly, as there: no "from").
    try:
        resp = conn.urlopen(
            method=request.method,
            url=url,
            body=request.body,
            headers=headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            retries=adapter.max_retries,
            timeout=resolved_timeout,
            chunked=chunked,
        )
    except (ProtocolError, OSError) as err:
        raise requests.ConnectionError(err, request=request)  # noqa: B904
    except MaxRetryError as e:
        if isinstance(e.reason, ConnectTimeoutError) and not isinstance(e.reason, NewConnectionError):
            raise requests.ConnectTimeout(e, request=request)  # noqa: B904
        if isinstance(e.reason, ResponseError):
            raise requests.exceptions.RetryError(e, request=request)  # noqa: B904
        if isinstance(e.reason, _ProxyError):
            raise requests.exceptions.ProxyError(e, request=request)  # noqa: B904
        if isinstance(e.reason, _SSLError):
            raise requests.exceptions.SSLError(e, request=request)  # noqa: B904
        raise requests.ConnectionError(e, request=request)  # noqa: B904
    except ClosedPoolError as e:
        raise requests.ConnectionError(e, request=request)  # noqa: B904
    except _ProxyError as e:
        raise requests.exceptions.ProxyError(e)  # noqa: B904
    except (_SSLError, _HTTPError) as e:
        if isinstance(e, _SSLError):
            raise requests.exceptions.SSLError(e, request=request)  # noqa: B904
        if isinstance(e, ReadTimeoutError):
            raise requests.ReadTimeout(e, request=request)  # noqa: B904
        if isinstance(e, InvalidHeader):
            raise requests.exceptions.InvalidHeader(e, request=request)  # noqa: B904
        raise
    response: Response = adapter.build_response(request, resp)
    return response


#: What requests.Response() sets, in the requests this module was written against.
_RESPONSE_FIELDS: Final = frozenset(
    {
        "_content", "_content_consumed", "_next", "cookies", "elapsed", "encoding", "headers",
        "history", "raw", "reason", "request", "status_code", "url",
    }
)
#: The fields each new Response gets a new object for; the others hold immutable values.
_FRESH_RESPONSE_FIELDS: Final = frozenset({"cookies", "headers", "history"})
_response_defaults: dict[str, Any] | None = None


def new_response(cls: type[Response]) -> Response:
    """An empty Response of class ``cls`` as Response() makes it, built without the Python calls of its __init__.

    Only called while RESPONSE_INIT.live().
    """
    global _response_defaults
    defaults = _response_defaults
    if defaults is None:
        fields = vars(Response())
        if set(fields) != _RESPONSE_FIELDS:
            response = Response()
            response.__class__ = cls
            return response
        defaults = _response_defaults = {k: v for k, v in fields.items() if k not in _FRESH_RESPONSE_FIELDS}
    response = Response.__new__(cls)
    fields = response.__dict__
    fields.update(defaults)
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    headers._store = collections.OrderedDict()
    fields["headers"] = headers
    fields["history"] = []
    fields["cookies"] = RequestsCookieJar()
    return response


def build_response(
    adapter: Any, req: PreparedRequest, resp: Any, cls: type[Response], encoding_of: Callable[[str], str | None]
) -> Response | None:
    """HTTPAdapter.build_response for a response without Set-Cookie; None: call upstream's.

    What requests builds, minus the cookie extraction that a response without
    Set-Cookie headers cannot change (a sixth of that call). ``encoding_of``
    gives requests' encoding of a Content-Type value. Only called while
    ADAPTER_BUILD_RESPONSE.live().
    """
    headers = getattr(resp, "headers", None)
    store: collections.OrderedDict[str, tuple[str, str]] | None = None
    if type(headers) is HTTPHeaderDict:
        # What CaseInsensitiveDict(headers) holds (one entry per name, values
        # joined by ", "), built without its per-header Python calls. urllib3
        # keeps [name as sent, value, ...] by lower-cased name (checked by the
        # gate): when no name came twice, each list is the (name, value) pair requests stores.
        container = headers._container
        fields = container.values()
        if max(map(len, fields), default=2) == 2:
            store = collections.OrderedDict(zip(container, map(tuple, fields), strict=True))  # type: ignore[arg-type]
        else:
            store = collections.OrderedDict((name.lower(), (name, value)) for name, value in headers.itermerged())
        if "set-cookie" in store or "set-cookie2" in store:
            return None
    elif headers is None or "set-cookie" in headers or "set-cookie2" in headers:
        return None
    response = new_response(cls) if RESPONSE_INIT.live() else _plain_response(cls)
    response.status_code = resp.status
    if store is None:
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = get_encoding_from_headers(response.headers)
    else:
        response.headers._store = store
        content_type = store.get("content-type")
        response.encoding = None if content_type is None else encoding_of(content_type[1])
    response.raw = resp
    response.reason = resp.reason
    response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else (req.url or "")
    response.request = req
    response.connection = adapter
    # No Set-Cookie in this raw response: the session need not look for one (see session_send).
    response._preset_cookieless = resp  # type: ignore[attr-defined]
    return response


def _plain_response(cls: type[Response]) -> Response:
    response = Response()
    response.__class__ = cls
    return response


# -- copies: http.client and urllib3 putheader (hook header_lines) -----------------------------------

#: http.client's connection state between putrequest() and endheaders(), when headers may be put.
_REQUEST_STARTED: Final = getattr(http.client, "_CS_REQ_STARTED", "Request-started")


def header_lines_usable() -> bool:
    """Whether the header-line memo may write lines now: fast path on, putheader unpatched, hook present."""
    return URLLIB3_PUTHEADER.live() and HTTPLIB_PUTHEADER.live() and hook_enabled("header_lines")


def write_header_line(conn: Any, line: bytes) -> bool:
    """Write an encoded header line as http.client's putheader would; False if the connection is not putting headers."""
    if conn._HTTPConnection__state != _REQUEST_STARTED:
        return False
    conn._output(line)
    return True


# -- background downloads (hook body_readinto) ------------------------------------------------------


def readinto_target(raw: Any) -> http.client.HTTPResponse | None:
    """The standard library response under a urllib3 response, for readinto(); None: read through urllib3."""
    if not (gate().active and hook_enabled("body_readinto")):
        return None
    inner = getattr(raw, "_fp", None)
    return inner if isinstance(inner, http.client.HTTPResponse) else None


# -- response metrics ----------------------------------------------------------------------------


def body_bytes_read(raw: Any) -> int:
    """The body bytes urllib3 has read from the socket for ``raw`` (its private ``_fp_bytes_read``; 0 if absent)."""
    return int(getattr(raw, "_fp_bytes_read", 0) or 0)
