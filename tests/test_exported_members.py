"""``iris360_async.__all__`` lists exactly the public names the package exports."""

from __future__ import annotations
import __future__

import iris360_async


def test_all_matches_public_names() -> None:
    public = {
        name
        for name, value in vars(iris360_async).items()
        if not name.startswith("_")
        and not isinstance(value, (type(iris360_async), __future__._Feature))
    }
    exported = set(iris360_async.__all__) - {"__version__"}
    assert exported == public


def test_every_exported_name_resolves() -> None:
    for name in iris360_async.__all__:
        assert getattr(iris360_async, name) is not None, name


def test_exported_classes_show_the_public_module() -> None:
    for name in ("Iris360Client", "NotFoundError", "AsyncPaginator", "CommandDispatcher"):
        assert getattr(iris360_async, name).__module__ == "iris360_async"


def test_models_resolve_after_the_package_is_imported() -> None:
    # Decoders built lazily (after ``import iris360_async``) must still resolve annotations.
    import msgspec

    for name in ("Device", "OutConnector", "Entity", "TimeSeriesResponse", "CommandReport"):
        obj = getattr(iris360_async, name)
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
            msgspec.json.Decoder(obj)
