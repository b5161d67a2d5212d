"""`make bench`: run every benchmark step and print each figure beside its target, and how
long each step took. `make bench ARGS=--quick` runs only the steps marked quick (the
headline figures, within 5 minutes); `python -m bench cache pipeline` runs the named
modules, `python -m bench pipeline:reembed` one step of a module that has steps.

A step that fails prints why and the run goes on; the exit code is then 1."""
from __future__ import annotations

import functools
import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from bench.common import Result


@dataclass(frozen=True)
class Step:
    name: str  # "module" (its run()) or "module:step" (one of its STEPS, sharing its setup())
    quick: bool = False  # in `--quick`

    @property
    def module(self) -> str:
        return self.name.split(":", 1)[0]


# One line per step, in the order they run. Consecutive steps of one module share its setup
# (bench.pipeline's one Weaviate).
STEPS = [
    Step("cache", quick=True),  # P2, P2l, R4's check speed
    Step("pipeline:cold", quick=True),  # P1, P5, P8
    Step("pipeline:reembed"),  # D1
    Step("pipeline:writes"),  # P3
    Step("pipeline:warm", quick=True),  # P6
    Step("pipeline:requests"),  # P4
    Step("pipeline:memory"),  # P7
    Step("pipeline:browse"),  # D2
    Step("pipeline:samewrites", quick=True),  # P3c
    Step("pipeline:restore"),  # restore vs the client's batch import
    Step("pipeline:smalljobs"),  # an unchanged re-import's and a warm import's job time
    Step("scale"),  # P18 and the table of issue 27, at 10,000 and 100,000 memories
    Step("ocr"),  # I15
    Step("cluster"),  # P13, R12
    Step("provider"),  # P10, P11
    Step("server", quick=True),  # P14
    Step("chunking"),  # C1
    Step("sources"),  # SR1-SR3
    Step("remote_sources"),  # SR1-SR3, remote kinds
    Step("service"),  # P15
    Step("backups"),  # backup and restore of 10,000 memories
    Step("workers"),  # P16: three workers vs one, and a SIGKILLed worker's batch taken over
    Step("read_workers"),  # P16: OCR pages per minute with one worker and with three
]


def chosen(argv: list[str]) -> list[Step]:
    """The steps `argv` names (module or module:step), or all of them (`--quick`: the quick ones)."""
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("--")]
    known = {s.name for s in STEPS} | {s.module for s in STEPS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"no bench step {', '.join(unknown)}; the steps are {', '.join(s.name for s in STEPS)}")
    return [s for s in STEPS
            if (not names or s.name in names or s.module in names) and (s.quick or not quick or names)]


def groups(steps: list[Step]) -> Iterator[list[Step]]:
    """Consecutive steps of one module, together (they share its setup)."""
    group: list[Step] = []
    for step in steps:
        if group and step.module != group[0].module:
            yield group
            group = []
        group.append(step)
    if group:
        yield group


def run_group(group: list[Step]) -> Iterator[tuple[Step, Callable[[], Iterable[Result]]]]:
    """Each step of the group with what measures it, inside the module's shared setup."""
    module = importlib.import_module(f"bench.{group[0].module}")
    if ":" not in group[0].name:
        yield group[0], module.run
        return
    with module.setup() as shared:
        for step in group:
            yield step, functools.partial(module.STEPS[step.name.split(":", 1)[1]], shared)


def main(argv: list[str]) -> int:
    steps = chosen(argv)
    results: list[Result] = []
    failed: list[str] = []
    took: dict[str, float] = {}
    start = time.perf_counter()

    def fail(name: str, began: float, e: Exception) -> None:
        traceback.print_exc()
        took[name] = time.perf_counter() - began
        failed.append(f"{name}: {type(e).__name__}: {e}")
        print(f"FAIL {name} after {took[name]:.0f} s: {type(e).__name__}: {e}", flush=True)

    for group in groups(steps):
        began = time.perf_counter()
        try:
            for step, measure in run_group(group):
                print(f"== {step.name}", flush=True)
                try:  # one broken step does not cost the others their figures
                    for result in measure():
                        print(result.line(), flush=True)
                        results.append(result)
                except Exception as e:
                    fail(step.name, began, e)
                else:
                    took[step.name] = time.perf_counter() - began
                    print(f"   {step.name} took {took[step.name]:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
                began = time.perf_counter()
        except Exception as e:  # the module's setup (or its teardown) failed
            fail(next((s.name for s in group if s.name not in took), group[-1].name), began, e)
    missed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(missed)} of {len(results)} figures meet their targets; "
          f"{len(steps)} steps in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})"
          + (f"; {len(failed)} failed: " + "; ".join(failed) if failed else ""))
    print("steps: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
