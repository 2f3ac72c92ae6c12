"""Templates live in ``generators/templates/``; they are ``string.Template`` text filled by the generators."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def template(template_name: str) -> Template:
    return Template((TEMPLATES / template_name).read_text(encoding="utf-8"))


def fill(template_name: str, /, **values: str) -> str:
    return template(template_name).substitute(values)
