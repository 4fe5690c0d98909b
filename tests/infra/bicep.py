"""Offline readers of infra/: tree-sitter-bicep for syntax, pycep-parser for structure, the app's settings.

No Bicep CLI: tree-sitter-bicep (PyPI, a compiled grammar) finds syntax errors; pycep-parser (PyPI, a Lark
grammar) turns each file into a JSON-like tree of params, variables, resources, modules and outputs that the
policy tests walk. pycep does not tell a string literal from an identifier ('blob' and blob both come back as
"blob"), so the helpers resolve a bare word as a variable or parameter only when the file declares one.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FUNCTION_APP_BICEP = INFRA / "modules" / "function-app.bicep"
LEFT_TO_DEFAULT = INFRA / "settings-left-to-default.json"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- syntax (tree-sitter) ---------------------------------------------------------------------------------


@cache
def _ts_parser() -> Any:
    import tree_sitter
    import tree_sitter_bicep

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as 'line:column: text' (1-based), in document order."""
    tree = _ts_parser().parse(source)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            text = source[node.start_byte : node.end_byte][:60].decode(errors="replace")
            kind = "missing " + node.type if node.is_missing else "unexpected"
            found.append(f"{line + 1}:{column + 1}: {kind} {text!r}")
        stack.extend(reversed(node.children))
    return found


# --- structure (pycep) ------------------------------------------------------------------------------------


@cache
def parsed(path: Path) -> dict[str, Any]:
    from pycep import BicepParser

    return dict(BicepParser().parse(file_path=path))


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    api_version: str
    existing: bool
    config: dict[str, Any]
    condition: Any
    loop: Any

    def where(self) -> str:
        return f"{rel(self.file)} resource {self.symbol}"


def resources(path: Path) -> Iterator[Resource]:
    for symbol, body in (parsed(path).get("resources") or {}).items():
        config = body.get("config") or {}
        condition, loop = None, None
        # Loops and conditions wrap the body: {"loop_type"|"condition", "config": {...}}
        while (
            isinstance(config, dict)
            and "config" in config
            and ("condition" in config or "loop_type" in config)
        ):
            condition = condition or config.get("condition")
            loop = loop or config.get("loop_type")
            config = config["config"]
        yield Resource(
            path,
            symbol,
            body["type"],
            body.get("api_version", ""),
            bool(body.get("existing")),
            config,
            condition,
            loop,
        )


def all_resources() -> list[Resource]:
    return [r for path in bicep_files() for r in resources(path)]


def modules(path: Path) -> Iterator[tuple[str, Path, dict[str, Any], str]]:
    """(symbol, module file, params passed, the raw reference) for each module of `path`."""
    for symbol, body in (parsed(path).get("modules") or {}).items():
        reference = body["detail"]["path"]
        config = body.get("config") or {}
        while (
            isinstance(config, dict)
            and "config" in config
            and ("condition" in config or "loop_type" in config)
        ):
            config = config["config"]
        yield symbol, (path.parent / reference).resolve(), dict(config.get("params") or {}), reference


def variables(path: Path) -> dict[str, Any]:
    return {name: body.get("value") for name, body in (parsed(path).get("variables") or {}).items()}


def parameters(path: Path) -> dict[str, dict[str, Any]]:
    return dict(parsed(path).get("parameters") or {})


def outputs(path: Path) -> dict[str, Any]:
    return {name: body.get("value") for name, body in (parsed(path).get("outputs") or {}).items()}


def identifiers(path: Path) -> frozenset[str]:
    """Every name the file declares (params, variables, resources, modules, loop variables)."""
    tree = parsed(path)
    names = set()
    for section in ("parameters", "variables", "resources", "modules", "outputs"):
        names |= set(tree.get(section) or {})
    for match in re.finditer(
        r"\bfor\s*\(?\s*(\w+)(?:\s*,\s*(\w+))?\s*\)?\s+in\b", path.read_text(encoding="utf-8")
    ):
        names |= {name for name in match.groups() if name}
    return frozenset(names)


def literal_keys(path: Path, expression: Any, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keys of every object literal an expression can evaluate to: variables followed, both branches of a
    conditional, every argument of union(). Used for the app settings object."""
    found: dict[str, Any] = {}
    names = variables(path)
    if isinstance(expression, str) and expression in names and expression not in seen:
        return literal_keys(path, names[expression], seen | {expression})
    if isinstance(expression, dict):
        if "function" in expression and expression["function"].get("type") == "union":
            for argument in expression["function"]["parameters"].values():
                found.update(literal_keys(path, argument, seen))
            return found
        if "operator" in expression and expression["operator"].get("type") == "conditional":
            operands = expression["operator"]["operands"]
            found.update(literal_keys(path, operands["true_value"], seen))
            found.update(literal_keys(path, operands["false_value"], seen))
            return found
        if "function" not in expression and "operator" not in expression:
            return {key.strip("'"): value for key, value in expression.items()}
    return found


def strip_comments(source: str) -> str:
    """Bicep source without // and /* */ comments (string literals kept, so a '//' inside a URL survives)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        if source.startswith("'''", i):
            end = source.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(source[i:end])
            i = end
        elif source[i] == "'":
            j = i + 1
            while j < n and source[j] != "'":
                j += 2 if source[j] == "\\" else 1
            out.append(source[i : j + 1])
            i = j + 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


# --- the app's settings -----------------------------------------------------------------------------------

# Until shared.settings exposes SETTINGS, the names are the string literals passed to the readers below, plus
# the %NAME% binding expressions of the triggers and direct environment reads anywhere in the deployed code.
_READER_CALL = re.compile(
    r"\b_(?:optional|bool|number|count|text|choice|required|url|list)\(\s*env\s*,\s*\"([^\"]+)\""
)
_SETTING_CALL = re.compile(r"\bSetting\(\s*\"([^\"]+)\"")
_ENV_READ = re.compile(
    r"(?:\benv\.get|\benviron\.get|os\.getenv)\(\s*\"([A-Za-z_][A-Za-z0-9_]*)\""
    r"|os\.environ\[\s*\"([A-Za-z_][A-Za-z0-9_]*)\"\s*\]"
)
_SETTING_CONSTANT = re.compile(
    r"^\s*[A-Z_]*SETTING[A-Z_]*\s*(?::\s*\w+\s*)?=\s*\"([A-Za-z_][A-Za-z0-9_]*)\"", re.M
)
_BINDING_EXPRESSION = re.compile(r"\"%([A-Za-z_][A-Za-z0-9_]*)%\"")
# Any function called with the environment first: _get(env, "NOTIFY_DIGEST"), _optional(environ, "X") ...
_ENV_ARGUMENT = re.compile(r"\b\w+\(\s*(?:env|environ|os\.environ)\s*,\s*\"([A-Za-z_][A-Za-z0-9_]*)\"")
# A whole string constant in UPPER_SNAKE_CASE is taken for a setting name (number("NOTIFY_EXPIRY_DAYS", ...)),
# except these, which are not app settings:
_UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
NOT_SETTINGS = {
    "CERTIFICATE_VERIFY_FAILED": "an OpenSSL error reason the rotators match",
    "NEAR_EXPIRY": "a notification kind's Python name (shared/notifications/__all__)",
    "ROTATION_FAILED": "a notification kind's Python name (shared/notifications/__all__)",
}
DEPLOYED_CODE = ("function_app.py", "shared", "blueprints")


@dataclass(frozen=True)
class Declared:
    name: str
    default: Any
    required: bool
    source: str


def _deployed_sources() -> Iterator[Path]:
    for entry in DEPLOYED_CODE:
        path = ROOT / entry
        if path.is_file():
            yield path
        else:
            yield from sorted(path.rglob("*.py"))


def declared_settings() -> tuple[list[Declared], str]:
    """The app settings the deployed code reads, and where the list came from."""
    found: dict[str, Declared] = {}
    how = "a scan of shared/settings.py"
    try:
        import shared.settings as settings_module
    except Exception:  # a half-written settings module: fall back to reading the source
        settings_module = None  # type: ignore[assignment]
    if settings_module is not None and hasattr(settings_module, "SETTINGS"):
        how = "shared.settings.SETTINGS"
        for setting in settings_module.SETTINGS:
            found[setting.name] = Declared(
                setting.name, setting.default, bool(getattr(setting, "required", False)), "shared/settings.py"
            )
    for path in _deployed_sources():
        text = path.read_text(encoding="utf-8")
        patterns = [_ENV_READ, _ENV_ARGUMENT, _SETTING_CONSTANT, _BINDING_EXPRESSION]
        if settings_module is None or not hasattr(settings_module, "SETTINGS"):
            patterns[:0] = [_READER_CALL, _SETTING_CALL]
        for pattern in patterns:
            for match in pattern.finditer(text):
                name = next(group for group in match.groups() if group)
                if name not in found:
                    found[name] = Declared(name, None, False, rel(path))
        for constant in python_string_constants(path):
            if _UPPER_SNAKE.fullmatch(constant) and constant not in NOT_SETTINGS and constant not in found:
                found[constant] = Declared(constant, None, False, rel(path))
    return sorted(found.values(), key=lambda d: d.name), how + " + a scan of the deployed code"


def python_string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def left_to_default() -> dict[str, str]:
    data = json.loads(LEFT_TO_DEFAULT.read_text(encoding="utf-8"))
    return {name: reason for name, reason in data.items() if not name.startswith("$")}


def render(expression: Any) -> str:
    """A pycep expression back as roughly its Bicep text: a.b.c, f(x, y), c ? t : f, [..], {..}."""
    if isinstance(expression, dict):
        if "operator" in expression:
            operator = expression["operator"]
            operands = operator.get("operands") or {}
            if operator["type"] == "property_accessor":
                return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
            if operator["type"] == "index_accessor":
                return f"{render(operands['operand_1'])}[{render(operands['operand_2'])}]"
            if operator["type"] == "conditional":
                return (
                    f"{render(operands['condition'])} ? {render(operands['true_value'])} "
                    f": {render(operands['false_value'])}"
                )
            return f"{operator['type']}(" + ", ".join(render(v) for v in operands.values()) + ")"
        if "function" in expression:
            function = expression["function"]
            arguments = function.get("parameters") or {}
            return (
                f"{function['type']}("
                + ", ".join(render(v) for v in arguments.values() if v is not None)
                + ")"
            )
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in expression.items()) + "}"
    if isinstance(expression, list):
        return "[" + ", ".join(render(v) for v in expression) + "]"
    return str(expression)


# --- names (tree-sitter: unlike pycep it tells identifiers from strings) -------------------------------------

# Bicep's built-in functions (sys namespace) and decorators used or likely here; a name outside this list is
# a typo or a user-defined function (none are declared in infra/).
BICEP_FUNCTIONS = frozenset(
    [
        "any",
        "array",
        "base64",
        "base64ToJson",
        "base64ToString",
        "bool",
        "coalesce",
        "concat",
        "contains",
        "dataUri",
        "dataUriToString",
        "dateTimeAdd",
        "dateTimeFromEpoch",
        "dateTimeToEpoch",
        "deployment",
        "deployer",
        "empty",
        "endsWith",
        "environment",
        "extensionResourceId",
        "fail",
        "filter",
        "first",
        "flatten",
        "format",
        "getSecret",
        "groupBy",
        "guid",
        "indexOf",
        "int",
        "intersection",
        "items",
        "join",
        "json",
        "last",
        "lastIndexOf",
        "length",
        "listKeys",
        "loadFileAsBase64",
        "loadJsonContent",
        "loadTextContent",
        "loadYamlContent",
        "managementGroup",
        "managementGroupResourceId",
        "map",
        "mapValue",
        "max",
        "min",
        "newGuid",
        "objectKeys",
        "padLeft",
        "parseCidr",
        "pickZones",
        "range",
        "reduce",
        "reference",
        "replace",
        "resourceGroup",
        "resourceId",
        "shallowMerge",
        "skip",
        "sort",
        "split",
        "startsWith",
        "string",
        "subscription",
        "subscriptionResourceId",
        "substring",
        "take",
        "tenant",
        "tenantResourceId",
        "toLower",
        "toObject",
        "toUpper",
        "trim",
        "union",
        "uniqueString",
        "uri",
        "uriComponent",
        "uriComponentToString",
        "utcNow",
        "allowed",
        "batchSize",
        "description",
        "discriminator",
        "export",
        "maxLength",
        "maxValue",
        "metadata",
        "minLength",
        "minValue",
        "secure",
        "sealed",
    ]
)


@dataclass(frozen=True)
class Names:
    declared: frozenset[str]
    used: tuple[tuple[str, int], ...]  # (identifier, 1-based line) outside declarations and property keys
    functions: tuple[tuple[str, int], ...]


def names(source: bytes) -> Names:
    tree = _ts_parser().parse(source)
    declared: set[str] = set()
    used: list[tuple[str, int]] = []
    functions: list[tuple[str, int]] = []
    declarations = {
        "parameter_declaration",
        "variable_declaration",
        "resource_declaration",
        "module_declaration",
        "output_declaration",
        "type_declaration",
        "user_defined_function",
    }

    def text(node: Any) -> str:
        return source[node.start_byte : node.end_byte].decode()

    def visit(node: Any) -> None:
        named = [c for c in node.children if c.is_named]
        skip: set[int] = set()
        if node.type in declarations and named and named[0].type == "identifier":
            declared.add(text(named[0]))
            skip.add(named[0].id)
        if node.type == "object_property" and named and named[0].type == "identifier":
            skip.add(named[0].id)  # a property key, not a reference
        if node.type in ("loop_variable", "loop_enumerator"):
            declared.add(text(node))
        if node.type == "for_statement" and named and named[0].type == "identifier":
            declared.add(text(named[0]))  # [for x in xs: ...] without parentheses
            skip.add(named[0].id)
        if node.type == "lambda_expression" and named:
            params = named[0]
            for p in [params] if params.type == "identifier" else [c for c in params.children if c.is_named]:
                declared.add(text(p))
        if node.type == "call_expression":
            function = node.child_by_field_name("function")
            if function is not None and function.type == "identifier":
                functions.append((text(function), function.start_point[0] + 1))
                skip.add(function.id)
            elif function is not None and function.type == "member_expression":
                prop = function.child_by_field_name("property")
                if prop is not None:
                    functions.append((text(prop), prop.start_point[0] + 1))
        for child in node.children:
            if child.id in skip:
                continue
            if child.type == "identifier":
                used.append((text(child), child.start_point[0] + 1))
            else:
                visit(child)

    visit(tree.root_node)
    return Names(frozenset(declared), tuple(used), tuple(functions))


def resource_references(source: bytes) -> list[tuple[str, str, list[str], int]]:
    """(symbol, resource type, property path, line) for each `symbol.a.b.c` read of a resource of this file."""
    tree = _ts_parser().parse(source)
    types: dict[str, str] = {}

    def text(node: Any) -> str:
        return source[node.start_byte : node.end_byte].decode()

    for node in tree.root_node.children:
        if node.type == "resource_declaration":
            named = [c for c in node.children if c.is_named]
            kind = next((text(c).strip("'") for c in named if c.type == "string"), "")
            types[text(named[0])] = kind.split("@")[0]
    found: list[tuple[str, str, list[str], int]] = []

    def chain(node: Any) -> tuple[str, list[str]] | None:
        path: list[str] = []
        while node.type == "member_expression":
            prop = node.child_by_field_name("property")
            if prop is None:
                return None
            path.insert(0, text(prop))
            node = node.child_by_field_name("object")
            if node is None:
                return None
        return (text(node), path) if node.type == "identifier" else None

    def visit(node: Any, inside_member: bool) -> None:
        if node.type == "member_expression" and not inside_member:
            parsed_chain = chain(node)
            if parsed_chain and parsed_chain[0] in types and parsed_chain[1]:
                symbol, path = parsed_chain
                found.append((symbol, types[symbol], path, node.start_point[0] + 1))
        for child in node.children:
            visit(child, node.type == "member_expression" and child == node.child_by_field_name("object"))

    visit(tree.root_node, False)
    return found
