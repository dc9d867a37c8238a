"""Cookie jars per preset: ``cookies="memory"``, ``"none"``, or ``"file"`` with ``cookie_file``."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import tempfile
import warnings
from typing import Any

from requests.cookies import RequestsCookieJar

from ._config import PresetConfig
from ._errors import ConfigError

__all__ = ["build_cookie_jar", "save_cookie_file"]


class _BlockAllCookies(http.cookiejar.DefaultCookiePolicy):
    """cookies='none': nothing a server sets is ever stored."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def build_cookie_jar(config: PresetConfig) -> RequestsCookieJar:
    """The jar a session of ``config`` starts with: loaded from ``cookie_file``, blocking, or empty.

    Raises:
        ConfigError: the cookie file belongs to another user or is not a Netscape cookies.txt file.
    """
    if config.cookies == "file":
        assert config.cookie_file is not None
        return _load_cookie_file(config.cookie_file)
    jar = RequestsCookieJar()
    if config.cookies == "none":
        jar.set_policy(_BlockAllCookies())
    return jar


def _load_cookie_file(path: str) -> RequestsCookieJar:
    jar = RequestsCookieJar()
    if not os.path.exists(path):
        return jar
    try:
        info = os.stat(path)
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ConfigError(
                f"cookie_file={path!r} is owned by another user (uid {info.st_uid}); "
                "refusing to read cookies from it"
            )
        source = http.cookiejar.MozillaCookieJar()
        with warnings.catch_warnings():
            # cookiejar warns "http.cookiejar bug!" on a malformed line before raising LoadError.
            warnings.filterwarnings("ignore", "http.cookiejar bug", UserWarning)
            source.load(path, ignore_discard=True, ignore_expires=False)
    except (http.cookiejar.LoadError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cookie_file={path!r} cannot be read ({exc}); expected a Netscape cookies.txt file. "
            "It was left untouched."
        ) from exc
    for cookie in source:
        jar.set_cookie(cookie)
    return jar


def save_cookie_file(path: str, jar: http.cookiejar.CookieJar) -> None:
    """Write ``jar`` to ``path`` as a cookies.txt file, mode 0600, by an atomic rename."""
    target = http.cookiejar.MozillaCookieJar()
    for cookie in jar:
        target.set_cookie(cookie)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".cookies-", dir=directory)
    os.close(fd)
    try:
        os.chmod(temp, 0o600)
        target.save(temp, ignore_discard=True, ignore_expires=False)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
