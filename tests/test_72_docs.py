"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, offline, from the README's own
sections, with the CLI reference generated from the click commands and the Python API from the
docstrings; a broken reference, link or README section fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

import icecube_cloud
import icecube_cloud.ml
import icecube_cloud.synthetic
from icecube_cloud.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTION = re.compile(r"^<!-- --8<-- \[start:([a-z-]+)\] -->$", re.M)
INCLUDE = re.compile(r'^--8<-- "README\.md:([a-z-]+)"$', re.M)


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of CONFIG into SITE, run from the checkout as `make docs` runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    run = _mkdocs(ROOT / "mkdocs.yml", out)
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text()


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def test_every_readme_section_is_on_exactly_one_page() -> None:
    """The README is the one text: each marked section is included once, none is copied."""
    sections = SECTION.findall((ROOT / "README.md").read_text())
    assert len(sections) == len(set(sections)) >= 10
    included = [name for page in DOCS.rglob("*.md") for name in INCLUDE.findall(page.read_text())]
    assert sorted(included) == sorted(sections)


def test_pages_hold_the_readme_text(site: Path) -> None:
    assert "make demo" in _page(site, ".")
    assert "Atomic publication" in _page(site, "reliability")
    assert "ours/ceiling" in _page(site, "performance")
    assert "Where we differ from the original icecube" in _page(site, "config")
    assert "Where things live" in _page(site, "architecture")
    # The README's links between its sections point to the pages that now hold them.
    assert 'href="../performance/#performance"' in _page(site, "config")
    assert 'href="../cube/#map-geometry-cubes"' in _page(site, "config")
    assert 'href="../training/#training"' in _page(site, "using")


def _commands(group: click.Group, prefix: str) -> list[str]:
    names = []
    for name, cmd in group.commands.items():
        names.append(f"{prefix}-{name}")
        if isinstance(cmd, click.Group):
            names += _commands(cmd, f"{prefix}-{name}")
    return names


def test_cli_reference_is_generated_from_the_commands(site: Path) -> None:
    html = _page(site, "cli")
    commands = _commands(cli, "icecube-cloud")
    assert {"icecube-cloud-build", "icecube-cloud-catalog-ingest"} <= set(commands)
    assert set(commands) <= _ids(html)
    build = cli.commands["build"]
    for param in build.params:
        if isinstance(param, click.Option):
            assert param.opts[-1] in html, param.opts
    assert "Register ICEYE products" in html  # a command's docstring
    assert "UNSET" not in html  # click 8.3's sentinel for "no default" never shows


@pytest.mark.parametrize(
    ("page", "module"),
    [
        ("api", icecube_cloud),
        ("api/ml", icecube_cloud.ml),
        ("api/synthetic", icecube_cloud.synthetic),
    ],
)
def test_python_api_lists_every_public_name(site: Path, page: str, module: ModuleType) -> None:
    ids = _ids(_page(site, page))
    prefix = module.__name__
    for name in module.__all__:
        if name.startswith("__"):
            continue
        # A name that is also a submodule's (ingest, calibrate) is documented where it is defined.
        assert f"{prefix}.{name}" in ids or f"{prefix}.{name}.{name}" in ids, name


def test_api_pages_render_docstrings(site: Path) -> None:
    api = _page(site, "api")
    assert "icecube_cloud.build_cube" in _ids(api)
    assert "icecube_cloud.ml.PatchDataset" in _ids(_page(site, "api/ml"))
    values = _ids(_page(site, "api/values"))
    assert {"icecube_cloud.config.CubeConfig", "icecube_cloud.plan.CubePlan"} <= values
    assert {"icecube_cloud.model.Chunks", "icecube_cloud.model.SourceRef"} <= values
    assert "icecube_cloud.errors.ConfigError" in _ids(_page(site, "api/errors"))
    # Sphinx roles in docstrings (:class:`CubeConfig`) are shown as code, not as role text.
    assert ":class:" in (ROOT / "icecube_cloud" / "build.py").read_text()
    for page in (site / "api").rglob("*.html"):
        roles = re.findall(r":(?:class|func|meth|mod|data|attr|exc):", page.read_text())
        assert not roles, (page, roles)
    assert "<code>CubeConfig</code>" in api


def test_notebooks_are_rendered(site: Path) -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 5
    for nb in notebooks:
        html = _page(site, f"notebooks/{nb.stem}")
        assert "import " in html, nb.name  # the code cells are there


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    """Pages work offline: no web fonts, scripts or styles from elsewhere."""
    for page in site.rglob("*.html"):
        remote = re.findall(
            r'<(?:script|link)[^>]*(?:src|href)="(?:https?:)?//[^"]*"', page.read_text()
        )
        assert not remote, (page, remote)


@pytest.mark.parametrize(
    ("page", "broken", "message"),
    [
        (
            "config.md",
            "See [nothing][icecube_cloud.no_such_function].",
            "icecube_cloud.no_such_function",
        ),
        ("cube.md", '--8<-- "README.md:no-such-section"', "no-such-section"),
        ("training.md", "See [there](performance.md#no-such-heading).", "no-such-heading"),
    ],
)
def test_strict_build_fails_on_a_broken_reference(
    tmp_path: Path, page: str, broken: str, message: str
) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    target = tmp_path / "docs" / page
    target.write_text(f"{target.read_text()}\n{broken}\n")
    run = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
