"""Imports on first use, so a process that needs only part of memsys (a reader worker, the
memsys server's supervisor, `memsys jobs`, a script's `count_memories()`) does not pay for
the Weaviate and OpenAI clients it never uses: package attributes loaded on first read
(PEP 562, `lazy_exports`), a module's heavy names loaded on first call (`lazy_names`,
`lazy_module`), a heavy module's exceptions caught without importing it (`caught_once_imported`),
and an exception's heavy base class adopted when the first one is made (`late_base`).
tests/test_startup.py checks which commands import what."""
from __future__ import annotations

import importlib
import sys
import threading
from typing import Any, Callable, Mapping


def lazy_exports(
    package: str, namespace: dict[str, Any], homes: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`, whose public names live in the
    modules `homes` maps them from. A name is imported when first read, then kept in
    `namespace` (the package's globals), so later reads are plain attribute lookups."""
    home_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home_of[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *home_of})

    return __getattr__, __dir__, sorted(home_of)


class LazyName:
    """A module attribute, imported the first time it is called, read from or checked against
    (`isinstance`), so a module can name a heavy one at its top and pay for it only on the
    path that uses it: the CLI builds its parser and answers `--help` without loading the
    engine's Weaviate and OpenAI clients. With no name it stands for the module itself
    (`lazy_module`). Not for a base class or an `except` clause (those need the class itself:
    see `caught_once_imported` for the clause)."""

    __slots__ = ("_module", "_name", "_value")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name
        self._value: Any = None

    def load(self) -> Any:
        if self._value is None:
            module = importlib.import_module(self._module)
            self._value = getattr(module, self._name) if self._name else module
        return self._value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self.load())

    def __subclasscheck__(self, subclass: type) -> bool:
        return issubclass(subclass, self.load())

    def __repr__(self) -> str:
        return f"<{self._module}{'.' if self._name else ''}{self._name}, imported on first use>"


def lazy_names(module: str, *names: str) -> tuple[LazyName, ...]:
    """`A, B = lazy_names("pkg.mod", "A", "B")`: what `from pkg.mod import A, B` names,
    imported on first use (see LazyName)."""
    return tuple(LazyName(module, name) for name in names)


def lazy_module(module: str) -> LazyName:
    """`wire = lazy_module("memsys.store.wire")`: the module, imported the first time one of
    its names is read (`wire.send(...)`)."""
    return LazyName(module, "")


def caught_once_imported(module: str, *names: str) -> Callable[..., tuple[type[BaseException], ...]]:
    """For an `except` clause (or an `isinstance` check) on a heavy module's exceptions that
    does not import the module: `weaviate_errors = caught_once_imported("weaviate.exceptions",
    "WeaviateBaseError")`, then `except weaviate_errors(OSError) as e:`. The clause's tuple is
    made when an exception reaches it; while the module is not imported none of its
    exceptions can exist, so the tuple holds only the others, and once it is, its classes
    too."""

    def caught(*others: type[BaseException]) -> tuple[type[BaseException], ...]:
        loaded = sys.modules.get(module)
        if loaded is None:
            return others
        # getattr's default: a module still being imported may not have made the class yet
        # (and then there is no instance of it either).
        return (*(c for c in (getattr(loaded, name, None) for name in names) if c is not None), *others)

    return caught


_ADOPTING = threading.Lock()


def late_base(module: str, name: str) -> Callable[[type[BaseException]], type[BaseException]]:
    """A class decorator for an exception that must also be an instance of a heavy module's
    exception (memsys's provider errors are `openai.OpenAIError`s, so code that catches the
    OpenAI client's errors catches them): `module.name` becomes its first base when the
    module is imported already, or else when the first instance is made (before it can be
    raised, so every `except module.name` sees it), not when memsys is imported. Its
    subclasses follow (Python recomputes their order of bases)."""

    def decorate(cls: type[BaseException]) -> type[BaseException]:
        def adopt() -> None:
            base = getattr(importlib.import_module(module), name)
            with _ADOPTING:
                if base not in cls.__mro__:
                    cls.__bases__ = (base, *cls.__bases__)

        original = cls.__init__

        def __init__(self: BaseException, *args: Any, **kwargs: Any) -> None:
            adopt()
            original(self, *args, **kwargs)

        __init__.__doc__ = original.__doc__
        cls.__init__ = __init__  # type: ignore[method-assign]
        if module in sys.modules:
            adopt()
        return cls

    return decorate
