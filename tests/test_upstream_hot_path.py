"""The per-call shortcuts of a shared session behave as requests does (see issue 16 §3)."""

from __future__ import annotations

import base64
import collections
import http.client
from typing import Any

import pytest
import requests
import requests.adapters
import requests.models
import requests.sessions
import urllib3
import urllib3.connection
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from session_presets import BodyReadTimeoutError, PresetAdapter, PresetSession, _upstream, default_session, get_session

from .fast_path import requires_fast_path
from .servers import Handler, LoopbackServer


@requires_fast_path
def test_shared_session_validates_its_default_headers_once(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared session's frozen default headers are not validated again on each request."""
    session = get_session()
    session.get(http_server.url())
    checked: list[object] = []
    original = requests.models.check_header_validity

    def counting(header: tuple[str, str | bytes]) -> None:
        checked.append(header)
        original(header)

    monkeypatch.setattr(requests.models, "check_header_validity", counting)
    for _ in range(3):
        session.get(http_server.url())
    assert checked == []
    assert http_server.requests[-1].header("User-Agent") == session.headers["User-Agent"]


def test_shared_session_prepared_headers_are_private_copies(http_server: LoopbackServer) -> None:
    """Changing one request's prepared headers reaches neither the session nor its next request."""
    session = get_session()
    first = session.get(http_server.url())
    assert first.request is not None
    first.request.headers["X-Changed"] = "yes"
    del first.request.headers["User-Agent"]
    session.get(http_server.url())
    assert http_server.requests[-1].header("X-Changed") is None
    assert http_server.requests[-1].header("User-Agent") == session.headers["User-Agent"]
    assert "X-Changed" not in session.headers


def test_per_request_headers_are_still_validated(http_server: LoopbackServer) -> None:
    """A per-request header requests finds invalid is refused, as requests refuses it."""
    with pytest.raises(requests.exceptions.InvalidHeader):
        get_session().get(http_server.url(), headers={"X-Lead": " leading space"})
    assert http_server.requests == []


def test_credentials_in_the_url_are_still_sent(http_server: LoopbackServer) -> None:
    """A URL's userinfo still becomes a Basic Authorization header, percent-decoded."""
    url = http_server.url().replace("://", "://user:pa%20ss@", 1)
    get_session().get(url)
    expected = "Basic " + base64.b64encode(b"user:pa ss").decode()
    assert http_server.requests[-1].header("Authorization") == expected


def test_response_headers_match_requests(http_server: LoopbackServer) -> None:
    """Repeated response headers are joined and keep their first spelling, exactly as requests builds them."""

    def repeated(h: Handler) -> None:
        # The same bytes for both clients: send_response would add a Date that
        # changes when the two requests straddle a second (a flake seen in a loop).
        h.send_response_only(200)
        h.send_header("Date", "Fri, 27 Nov 2026 12:00:00 GMT")
        h.send_header("X-Dup", "a")
        h.send_header("Content-Type", "text/plain; charset=latin-1")
        h.send_header("x-dup", "b")
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    http_server.route("/repeated", repeated)
    ours = get_session().get(http_server.url("/repeated"))
    with requests.Session() as plain:
        theirs = plain.get(http_server.url("/repeated"))
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.headers["X-DUP"] == "a, b"
    assert ours.encoding == theirs.encoding == "latin-1"
    assert type(ours.headers) is type(theirs.headers)


def test_session_cookies_and_hooks_still_apply(http_server: LoopbackServer) -> None:
    """A caller-owned session's cookies and hooks, and a request's own hooks, still apply."""
    seen: list[int] = []
    with default_session() as session:
        session.get(http_server.url())
        assert http_server.requests[-1].header("Cookie") is None
        session.cookies.set("flavour", "oat", domain="127.0.0.1", path="/")
        session.hooks["response"].append(lambda r, **kw: seen.append(r.status_code))
        session.get(http_server.url())
        # requests lets a request's hooks for an event replace the session's.
        session.get(http_server.url(), hooks={"response": [lambda r, **kw: seen.append(-r.status_code)]})
    assert http_server.requests[-1].header("Cookie") == "flavour=oat"
    assert seen == [200, -200]


@pytest.mark.parametrize(
    ("method", "kwargs", "length", "body"),
    [
        ("GET", {}, None, b""),
        ("GET", {"data": ""}, None, b""),
        ("POST", {}, "0", b""),
        ("POST", {"data": {}}, "0", b""),
        ("PUT", {"data": b""}, "0", b""),
        ("POST", {"json": {}}, "2", b"{}"),
        ("POST", {"data": {"a": "1"}}, "3", b"a=1"),
    ],
)
def test_bodies_are_framed_as_requests_frames_them(
    http_server: LoopbackServer, method: str, kwargs: dict[str, object], length: str | None, body: bytes
) -> None:
    """Empty and small bodies reach the server with requests' Content-Length and content."""
    get_session().request(method, http_server.url(), **kwargs)  # type: ignore[arg-type]
    seen = http_server.requests[-1]
    assert seen.header("Content-Length") == length
    assert seen.body == body


def _cut_short(h: Handler) -> None:
    """Announce 100 bytes, send 10, close."""
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    h.wfile.write(b"c" * 10)
    h.wfile.flush()
    h.close_connection = True


def _body_errors(session: requests.Session, server: LoopbackServer) -> list[type[BaseException]]:
    errors: list[type[BaseException]] = []
    for url, timeout in ((server.url("/cut-short"), 10.0), (server.url("/stall?after=10&for=3"), 0.3)):
        with pytest.raises(requests.RequestException) as info:
            session.get(url, timeout=timeout)
        errors.append(type(info.value))
    return errors


def test_plain_bodies_fail_as_requests_fails_them(http_server: LoopbackServer) -> None:
    """A body cut short raises what a plain requests.Session raises; a stalled one a subclass of it, a ReadTimeout."""
    http_server.route("/cut-short", _cut_short)
    with requests.Session() as plain:
        expected = _body_errors(plain, http_server)
    with default_session(retries=0) as session:
        ours = _body_errors(session, http_server)
        assert session.get(http_server.url("/ok?size=20000")).content == b"x" * 20000
    assert expected == [requests.exceptions.ChunkedEncodingError, requests.ConnectionError]
    assert ours == [requests.exceptions.ChunkedEncodingError, BodyReadTimeoutError]
    assert all(issubclass(mine, theirs) for mine, theirs in zip(ours, expected, strict=True))


_HEADER_CALLS: list[dict[str, str]] = [
    {},
    {"X-Token": "a"},
    {"X-Token": "b", "user-agent": "mine"},
    {"X-Token": "a", "X-Latin": "caf\xe9", "Accept": "text/plain"},
    {},
]


def _header_lines(session: requests.Session, server: LoopbackServer) -> list[list[tuple[str, str]]]:
    lines = []
    for headers in _HEADER_CALLS:
        session.get(server.url(), headers=headers)
        lines.append(list(server.requests[-1].headers.items()))
    return lines


def test_header_lines_reach_the_server_as_requests_sends_them(http_server: LoopbackServer) -> None:
    """Repeated, changed and re-spelt headers reach the server in requests' order, spelling and values."""
    session = get_session()
    ours = _header_lines(session, http_server)
    with requests.Session() as plain:
        plain.headers = CaseInsensitiveDict(session.headers)
        theirs = _header_lines(plain, http_server)
    assert ours == theirs
    assert ours[2][1] == ("user-agent", "mine")
    assert ("X-Latin", "caf\xe9") in ours[3]


def test_a_putheader_patched_later_sees_every_header(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A putheader patched onto http.client after some requests (as instrumentation does) is called for every line."""
    session = get_session()
    session.get(http_server.url())
    called: list[str] = []
    original = http.client.HTTPConnection.putheader

    def recording(self: http.client.HTTPConnection, header: str, *values: str) -> None:
        called.append(header)
        original(self, header, *values)

    monkeypatch.setattr(http.client.HTTPConnection, "putheader", recording)
    session.get(http_server.url())
    assert called == list(http_server.requests[-1].headers)


def test_a_connection_class_with_its_own_putheader_sees_every_header(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool ConnectionCls that overrides putheader (as vcrpy's does) is called for every line of every request."""
    called: list[str] = []

    class Recording(urllib3.connection.HTTPConnection):
        def putheader(self, header: str, *values: str) -> None:
            called.append(header)
            super().putheader(header, *values)

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "ConnectionCls", Recording)
    with default_session() as session:
        session.get(http_server.url())
        session.get(http_server.url())
    assert called == list(http_server.requests[-2].headers) + list(http_server.requests[-1].headers)


def test_a_header_value_http_client_refuses_is_refused_every_time(http_server: LoopbackServer) -> None:
    """A header value outside latin-1 fails each request as it fails with plain requests, after valid ones went out."""
    session = get_session()
    session.get(http_server.url(), headers={"X-Sign": "euro"})
    for _ in range(2):
        with pytest.raises(UnicodeEncodeError):
            session.get(http_server.url(), headers={"X-Sign": "\u20ac"})
    session.get(http_server.url(), headers={"X-Sign": "euro"})
    assert [seen.header("X-Sign") for seen in http_server.requests] == ["euro", "euro"]


def _cookie_then_redirect(h: Handler) -> None:
    """Set a cookie and redirect to /ok."""
    h.send_response(302)
    h.send_header("Set-Cookie", "hop=1; Path=/")
    h.send_header("Location", "/ok")
    h.send_header("Content-Length", "0")
    h.end_headers()


def _cookies_sent(session: requests.Session, server: LoopbackServer) -> list[str | None]:
    before = len(server.requests)
    for path in ("/set-cookie?name=sid&value=42", "/ok", "/hop", "/ok"):
        session.get(server.url(path))
    return [seen.header("Cookie") for seen in server.requests[before:]]


def test_cookies_of_responses_and_redirect_hops_are_kept_as_requests_keeps_them(http_server: LoopbackServer) -> None:
    """Cookies set by a response and by a redirect hop are stored and sent on, and cookieless responses keep them."""
    http_server.route("/hop", _cookie_then_redirect)
    with default_session() as session:
        ours = _cookies_sent(session, http_server)
    with requests.Session() as plain:
        theirs = _cookies_sent(plain, http_server)
    assert ours == theirs
    # The order of the Cookie pairs is http.cookiejar's, which differs between Python versions (3.10, 3.11).
    assert [sorted(header.split("; ")) if header else None for header in ours] == [
        None, ["sid=42"], ["sid=42"], ["hop=1", "sid=42"], ["hop=1", "sid=42"]
    ]


def test_a_hook_that_swaps_the_raw_response_gets_its_cookies_stored(http_server: LoopbackServer) -> None:
    """A response hook that puts another raw response (one setting a cookie) on the response has that cookie stored."""
    with requests.Session() as other, default_session() as session:

        def swap(response: requests.Response, **kwargs: object) -> None:
            response.close()  # its connection goes back to the pool before its raw is replaced
            response.raw = other.get(http_server.url("/set-cookie?name=sid&value=7"), stream=True).raw

        session.get(http_server.url(), hooks={"response": [swap]})
        assert session.cookies.get("sid") == "7"


def test_a_cookie_jar_subclass_sees_every_response(http_server: LoopbackServer) -> None:
    """A session's RequestsCookieJar subclass is asked to extract cookies from every response, cookieless ones too."""

    class Counting(RequestsCookieJar):
        extracted = 0

        def extract_cookies(self, response: Any, request: Any) -> None:
            self.extracted += 1
            super().extract_cookies(response, request)

    jar = Counting()
    with default_session() as session:
        session.cookies = jar
        for _ in range(3):
            session.get(http_server.url())
    assert jar.extracted == 3


def test_responses_have_requests_fields_and_their_own_mutable_ones(http_server: LoopbackServer) -> None:
    """A response has every field requests sets, of the same types, and no two share headers, history or jar."""
    session = get_session()
    first, second = session.get(http_server.url()), session.get(http_server.url())
    with requests.Session() as plain:
        theirs = plain.get(http_server.url())
    assert set(vars(theirs)) <= set(vars(first))
    assert [name for name, value in vars(theirs).items() if not isinstance(getattr(first, name), type(value))] == []
    for name in ("headers", "history", "cookies"):
        assert getattr(first, name) is not getattr(second, name)
    first.history.append(theirs)
    first.headers["X-Mine"] = "1"
    first.cookies.set("mine", "1")
    third = session.get(http_server.url())
    assert (third.history, "X-Mine" in third.headers, len(third.cookies)) == ([], False, 0)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/html; charset=utf-8", "application/json", "image/png", "text/csv; charset='koi8-r'", None],
)
def test_encodings_are_those_requests_reads_from_content_type(
    http_server: LoopbackServer, content_type: str | None
) -> None:
    """The response encoding, read again for each response, is the one requests gets from the same Content-Type."""

    def typed(h: Handler) -> None:
        h.send_response(200)
        if content_type is not None:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    http_server.route("/typed", typed)
    ours = [get_session().get(http_server.url("/typed")).encoding for _ in range(2)]
    with requests.Session() as plain:
        theirs = plain.get(http_server.url("/typed")).encoding
    assert ours == [theirs, theirs]


def test_a_requests_whose_response_has_other_fields_builds_responses_itself(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should requests' Response() set a field the adapter does not know, responses are made by Response() itself."""
    original = requests.models.Response.__init__

    def with_extra_field(self: requests.models.Response) -> None:
        original(self)
        self.extra = "new in requests"  # type: ignore[attr-defined]

    monkeypatch.setattr(requests.models.Response, "__init__", with_extra_field)
    response = get_session().get(http_server.url())
    assert (response.extra, response.content) == ("new in requests", b"ok")  # type: ignore[attr-defined]


def test_an_adapter_class_after_preset_adapter_still_sends(http_server: LoopbackServer) -> None:
    """A PresetAdapter subclass whose method order puts another adapter's send after PresetAdapter's calls that send."""
    sent: list[str | None] = []

    class Recording(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            sent.append(request.url)
            return super().send(request, *args, **kwargs)

    class Mine(PresetAdapter, Recording):
        pass

    with default_session() as session:
        session.mount("http://", Mine(session.config))
        assert session.get(http_server.url()).content == b"ok"
    assert sent == [http_server.url()]
    assert http_server.requests[-1].header("Cache-Control") == "no-cache"


def test_a_patched_session_request_still_runs(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests.Session.request patched after import (as instrumentation does) runs for a PresetSession's calls."""
    seen: list[tuple[str, object]] = []
    original = requests.Session.request

    def recording(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        seen.append((method, args[6] if len(args) > 6 else kwargs.get("timeout")))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    session = get_session()
    assert session.get(http_server.url()).content == b"ok"
    assert session.post(http_server.url(), data=b"x", timeout=4).status_code == 200
    assert [(method, type(timeout).__name__) for method, timeout in seen] == [("GET", "PresetTimeout"), ("POST", "int")]
    assert [request.method for request in http_server.requests] == ["GET", "POST"]


def test_a_session_subclass_redirect_target_is_still_asked(http_server: LoopbackServer) -> None:
    """A PresetSession subclass's get_redirect_target is asked about every response, and what it names is followed."""

    def pointing(h: Handler) -> None:
        h.send_response(200)
        h.send_header("X-Next", "/ok")
        h.send_header("Content-Length", "0")
        h.end_headers()

    class Following(PresetSession):
        def get_redirect_target(self, resp: requests.Response) -> str | None:
            return resp.headers.get("X-Next") or super().get_redirect_target(resp)

    http_server.route("/pointing", pointing)
    with Following() as session:
        response = session.get(http_server.url("/pointing"))
    assert [request.path for request in http_server.requests] == ["/pointing", "/ok"]
    assert (response.content, len(response.history)) == (b"ok", 1)


def test_response_headers_named_once_match_requests(http_server: LoopbackServer) -> None:
    """Response headers that each come once keep requests' order, spelling and values, looked up in any case."""

    def spelt(h: Handler) -> None:
        h.send_response_only(200)
        h.send_header("date", "Fri, 27 Nov 2026 12:00:00 GMT")
        h.send_header("X-MiXed", "a, b")
        h.send_header("content-type", "text/plain")
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    http_server.route("/spelt", spelt)
    ours = get_session().get(http_server.url("/spelt"))
    with requests.Session() as plain:
        theirs = plain.get(http_server.url("/spelt"))
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert list(ours.headers.lower_items()) == list(theirs.headers.lower_items())
    assert (ours.headers["x-mixed"], ours.headers["CONTENT-TYPE"]) == ("a, b", "text/plain")


def _prepared_fields(prepared: requests.PreparedRequest) -> dict[str, object]:
    fields: dict[str, object] = dict(vars(prepared))
    fields["headers"] = list(prepared.headers.items())
    fields["_cookies"] = (type(prepared._cookies), len(prepared._cookies or ()))  # type: ignore[attr-defined]
    return fields


def test_prepared_requests_hold_what_requests_prepares(http_server: LoopbackServer) -> None:
    """A shared session's prepared GET and HEAD requests hold what requests prepares, and share nothing mutable."""
    session = get_session()
    with requests.Session() as plain:
        plain.headers = CaseInsensitiveDict(session.headers)
        for method, path in (("GET", "/ok?a=1"), ("head", "/ok"), ("GET", "/ok"), ("POST", "/ok")):
            url = http_server.url(path)
            for _ in range(2):  # the second one finds the prepared URL remembered
                ours = session.request(method, url).request
                theirs = plain.prepare_request(requests.Request(method, url))
                assert ours is not None
                assert _prepared_fields(ours) == _prepared_fields(theirs)
    first, second = session.get(http_server.url()).request, session.get(http_server.url()).request
    assert first is not None and second is not None
    first.hooks["response"].append(print)
    first.headers["X-Mine"] = "1"
    assert first._cookies is not second._cookies  # type: ignore[attr-defined]
    assert (second.hooks, "X-Mine" in second.headers) == ({"response": []}, False)


def test_a_requests_whose_prepared_request_has_other_fields_prepares_them_itself(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should requests' PreparedRequest() set a field the session does not know, prepare() runs for every request."""
    original = requests.models.PreparedRequest.__init__

    def with_extra_field(self: requests.models.PreparedRequest) -> None:
        original(self)
        self.extra = "new in requests"  # type: ignore[attr-defined]

    monkeypatch.setattr(requests.models.PreparedRequest, "__init__", with_extra_field)
    session = get_session()
    for _ in range(2):
        assert session.get(http_server.url()).request.extra == "new in requests"  # type: ignore[union-attr]


def test_request_targets_are_those_requests_sends(http_server: LoopbackServer) -> None:
    """Queries, double slashes, escapes and fragments reach the server as requests sends them, every time."""
    paths = ["/ok?a=1&b=2", "//ok", "/a%20b/?q=%2F", "/ok#frag", "/ok?a=1&b=2"]

    def targets(session: requests.Session) -> list[str]:
        before = len(http_server.requests)
        for path in paths:
            session.get(http_server.url(path))
        return [request.path for request in http_server.requests[before:]]

    ours = targets(get_session())
    with requests.Session() as plain:
        assert ours == targets(plain)


def test_a_prepared_request_with_its_own_path_is_sent_to_that_path(http_server: LoopbackServer) -> None:
    """A PreparedRequest subclass whose path_url differs is sent to its own path, after plain ones to the same URL."""

    class Elsewhere(requests.PreparedRequest):
        @property
        def path_url(self) -> str:
            return "/elsewhere"

    session = get_session()
    session.get(http_server.url("/ok"))
    prepared = Elsewhere()
    prepared.prepare(method="GET", url=http_server.url("/ok"))
    session.send(prepared)
    assert [request.path for request in http_server.requests] == ["/ok", "/elsewhere"]


def test_a_session_subclass_prepare_request_gets_each_request(http_server: LoopbackServer) -> None:
    """A PresetSession subclass's prepare_request is handed a requests.Request for every call, as requests does."""
    seen: list[tuple[str | None, object]] = []

    class Watching(PresetSession):
        def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
            seen.append((request.method, request.data))
            return super().prepare_request(request)

    with Watching() as session:
        session.get(http_server.url())
        session.post(http_server.url(), data=b"x")
    assert seen == [("GET", {}), ("POST", b"x")]
    assert [request.body for request in http_server.requests] == [b"", b"x"]


def test_requests_session_helpers_patched_later_still_run(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dispatch_hook and extract_cookies_to_jar patched on requests.sessions run for every response, as in requests."""
    called: list[str] = []
    dispatch, extract = requests.sessions.dispatch_hook, requests.sessions.extract_cookies_to_jar  # type: ignore[attr-defined]

    def dispatching(*args: Any, **kwargs: Any) -> Any:
        called.append("dispatch")
        return dispatch(*args, **kwargs)

    def extracting(*args: Any) -> None:
        called.append("extract")
        extract(*args)

    monkeypatch.setattr(requests.sessions, "dispatch_hook", dispatching)
    monkeypatch.setattr(requests.sessions, "extract_cookies_to_jar", extracting)
    session = get_session()
    session.get(http_server.url())
    session.get(http_server.url())
    assert called == ["dispatch", "extract"] * 2


def test_an_adapter_subclass_add_headers_and_cert_verify_run_for_every_request(http_server: LoopbackServer) -> None:
    """A PresetAdapter subclass's add_headers and cert_verify are called for each request of a PresetSession."""
    verified: list[str] = []

    class Stamping(PresetAdapter):
        def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
            request.headers["X-Stamp"] = "yes"

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            verified.append(url)

    with default_session() as session:
        session.mount("http://", Stamping(session.config))
        session.get(http_server.url())
        session.get(http_server.url())
    assert [request.header("X-Stamp") for request in http_server.requests] == ["yes", "yes"]
    assert verified == [http_server.url()] * 2


def test_only_the_presets_own_header_lines_are_kept(http_server: LoopbackServer) -> None:
    """Per-call headers, credentials and cookies are sent every time but never kept in the header-line memo."""
    session = get_session()
    for _ in range(2):
        session.get(
            http_server.url(),
            auth=("user", "secret-pass"),
            cookies={"sid": "secret-cookie"},
            headers={"X-Request-Id": "id-123", "X-Trace": "t"},
        )
    seen = http_server.requests[-1]
    assert (seen.header("Cookie"), seen.header("Authorization") is not None) == ("sid=secret-cookie", True)
    assert (seen.header("X-Request-Id"), seen.header("X-Trace")) == ("id-123", "t")
    kept = b"".join(session.adapter._header_lines.values())
    assert b"Authorization" not in kept and b"secret-cookie" not in kept and b"id-123" not in kept
    assert {name for name, _ in session.adapter._header_lines} <= {
        "User-Agent", "Accept-Encoding", "Accept", "Connection", "Cache-Control", "Pragma"
    }
    assert bool(session.adapter._header_lines) == _upstream.header_lines_usable()  # the static lines are remembered


#: Per-request headers laid over a shared session's defaults: re-spelt, dropped with None, set twice.
_OVERLAY_CALLS: list[Any] = [
    {"Accept-Encoding": None, "X-Request-Id": "1"},
    {"x-a": None, "X-A": "kept"},
    {"X-A": "dropped", "x-a": None},
    {"accept": None, "ACCEPT": "text/html"},
    {"ACCEPT": "text/plain", "Authorization": "Bearer t"},
    CaseInsensitiveDict({"X-Case": "insensitive", "connection": "close"}),
    {"X-Bytes": b"raw", "User-Agent": None},
]


def test_request_headers_over_shared_defaults_reach_the_server_as_requests_sends_them(
    http_server: LoopbackServer,
) -> None:
    """Headers a call sets, re-spells or drops with None over a shared session's defaults arrive as requests sends."""

    def lines(session: requests.Session) -> list[list[tuple[str, str]]]:
        sent = []
        for headers in _OVERLAY_CALLS:
            session.get(http_server.url(), headers=headers)
            sent.append(list(http_server.requests[-1].headers.items()))
        return sent

    session = get_session()
    ours = lines(session)
    with requests.Session() as plain:
        plain.headers = CaseInsensitiveDict(session.headers)
        assert ours == lines(plain)
    # Without the session's Accept-Encoding, http.client writes its own.
    assert ("Accept-Encoding", "identity") in ours[0] and ("X-A", "kept") in ours[1]
    assert "X-A" not in dict(ours[2]) and "x-a" not in dict(ours[2])


@requires_fast_path
def test_a_shared_session_validates_only_a_calls_own_headers(
    http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a shared session's validated defaults, only the call's own surviving headers are checked, in order."""
    session = get_session()
    checked: list[object] = []
    original = requests.models.check_header_validity

    def counting(header: tuple[str, str | bytes]) -> None:
        checked.append(header)
        original(header)

    monkeypatch.setattr(requests.models, "check_header_validity", counting)
    session.get(http_server.url(), headers={"X-One": "1", "user-agent": "mine", "Accept": None})
    assert checked == [("user-agent", "mine"), ("X-One", "1")]
    assert http_server.requests[-1].header("User-Agent") == "mine"


def test_the_first_invalid_header_in_requests_order_is_the_one_refused(http_server: LoopbackServer) -> None:
    """With two invalid per-call headers, a shared session names the one requests names, and sends nothing."""
    headers = {"X-Late": "bad\n", "accept": " leading space"}
    with requests.Session() as plain:
        plain.headers = CaseInsensitiveDict(get_session().headers)
        with pytest.raises(requests.exceptions.InvalidHeader) as theirs:
            plain.get(http_server.url(), headers=headers)
    with pytest.raises(requests.exceptions.InvalidHeader) as ours:
        get_session().get(http_server.url(), headers=headers)
    assert str(ours.value) == str(theirs.value) and "' leading space'" in str(ours.value)
    assert http_server.requests == []


#: Query parameters as callers pass them: lists, None, bytes, numbers, non-ASCII, ordered, as pairs.
_PARAMS: list[Any] = [
    {"page": "1", "q": "café crème 1-2"},
    {"a": ["1", None, "2"], "b": None, "c": ""},
    {b"raw": b"bytes", "n": 5, "f": 1.5},
    collections.OrderedDict([("z", "1"), ("a", "2")]),
    [("k", "1"), ("k", "2")],
    "already=encoded&x=1",
    {},
]


def test_params_reach_the_server_as_requests_encodes_them(http_server: LoopbackServer) -> None:
    """Params of every shape, over a URL with a query of its own or without, reach the server as requests sends them."""

    def targets(session: requests.Session) -> list[str]:
        before = len(http_server.requests)
        for path in ("/items/1", "/items/2?x=y"):
            for params in _PARAMS:
                session.get(http_server.url(path), params=params)
        return [request.path for request in http_server.requests[before:]]

    for ours in (get_session(), default_session()):
        with ours, requests.Session() as plain:
            assert targets(ours) == targets(plain)
