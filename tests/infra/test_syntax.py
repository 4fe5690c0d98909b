"""Every .bicep under infra/ parses: tree-sitter-bicep finds no ERROR or MISSING node, and pycep-parser
(which the policy tests read) accepts it too. A broken copy of a real file is caught: the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra import bicep

FILES = bicep.bicep_files()


def test_there_is_infrastructure_to_check() -> None:
    names = {bicep.rel(path) for path in FILES}
    assert {"infra/main.bicep", "infra/events.bicep", "infra/modules/function-app.bicep"} <= names


@pytest.mark.parametrize("path", FILES, ids=bicep.rel)
def test_parses_without_syntax_errors(path: Path) -> None:
    errors = bicep.syntax_errors(path.read_bytes())
    assert not errors, f"{bicep.rel(path)} has syntax errors (tree-sitter-bicep): " + "; ".join(errors[:5])


@pytest.mark.parametrize("path", FILES, ids=bicep.rel)
def test_pycep_reads_it(path: Path) -> None:
    tree = bicep.parsed(path)
    assert tree.get("resources") or tree.get("modules"), f"{bicep.rel(path)} declares no resource or module"


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda s: s[: len(s) // 2], "truncated"),
        (
            lambda s: s.replace(b"targetScope = 'subscription'", b"targetScope = 'subscription"),
            "unterminated",
        ),
        (lambda s: s.replace(b"param location string", b"param location", 1), "param without a type"),
        (lambda s: s.replace(b"tags: tags\n}", b"tags: tags\n", 1), "missing brace"),
    ],
)
def test_a_broken_template_is_caught(mangle: object, why: str) -> None:
    source = (bicep.INFRA / "main.bicep").read_bytes()
    broken = mangle(source)  # type: ignore[operator]
    assert broken != source
    assert bicep.syntax_errors(broken), f"a {why} main.bicep passed the syntax check"


@pytest.mark.parametrize("path", FILES, ids=bicep.rel)
def test_every_name_resolves(path: Path) -> None:
    """What the compiler's name binding would report: a reference to nothing, or an unknown function."""
    found = bicep.names(path.read_bytes())
    undeclared = sorted({f"{name} (line {line})" for name, line in found.used if name not in found.declared})
    assert not undeclared, f"{bicep.rel(path)} refers to undeclared {undeclared}"
    unknown = sorted(
        {f"{name} (line {line})" for name, line in found.functions if name not in bicep.BICEP_FUNCTIONS}
    )
    assert not unknown, f"{bicep.rel(path)} calls unknown functions {unknown}"


@pytest.mark.parametrize(
    ("typo", "reported"),
    [
        (b"scope: rg\n  params: {\n    name: 'id-${resourceToken}'", "reourceToken"),
        (b"subscriptionId: subscription().subscriptionId", "subscripton"),
    ],
)
def test_a_misspelt_name_is_caught(typo: bytes, reported: str) -> None:
    source = (bicep.INFRA / "main.bicep").read_bytes()
    assert typo in source
    broken = source.replace(
        typo, typo.replace(b"resourceToken", b"reourceToken").replace(b"subscription()", b"subscripton()"), 1
    )
    found = bicep.names(broken)
    problems = [n for n, _ in found.used if n not in found.declared] + [
        f for f, _ in found.functions if f not in bicep.BICEP_FUNCTIONS
    ]
    assert reported in problems
