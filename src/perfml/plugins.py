"""One registry type for every family of plugins: detectors, rule kinds, drift measures,
notifiers and pipelines.

A :class:`Registry` maps names to plugins of one kind. ``register`` is a decorator that takes
the name from the plugin (its ``name`` attribute) unless one is given; a name registered twice
for different plugins raises the family's "taken" error, a lookup of a name it does not hold
raises its "unknown" error naming the choices. Each family has a default instance (perfml's
built-ins, and whatever plugins register there on import); every function that looks plugins
up takes an explicit registry too, so a test builds a fresh one.

>>> shapes: Registry[type] = Registry("shape")
>>> @shapes.register
... class Circle:
...     name = "circle"
>>> shapes.get("circle").__name__, shapes.names()
('Circle', ['circle'])
>>> shapes.get("square")
Traceback (most recent call last):
...
perfml.plugins.UnknownPluginError: unknown shape 'square' (known: circle)
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, overload

from perfml.errors import UsageError

T = TypeVar("T")
P = TypeVar("P")


class UnknownPluginError(UsageError):
    """No plugin of that name; the message names the known ones. Families subclass it."""

    def __init__(self, kind: str, name: str, known: Sequence[str], where: str = "") -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        at = f"{where}: " if where else ""
        super().__init__(f"{at}unknown {kind} {name!r} (known: {', '.join(self.known) or 'none'})")


class PluginTakenError(UsageError):
    """A second, different plugin was registered under a name already taken."""

    def __init__(self, kind: str, name: str, holder: object) -> None:
        self.kind, self.name = kind, name
        held = getattr(holder, "__qualname__", type(holder).__qualname__)
        super().__init__(f"{kind} name {name!r} is taken by {held}")


class Registry(Generic[T]):
    """Plugins of one ``kind`` by name, in the order registered (see the module's docstring).

    ``unknown`` and ``taken`` are the family's error classes (subclasses of
    :class:`UnknownPluginError` and :class:`PluginTakenError`); ``builtins`` names a module
    imported on the first lookup, whose import registers the family's built-in plugins;
    ``name_attribute`` is the plugin's attribute holding its name.
    """

    def __init__(
        self,
        kind: str,
        *,
        unknown: type[UnknownPluginError] = UnknownPluginError,
        taken: type[PluginTakenError] = PluginTakenError,
        builtins: str | None = None,
        name_attribute: str = "name",
    ) -> None:
        self.kind = kind
        self._name_attribute = name_attribute
        self._unknown = unknown
        self._taken = taken
        self._builtins = builtins
        self._plugins: dict[str, T] = {}
        self._lock = threading.RLock()

    @overload
    def register(self, plugin: P, /) -> P: ...

    @overload
    def register(self, plugin: None = None, /, *, name: str) -> Callable[[P], P]: ...

    def register(self, plugin: Any = None, /, *, name: str | None = None) -> Any:
        """Decorator: add ``plugin`` under ``name``, or under the name it carries."""

        def add(found: P) -> P:
            chosen = name if name is not None else getattr(found, self._name_attribute, None)
            if not isinstance(chosen, str) or not chosen:
                raise TypeError(f"a {self.kind} plugin needs a name: {found!r} has none")
            self.add(chosen, found)  # type: ignore[arg-type]
            return found

        return add if plugin is None else add(plugin)

    def add(self, name: str, plugin: T) -> T:
        """Add ``plugin`` under ``name`` (again the same plugin: nothing changes)."""
        with self._lock:
            held = self._plugins.get(name)
            if held is not None and held is not plugin and not _same_class(held, plugin):
                raise self._taken(self.kind, name, held)
            self._plugins[name] = plugin
        return plugin

    def remove(self, name: str) -> None:
        """Forget the plugin ``name`` (none: nothing happens)."""
        with self._lock:
            self._plugins.pop(name, None)

    @contextmanager
    def added(self, plugins: Iterable[T]) -> Iterator[Registry[T]]:
        """Register ``plugins`` (by their names) for the duration of a ``with`` block."""
        chosen = [(getattr(plugin, self._name_attribute), plugin) for plugin in plugins]
        fresh = [name for name, _ in chosen if name not in self]
        for name, plugin in chosen:
            self.add(name, plugin)
        try:
            yield self
        finally:
            for name in fresh:
                self.remove(name)

    def get(self, name: str, where: str = "") -> T:
        """The plugin ``name``, or the family's "unknown" error naming the known ones;
        ``where`` says where the name was read (``monitoring.rules[2].kind``)."""
        self._load_builtins()
        found = self._plugins.get(name)
        if found is None:
            raise self._unknown(self.kind, name, list(self._plugins), where)
        return found

    def names(self) -> list[str]:
        """Every name, in the order registered."""
        self._load_builtins()
        return list(self._plugins)

    def copy(self) -> Registry[T]:
        """A new registry holding the same plugins (a test adds its own to it)."""
        self._load_builtins()
        twin: Registry[T] = Registry(
            self.kind,
            unknown=self._unknown,
            taken=self._taken,
            name_attribute=self._name_attribute,
        )
        twin._plugins = dict(self._plugins)
        return twin

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._plugins

    def __iter__(self) -> Iterator[T]:
        self._load_builtins()
        return iter(list(self._plugins.values()))

    def _load_builtins(self) -> None:
        if self._builtins is None:
            return
        with self._lock:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._plugins)})"


def _same_class(held: object, plugin: object) -> bool:
    """Two instances of one class (a stateless plugin registered as an instance twice, e.g. a
    module imported under two names) are the same plugin."""
    return not isinstance(held, type) and type(held) is type(plugin)
