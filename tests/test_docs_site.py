"""The documentation site builds without warnings, the CLI page covers every command and
option the parser offers, and the API reference covers every public name."""

from __future__ import annotations

import argparse
import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import iris360_async
import iris360_async.testing
from iris360_async import errors, resources
from iris360_async.cli._parser import build_parser
from iris360_async.testing import pytest_plugin

ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _leaves(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_leaves(sub, (*prefix, name)))
    if not out and prefix:
        out.append((prefix, parser))
    return out


LEAVES = _leaves(build_parser())


def test_every_command_is_documented() -> None:
    assert len(LEAVES) == 13
    for path, _ in LEAVES:
        command = "iris360 " + " ".join(path)
        assert command in CLI_PAGE, f"docs/cli.md does not mention {command!r}"


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_is_documented(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert re.search(re.escape(option) + r"\b", CLI_PAGE), (
                    f"docs/cli.md does not mention {option} of iris360 {' '.join(path)}"
                )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with ``--strict``; any download attempt fails (dead proxy)."""
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"no_proxy"}}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_mkdocs_builds_strictly(site: Path) -> None:
    assert (site / "bulk" / "index.html").is_file()
    assert (site / "cli" / "index.html").is_file()
    assert (site / "reference" / "client" / "index.html").is_file()


def test_reference_fetches_no_inventories() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    handlers = [
        plugin["mkdocstrings"]["handlers"]
        for plugin in config["plugins"]
        if isinstance(plugin, dict) and "mkdocstrings" in plugin
    ]
    assert handlers, "mkdocstrings is not configured"
    for handler in handlers[0].values():
        assert "inventories" not in handler
        assert "import" not in handler


def _reference(site: Path) -> str:
    pages = sorted((site / "reference").glob("*/index.html"))
    assert len(pages) >= 7
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def _anchors(site: Path) -> set[str]:
    return set(re.findall(r'\bid="(iris360_async[\w.]*)"', _reference(site)))


def _documented(anchors: set[str], name: str) -> bool:
    return any(anchor == name or anchor.endswith("." + name) for anchor in anchors)


@pytest.mark.parametrize(
    ("module", "name"),
    [("iris360_async", n) for n in iris360_async.__all__]
    + [("iris360_async.errors", n) for n in errors.__all__]
    + [("iris360_async.testing", n) for n in iris360_async.testing.__all__]
    + [("iris360_async.testing.pytest_plugin", n) for n in pytest_plugin.__all__],
)
def test_every_public_name_is_on_the_reference(site: Path, module: str, name: str) -> None:
    assert _documented(_anchors(site), name), f"{module}.{name} is missing from docs/reference/"


def _public_classes() -> list[type]:
    objects = [getattr(iris360_async, n) for n in iris360_async.__all__]
    objects += [getattr(iris360_async.testing, n) for n in iris360_async.testing.__all__]
    objects += [getattr(resources, n) for n in resources.__all__ if n != "APIResource"]
    return [obj for obj in objects if isinstance(obj, type)]


def _public_members(cls: type) -> list[str]:
    names = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod, property)) or inspect.isfunction(value):
            names.append(name)
    return names


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_every_public_method_is_on_the_reference(site: Path, cls: type) -> None:
    anchors = _anchors(site)
    missing = [
        name for name in _public_members(cls) if not _documented(anchors, f"{cls.__name__}.{name}")
    ]
    assert not missing, f"{cls.__name__}: {missing} missing from docs/reference/"


def test_issue_names_are_on_the_reference(site: Path) -> None:
    anchors = _anchors(site)
    for name in (
        "DevicesResource.send_commands_bulk",
        "DevicesResource.import_file",
        "DevicesResource.page_fetcher",
        "DevicesResource.bulk_sender",
        "OutConnectorsResource.update_models",
        "TimeseriesResource.query",
        "RetryPolicy",
        "query_timeseries",
    ):
        assert _documented(anchors, name), name
    assert "requests_per_call" in _reference(site)


def _signatures(site: Path) -> list[str]:
    blocks = re.findall(
        r'<div class="doc-signature[^"]*"[^>]*>(.*?)</div>', _reference(site), flags=re.DOTALL
    )
    return [html.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks]


def test_reference_signatures_show_no_private_parameters(site: Path) -> None:
    signatures = _signatures(site)
    assert len(signatures) > 100
    for signature in signatures:
        assert not re.search(r"[(,]\s*\**_\w+\s*[:=,)]", signature), signature
        assert "object at 0x" not in signature, signature
        assert not re.search(r"=\s*_\w+", signature), signature
    client = next(s for s in signatures if s.startswith("Iris360Client("))
    assert "retry_policy: RetryPolicy | None = None" in client
    assert "_clock" not in client
    assert "_environ" not in client


def test_reference_shows_model_constructors(site: Path) -> None:
    signatures = _signatures(site)
    request = next(s for s in signatures if s.startswith("TimeSeriesRequest("))
    assert "device_ids: list[str]" in request
    assert "options: TimeSeriesOptions = TimeSeriesOptions()" in request
    row = next(s for s in signatures if s.startswith("TimeSeriesRow("))
    assert "measure_id: str" in row


def test_reference_turns_sphinx_roles_into_links(site: Path) -> None:
    text = _reference(site)
    assert not re.search(r":(class|meth|func|attr|data|mod|exc|obj):(`|<code>)", text)
    # "Use :meth:`run` (returns a :class:`CommandReport`)" in CommandDispatcher's docstring
    assert re.search(r'<a [^>]*href="#iris360_async\.CommandDispatcher\.run"', text)
