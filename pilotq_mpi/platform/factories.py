"""Loading objects named by an import path ``"package.module:attribute"`` (QPU factories)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


class QpuConfigError(ValueError):
    """A QPU declaration (factory path, arguments, credentials) cannot be used."""


def load_factory(path: str) -> Callable[..., Any]:
    """Import a factory given as ``"package.module:attribute"`` (attribute may be dotted).

    Raises:
        QpuConfigError: the path is malformed, the module or attribute does not exist, or
            the attribute is not callable. The message names the path and what to fix.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise QpuConfigError(
            f"QPU factory path must look like 'package.module:function', got {path!r}"
        )
    module_name, attr_path = path.split(":")
    if not module_name or not attr_path:
        raise QpuConfigError(
            f"QPU factory path {path!r} needs both a module and an attribute, "
            "e.g. 'pilotq_mpi.workflows.qpu:fake_backend'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise QpuConfigError(
            f"QPU factory {path!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that it is installed on every pinned rank"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise QpuConfigError(
                f"QPU factory {path!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise QpuConfigError(
            f"QPU factory {path!r} is a {type(obj).__name__}, not a callable"
        )
    return obj
