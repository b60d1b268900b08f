"""Griffe extension for the API reference: signatures show what callers may pass.

* msgspec ``Struct`` and ``NamedTuple`` classes get the constructor msgspec / typing builds
  from their annotated fields (static analysis sees no ``__init__`` for them otherwise);
  ``msgspec.field(default=...)`` / ``default_factory=...`` become the plain default.
* Parameters whose name starts with ``_`` (test hooks such as ``_clock``, ``_random``,
  ``_environ``) are left out of every signature.
* A default that is a private name (a "not given" sentinel such as ``_UNSET``) is shown as
  ``...``: the parameter is optional, and its docstring says what leaving it out means.
* The Sphinx roles the docstrings use (``:class:`Timeout```, ``:meth:`~AsyncPaginator.pages```)
  become links to the object when it is on the reference, and code otherwise; a literal block
  introduced with ``::`` loses the second colon.
"""

from __future__ import annotations

import html
import re
from typing import Any, cast

import griffe

_KEYWORD_ONLY = cast("griffe.ParameterKind", griffe.ParameterKind.keyword_only)
_POSITIONAL_OR_KEYWORD = cast("griffe.ParameterKind", griffe.ParameterKind.positional_or_keyword)
_RECORD_BASES = {"msgspec.Struct", "typing.NamedTuple", "typing_extensions.NamedTuple"}
_FIELD_CALLS = {"msgspec.field"}


_ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
_LITERAL_BLOCK = re.compile(r"(\S)::(?=\n)")


def _target(obj: griffe.Object, ref: str) -> str | None:
    head, _, rest = ref.partition(".")
    try:
        path = obj.resolve(head)
    except griffe.NameResolutionError:
        path = head
    if rest:
        path = f"{path}.{rest}"
    try:
        target = obj.modules_collection[path]
        return str(target.final_target.path if target.is_alias else target.path)
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _markdown_roles(obj: griffe.Object) -> None:
    docstring = obj.docstring
    if docstring is None:
        return

    def link(match: re.Match[str]) -> str:
        short, ref = match.groups()
        title = ref.rsplit(".", 1)[-1] if short else ref
        path = _target(obj, ref)
        if path is None:
            return f"`{title}`"
        return f'<autoref identifier="{html.escape(path)}" optional><code>{title}</code></autoref>'

    docstring.value = _LITERAL_BLOCK.sub(r"\1:", _ROLE.sub(link, docstring.value))


def _public_parameters(parameters: griffe.Parameters) -> griffe.Parameters:
    kept = [p for p in parameters if not p.name.startswith("_")]
    for parameter in kept:
        default = "" if parameter.default is None else str(parameter.default)
        if default.startswith("_") and default.replace(".", "_").isidentifier():
            parameter.default = "..."
    return griffe.Parameters(*kept)


def _is_record(cls: griffe.Class) -> bool:
    try:
        lineage = [cls, *cls.mro()]
    except ValueError:
        lineage = [cls]
    return any(
        isinstance(base, griffe.Expr) and base.canonical_path in _RECORD_BASES
        for klass in lineage
        for base in klass.bases
    )


def _default(attribute: griffe.Attribute) -> str | griffe.Expr | None:
    value = attribute.value
    if isinstance(value, griffe.ExprCall) and value.canonical_path in _FIELD_CALLS:
        for argument in value.arguments:
            if isinstance(argument, griffe.ExprKeyword):
                if argument.name == "default":
                    return argument.value
                if argument.name == "default_factory" and isinstance(argument.value, griffe.Expr):
                    return griffe.ExprCall(function=argument.value, arguments=[])
        return None
    return value


def _fields(cls: griffe.Class) -> list[griffe.Parameter]:
    kw_only = str(cls.keywords.get("kw_only", "False")) == "True"
    kind = _KEYWORD_ONLY if kw_only else _POSITIONAL_OR_KEYWORD
    out = []
    for member in cls.members.values():
        if member.is_alias or not isinstance(member, griffe.Attribute):
            continue
        if member.annotation is None or "property" in member.labels:
            continue
        if "class-attribute" in member.labels and "instance-attribute" not in member.labels:
            continue  # ClassVar
        if str(member.annotation).startswith("ClassVar"):
            continue
        out.append(
            griffe.Parameter(
                member.name, annotation=member.annotation, kind=kind, default=_default(member)
            )
        )
    return out


def _add_record_init(cls: griffe.Class) -> None:
    if "__init__" in cls.members or not _is_record(cls):
        return
    parameters: dict[str, griffe.Parameter] = {}
    try:
        lineage = [*reversed(cls.mro()), cls]
    except ValueError:
        lineage = [cls]
    for klass in lineage:
        for parameter in _fields(klass):
            parameters[parameter.name] = parameter
    ordered = sorted(parameters.values(), key=lambda p: p.kind is _KEYWORD_ONLY)
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=_POSITIONAL_OR_KEYWORD),
            *ordered,
        ),
        returns="None",
    )
    cls.set_member("__init__", init)


def _walk(obj: griffe.Module | griffe.Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    _markdown_roles(obj)
    if isinstance(obj, griffe.Class):
        _add_record_init(obj)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if isinstance(member, (griffe.Module, griffe.Class)):
            _walk(member, seen)
        elif isinstance(member, griffe.Function):
            member.parameters = _public_parameters(member.parameters)
            _markdown_roles(member)
        elif isinstance(member, griffe.Attribute):
            _markdown_roles(member)


class PublicSignatures(griffe.Extension):
    """Constructors for records; no private parameters or sentinel defaults in signatures."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
