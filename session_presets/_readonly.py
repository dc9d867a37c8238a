"""Read-only containers that hold a shared session's configuration (docs/design.md).

A shared session is one object for every module of the process, so a change
made by one module (a header, a hook, a mounted adapter) would reach all of
them. Its mappings are these types: reading works as with the requests types
they subclass, and every change raises SharedSessionError naming the way out.
``copy()`` returns an ordinary, mutable container, which is what requests'
own merges use. ``SharedReadOnly`` is the session side: it freezes a session
into these containers and refuses the attribute assignments, mounts and
``close()`` that would change or end it for everyone.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

from requests.exceptions import InvalidHeader
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict

from . import _upstream
from ._errors import SharedSessionError

if TYPE_CHECKING:
    import requests

    _SessionBase = requests.Session
else:
    _SessionBase = object

__all__ = [
    "SHARED_READ_ONLY",
    "ReadOnlyAdapters",
    "ReadOnlyDict",
    "ReadOnlyHeaders",
    "ReadOnlyList",
    "SharedReadOnly",
    "freeze_hooks",
    "shared_refusal",
]

#: What a shared session refuses to change: its configuration, not its cookie jar
#: (docs/design.md, "Shared sessions are read-only").
SHARED_READ_ONLY: Final = frozenset(
    {
        "adapters", "auth", "cert", "headers", "hooks", "max_redirects",
        "params", "proxies", "stream", "trust_env", "verify",
    }
)


def shared_refusal(preset: str, what: str) -> SharedSessionError:
    """Return the error raised when ``what`` of the shared session of ``preset`` is changed."""
    return SharedSessionError(
        f"cannot change {what} of the shared session of preset {preset!r}: get_session() returns "
        "this same object to every module of the process, so the change would reach them all. "
        "For shared configuration use register_preset('NAME', base=..., headers=..., ...) and "
        "get_session('NAME'); for a private session you can change, use default_session(...) "
        "(it accepts auth=); or pass headers=, auth=, params=, cookies= per request"
    )


class _Refuses:
    """Mixin: every mutating method raises the shared-session refusal."""

    _preset: str = "?"
    _what: str = "the configuration"

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise shared_refusal(self._preset, self._what)


class ReadOnlyHeaders(CaseInsensitiveDict):  # type: ignore[type-arg]
    """The shared session's ``headers``: a CaseInsensitiveDict that refuses changes."""

    _frozen = False

    def __init__(self, data: Mapping[str, Any], *, preset: str) -> None:
        super().__init__(data)
        self._preset = preset
        self._frozen = True

    def __setitem__(self, key: str, value: Any) -> None:
        if self._frozen:
            raise shared_refusal(self._preset, "the headers")
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        raise shared_refusal(self._preset, "the headers")


class ReadOnlyList(_Refuses, list):  # type: ignore[type-arg]
    """A list that refuses changes (the shared session's hook lists)."""

    def __init__(self, items: Iterable[Any], *, preset: str, what: str) -> None:
        super().__init__(items)
        self._preset = preset
        self._what = what

    append = extend = insert = remove = pop = clear = sort = reverse = _Refuses._refuse
    __setitem__ = __delitem__ = _Refuses._refuse

    def __iadd__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()

    def __imul__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()


class ReadOnlyDict(_Refuses, dict):  # type: ignore[type-arg]
    """A dict that refuses changes (the shared session's params, proxies and hooks)."""

    def __init__(self, items: Mapping[Any, Any], *, preset: str, what: str) -> None:
        super().__init__(items)
        self._preset = preset
        self._what = what

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _Refuses._refuse

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()


class ReadOnlyAdapters(_Refuses, collections.OrderedDict):  # type: ignore[type-arg]
    """The shared session's ``adapters``: mounting through the mapping is refused too."""

    _frozen = False

    def __init__(self, items: Mapping[str, Any], *, preset: str) -> None:
        # OrderedDict.__init__ stores through __setitem__.
        super().__init__(items)
        self._preset = preset
        self._what = "the mounted adapters"
        self._frozen = True

    def __setitem__(self, key: str, value: Any) -> None:
        if self._frozen:
            self._refuse()
        super().__setitem__(key, value)

    __delitem__ = update = pop = popitem = clear = setdefault = move_to_end = _Refuses._refuse

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()

    def copy(self) -> collections.OrderedDict[str, Any]:  # type: ignore[override]
        """Return a plain, mutable copy (OrderedDict.copy would call this class without its arguments)."""
        # betamax saves session.adapters.copy() before mounting its own adapter.
        return collections.OrderedDict(self)


def freeze_hooks(hooks: Mapping[str, Iterable[Any]], *, preset: str) -> ReadOnlyDict:
    """Return ``hooks`` as a read-only dict of read-only lists."""
    what = "the hooks"
    return ReadOnlyDict(
        {event: ReadOnlyList(funcs, preset=preset, what=what) for event, funcs in hooks.items()},
        preset=preset,
        what=what,
    )


class SharedReadOnly(_SessionBase):
    """Session mixin: once ``_freeze()`` ran, the session's configuration is read-only.

    Setting or deleting an attribute of SHARED_READ_ONLY, or calling ``mount()``,
    raises SharedSessionError; ``close()`` does nothing. The class using it has
    ``config`` (a PresetConfig) and ``adapter`` (its PresetAdapter).
    """

    _shared = False
    #: A shared session's default headers as requests prepares them, validated once (see _freeze).
    _header_template: CaseInsensitiveDict[Any] | None = None
    #: Whether a shared session's (frozen) default headers hold a None value.
    _header_none: bool | None = None

    config: Any
    adapter: Any

    def _freeze(self) -> None:
        """Make the configuration read-only: this session is shared by the whole process."""
        name = self.config.name
        self.headers = ReadOnlyHeaders(self.headers, preset=name)
        self.params = ReadOnlyDict(self.params, preset=name, what="the params")
        self.proxies = ReadOnlyDict(self.proxies, preset=name, what="the proxies")
        self.hooks = freeze_hooks(self.hooks, preset=name)
        self.adapters = ReadOnlyAdapters(self.adapters, preset=name)
        self.adapter.shared_preset = True
        self._header_none = _upstream.has_none_value(self.headers)
        if not self._header_none:
            probe = PreparedRequest()
            with contextlib.suppress(InvalidHeader):
                # An invalid header keeps no template: every request then raises, as requests does.
                probe.prepare_headers(self.headers)
                self._header_template = probe.headers
        self._shared = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self._shared and name in SHARED_READ_ONLY:
            raise shared_refusal(self.config.name, name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if self._shared and name in SHARED_READ_ONLY:
            raise shared_refusal(self.config.name, name)
        super().__delattr__(name)

    def mount(self, prefix: str, adapter: Any) -> None:
        """Mount ``adapter`` for URLs starting with ``prefix``, as requests does.

        An HTTPAdapter that is not a PresetAdapter is warned about once (see the
        class); mocks built on ``BaseAdapter`` and ``http+unix://`` adapters are not.

        Raises:
            SharedSessionError: this is a shared session (read-only).
        """
        if self._shared:
            raise shared_refusal(self.config.name, f"the mounted adapters (mount({prefix!r}, ...))")
        super().mount(prefix, adapter)

    def close(self) -> None:
        """Same as ``finish_tasks_and_invalidate()``; safe to call twice.

        On a shared session it does nothing, as invalidating ``URLSession.shared``
        does nothing: other modules hold it. ``close_all()`` and an explicit
        ``finish_tasks_and_invalidate()`` or ``invalidate_and_cancel()`` end it.
        """
        if self._shared:
            return
        super().close()
