"""A small named registry used for datasets, models, attacks and defenses.

Entries are registered with a decorator and created by name. Unknown names raise
:class:`~covertml.errors.UnknownNameError` listing what exists and the closest match.

Example:
    >>> reg: Registry[int] = Registry("number")
    >>> @reg.register("one", help="the number one")
    ... def _one() -> int:
    ...     return 1
    >>> reg.create("one"), reg.names()
    (1, ['one'])
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from covertml.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered factory with its description and free-form metadata."""

    name: str
    factory: Callable[..., T]
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps names to factories.

    Args:
        kind: What the entries are ("dataset", "model", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str,
        *,
        help: str = "",
        aliases: tuple[str, ...] = (),
        **meta: Any,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers ``factory`` under ``name``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = help or (factory.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, factory, text, dict(meta))
            for alias in aliases:
                self._aliases[alias] = name
            return factory

        return decorator

    def register_class(self, cls: type[Any], **meta: Any) -> type[Any]:
        """Registers dataclass ``cls`` under ``cls.name`` (help: its docstring's first line).

        :meth:`create_checked` then validates options against the class's fields.
        """
        doc = (cls.__doc__ or "").strip().splitlines()
        self.register(cls.name, help=doc[0] if doc else "", cls=cls, **meta)(cls)
        return cls

    def option_names(self, name: str) -> list[str]:
        """The fields of the dataclass registered by :meth:`register_class` as ``name``."""
        import dataclasses

        return [f.name for f in dataclasses.fields(self.get(name).meta["cls"])]

    def create_checked(self, name: str, /, **options: Any) -> T:
        """Like :meth:`create`, but an option the class lacks is a clear error."""
        from covertml.errors import ConfigError

        known = self.option_names(name)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}",
                fix=f"its options are: {', '.join(known) or '(none)'}",
            )
        return self.create(name, **options)

    def resolve(self, name: str) -> str:
        """Returns the canonical name for ``name`` (following aliases)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> Entry[T]:
        """Returns the entry for ``name`` or raises a helpful :class:`UnknownNameError`."""
        canonical = self.resolve(name)
        if canonical not in self._entries:
            known = self.names(include_aliases=True)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint}",
                fix=f"choose one of: {', '.join(self.names())}",
            )
        return self._entries[canonical]

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> T:
        """Calls the factory registered under ``name``."""
        return self.get(name).factory(*args, **kwargs)

    def names(self, *, include_aliases: bool = False) -> list[str]:
        """Registered names, sorted."""
        names = set(self._entries)
        if include_aliases:
            names |= set(self._aliases)
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())
