"""Imports a serving process does not need for its first answer, put off until something uses them.

fastai's vision transforms import torchvision, whose `ops` import `torch._dynamo.utils` for one helper,
`is_compile_supported`, called only while `torch.compile` traces. Importing TorchDynamo costs about 1 s of a
4 s start on 2 cores (`python -m bench.cold_start`), a quarter of the time to the first answer, and answering
photos never compiles. So while fastai is imported, `torch._dynamo.utils` is a stand-in whose names load the
real module on first use: a call of a named function, or any other attribute. Once the imports are done the
stand-in leaves `sys.modules`, so a later `import torch._dynamo` (torch.compile, training) gets the real one.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["SERVING_DEFERRED", "StandIn", "deferred_imports"]

# Module -> the names other modules import from it with `from module import name`, all of them callables.
SERVING_DEFERRED: Mapping[str, Sequence[str]] = {"torch._dynamo.utils": ("is_compile_supported",)}


class StandIn(types.ModuleType):
    """A module that imports the real one the first time any of its names is used."""

    def __init__(self, name: str, functions: Sequence[str]) -> None:
        super().__init__(name, f"stand-in for {name} until it is used (model/deferred.py)")
        for function in functions:
            setattr(self, function, self._later(function))

    def real(self) -> types.ModuleType:
        """The real module, imported now if it was not yet."""
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)

    def _later(self, function: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(self.real(), function)(*args, **kwargs)

        call.__name__ = call.__qualname__ = function
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import machinery's probes (__path__, __spec__...) stay misses
            raise AttributeError(name)
        return getattr(self.real(), name)


@contextlib.contextmanager
def deferred_imports(modules: Mapping[str, Sequence[str]] = SERVING_DEFERRED) -> Iterator[None]:
    """Within: each module not yet imported is a `StandIn`; after: they leave `sys.modules` again."""
    placed = {name: StandIn(name, functions) for name, functions in modules.items() if name not in sys.modules}
    sys.modules.update(placed)
    try:
        yield
    finally:
        for name, stand_in in placed.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
