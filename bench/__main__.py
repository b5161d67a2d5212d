"""`make bench`: run every benchmark and print each figure beside its target.
`python -m bench cache pipeline` runs only the named modules; `python -m bench
pipeline:reembed` one step of a module that has steps (bench.pipeline)."""
from __future__ import annotations

import importlib
import sys

from bench.common import Result

MODULES = ["bench.cache", "bench.pipeline", "bench.ocr", "bench.cluster", "bench.provider", "bench.server", "bench.chunking",
           "bench.sources", "bench.remote_sources", "bench.service", "bench.workers"]


def main(argv: list[str]) -> int:
    steps = dict(a.split(":", 1) for a in argv if ":" in a)  # module -> the one step to run
    named = {a.split(":", 1)[0] for a in argv}
    wanted = [m for m in MODULES if not argv or m.split(".")[-1] in named]
    results: list[Result] = []
    for name in wanted:
        module = importlib.import_module(name)
        print(f"== {name}", flush=True)
        step = steps.get(name.split(".")[-1])
        for result in (module.run(step) if step else module.run()):
            print(result.line(), flush=True)
            results.append(result)
    missed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(missed)} of {len(results)} figures meet their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
