"""Package attributes loaded on first use (PEP 562), so importing a package costs almost
nothing and a process that needs only part of memsys (a reader worker, the memsys
server's supervisor, `memsys server status`) does not pay for the Weaviate and OpenAI
clients it never uses."""
from __future__ import annotations

import importlib
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
