"""What requests' own suite may not pass under session_presets, and why (docs/compatibility.md)."""

from __future__ import annotations

#: Tests that reach beyond loopback: CI has no network but the package registries.
NEEDS_INTERNET: dict[str, str] = {
    "tests/test_requests.py::TestTimeout::test_connect_timeout[timeout0]": "connects to 10.255.255.1 (a tarpit)",
    "tests/test_requests.py::TestTimeout::test_connect_timeout[timeout1]": "connects to 10.255.255.1 (a tarpit)",
    "tests/test_requests.py::TestTimeout::test_total_timeout_connect[timeout0]": "connects to 10.255.255.1 (a tarpit)",
    "tests/test_requests.py::TestTimeout::test_total_timeout_connect[timeout1]": "connects to 10.255.255.1 (a tarpit)",
    "tests/test_requests.py::TestRequests::test_errors[http://doesnotexist.google.com-ConnectionError]":
        "resolves a public DNS name",
    "tests/test_requests.py::TestRequests::test_proxy_error": "resolves 'non-resolvable-address' through DNS",
}

#: The differences that several tests meet (docs/compatibility.md, 'Documented differences').
_ENV_ONCE = 'reads the environment once, when the session is built: never per call (proxies "env", ca_bundle)'
_NETRC = 'store_credentials=False: a preset never reads netrc'

#: By mode: the tests that fail for a documented difference, each with that difference.
ALLOWED: dict[str, dict[str, str]] = {
    "session": {
        "tests/test_requests.py::TestRequests::test_HTTP_302_TOO_MANY_REDIRECTS":
            "max_redirects is 10 in the default preset; requests allows 30",
        "tests/test_requests.py::TestRequests::test_basicauth_with_netrc":
            _NETRC,
        "tests/test_requests.py::TestRequests::test_basicauth_with_netrc_leak":
            _NETRC,
        "tests/test_requests.py::TestRequests::test_env_cert_bundles[env1-/some/path]":
            _ENV_ONCE,
        "tests/test_requests.py::TestRequests::test_env_cert_bundles[env3-/some/path]":
            _ENV_ONCE,
        "tests/test_requests.py::TestRequests::test_env_cert_bundles[env6-/some/path]":
            _ENV_ONCE,
        "tests/test_requests.py::TestRequests::test_env_cert_bundles[env7-/curl/path]":
            _ENV_ONCE,
        "tests/test_requests.py::TestRequests::test_auth_is_stripped_on_http_downgrade":
            "allow_insecure_redirects=False: an https-to-http redirect raises InsecureRedirectError",
        "tests/test_requests.py::test_proxy_env_vars_override_default[http_proxy-http://example.com-socks5://proxy.com:9876]":
            _ENV_ONCE,
        "tests/test_requests.py::test_proxy_env_vars_override_default[https_proxy-https://example.com-socks5://proxy.com:9876]":
            _ENV_ONCE,
        "tests/test_requests.py::test_proxy_env_vars_override_default[all_proxy-http://example.com-socks5://proxy.com:9876]":
            _ENV_ONCE,
        "tests/test_requests.py::test_proxy_env_vars_override_default[all_proxy-https://example.com-socks5://proxy.com:9876]":
            _ENV_ONCE,
    },
    "adapter": {
        "tests/test_requests.py::TestRequests::test_basicauth_with_netrc_leak":
            "store_credentials=False: PresetAdapter drops an Authorization that requests read from netrc",
    },
}
