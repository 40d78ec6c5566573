"""Module attributes built on first use, so that importing a model module does not import a heavy library.

The MLflow pyfunc wrappers subclass ``mlflow.pyfunc.PythonModel``; building them lazily keeps mlflow out of
``import models...`` (the service and the tests import models without tracking anything). The built class is
cached in the module and named after it, so pickles refer to it by reference (``module.Name``).
"""

from __future__ import annotations

from typing import Any, Callable


def lazy_attribute(module_globals: dict[str, Any], name: str, build: Callable[[], type]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that builds ``name`` with ``build()`` on first access:
    ``__getattr__ = lazy_attribute(globals(), "IntentPyfuncModel", _pyfunc_class)``."""
    module = module_globals["__name__"]

    def __getattr__(attr: str) -> Any:
        if attr != name:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}")
        obj = build()
        obj.__module__, obj.__qualname__ = module, name
        module_globals[name] = obj
        return obj

    return __getattr__
