"""A griffe extension for the docs site: Sphinx roles in docstrings rendered as code.

Some docstrings name objects the reST way (:class:`Chunks`, :func:`~icecube_cloud.cube.open_cube`);
Markdown would show the role as text. Each becomes inline code of the name (``~`` keeps only its last
part, as in Sphinx). Loaded by mkdocstrings (mkdocs.yml); the package itself is left as it is.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles in every loaded docstring as inline code."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the roles in one object's docstring."""
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)
