"""Read-only containers that hold a shared session's configuration (docs/design.md).

A shared session is one object for every module of the process, so a change
made by one module (a header, a hook, a mounted adapter) would reach all of
them. Its mappings are these types: reading works as with the requests types
they subclass, and every change raises SharedSessionError naming the way out.
``copy()`` returns an ordinary, mutable container, which is what requests'
own merges use.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from requests.structures import CaseInsensitiveDict

from ._errors import SharedSessionError

__all__ = ["ReadOnlyAdapters", "ReadOnlyDict", "ReadOnlyHeaders", "ReadOnlyList", "freeze_hooks", "shared_refusal"]


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
