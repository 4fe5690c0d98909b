"""HTTP route templates as the Functions host reads them (ASP.NET Core route syntax).

`{name}` parameters, inline constraints (`{id:int}`, `{name:regex(^[a-z]+$)}`, chained with `:`),
optional `{id?}`, defaults `{id=5}`, catch-all `{*rest}`; literals match case-insensitively. A value
that fails a constraint makes the route not match (404), as in ASP.NET. When several routes match, the
most specific wins (literal before constrained parameter before parameter before catch-all).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote


class RouteTemplateError(ValueError):
    """A route template the host cannot parse; the message names the template and the problem."""


Constraint = Callable[[str], bool]

_INT = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT = re.compile(r"^\s*[+-]?(\d[\d,]*\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DECIMAL = re.compile(r"^\s*[+-]?(\d[\d,]*\.?\d*|\.\d+)\s*$")
_GUID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}"
    r"|\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\))$",
    re.IGNORECASE,
)
_ALPHA = re.compile(r"^[a-z]*$", re.IGNORECASE)
_DATETIME_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d")


def _integer(bits: int) -> Constraint:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda v: bool(_INT.match(v)) and low <= int(v) <= high


def _double(value: str) -> bool:
    if not _FLOAT.match(value):
        return False
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def _decimal(value: str) -> bool:
    if not _DECIMAL.match(value):
        return False
    try:
        Decimal(value.replace(",", "").strip())
    except InvalidOperation:
        return False
    return True


def _datetime(value: str) -> bool:
    text = value.strip()
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        pass
    for fmt in _DATETIME_FORMATS:
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            continue
    return False


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "false")


def _guid(value: str) -> bool:
    if not _GUID.match(value.strip()):
        return False
    uuid.UUID(value.strip().strip("{}()"))
    return True


@dataclass(frozen=True)
class ConstraintKind:
    """One inline constraint: how many arguments it takes and how it builds its check from them."""

    name: str
    arities: tuple[int, ...]  # accepted argument counts; (0,) = none, e.g. `int`
    build: Callable[[list[str]], Constraint]
    raw: bool = False  # the argument is one text kept whole (regex), not a comma list of integers

    def make(self, argument: str | None) -> Constraint:
        if self.raw:
            if argument is None:
                raise RouteTemplateError(f"constraint {self.name} needs an argument: {self.name}(^[a-z]+$)")
            return self.build([argument])
        args = [a.strip() for a in argument.split(",")] if argument is not None else []
        if len(args) not in self.arities:
            if self.arities == (0,):
                raise RouteTemplateError(f"constraint {self.name} takes no argument")
            counts = " or ".join(str(n) for n in self.arities)
            raise RouteTemplateError(f"constraint {self.name} takes {counts} argument(s), got {len(args)}")
        try:
            [int(a) for a in args]
        except ValueError:
            raise RouteTemplateError(f"constraint {self.name} needs integer arguments, got {args}") from None
        return self.build(args)


def _regex(args: list[str]) -> Constraint:
    try:
        pattern = re.compile(args[0], re.IGNORECASE)
    except re.error as exc:
        raise RouteTemplateError(f"invalid regex {args[0]!r}: {exc}") from None
    return lambda v: pattern.search(v) is not None


def _length(args: list[str]) -> Constraint:
    if len(args) == 1:
        n = int(args[0])
        return lambda v: len(v) == n
    lo, hi = int(args[0]), int(args[1])
    return lambda v: lo <= len(v) <= hi


def _bounded(test: Callable[[int, list[int]], bool]) -> Callable[[list[str]], Constraint]:
    """min/max/range: the value must be a 64-bit integer, then within the bounds."""
    long_ok = _integer(64)

    def build(args: list[str]) -> Constraint:
        bounds = [int(a) for a in args]
        return lambda v: long_ok(v) and test(int(v), bounds)

    return build


def _sized(test: Callable[[int, int], bool]) -> Callable[[list[str]], Constraint]:
    """minlength/maxlength: the value's length against the one argument."""

    def build(args: list[str]) -> Constraint:
        n = int(args[0])
        return lambda v: test(len(v), n)

    return build


def _simple(check: Constraint) -> Callable[[list[str]], Constraint]:
    return lambda _args: check


# The ASP.NET Core inline constraints the Functions host accepts, by lower-case name.
CONSTRAINTS: dict[str, ConstraintKind] = {
    kind.name: kind
    for kind in (
        ConstraintKind("int", (0,), _simple(_integer(32))),
        ConstraintKind("long", (0,), _simple(_integer(64))),
        ConstraintKind("bool", (0,), _simple(_bool)),
        ConstraintKind("alpha", (0,), _simple(lambda v: bool(_ALPHA.match(v)))),
        ConstraintKind("guid", (0,), _simple(_guid)),
        ConstraintKind("double", (0,), _simple(_double)),
        ConstraintKind("float", (0,), _simple(_double)),
        ConstraintKind("decimal", (0,), _simple(_decimal)),
        ConstraintKind("datetime", (0,), _simple(_datetime)),
        ConstraintKind("required", (0,), _simple(lambda v: v != "")),
        ConstraintKind("nonfile", (0,), _simple(lambda v: "." not in v.rsplit("/", 1)[-1])),
        ConstraintKind("file", (0,), _simple(lambda v: "." in v.rsplit("/", 1)[-1])),
        ConstraintKind("regex", (1,), _regex, raw=True),
        ConstraintKind("minlength", (1,), _sized(lambda size, n: size >= n)),
        ConstraintKind("maxlength", (1,), _sized(lambda size, n: size <= n)),
        ConstraintKind("length", (1, 2), _length),
        ConstraintKind("min", (1,), _bounded(lambda v, b: v >= b[0])),
        ConstraintKind("max", (1,), _bounded(lambda v, b: v <= b[0])),
        ConstraintKind("range", (2,), _bounded(lambda v, b: b[0] <= v <= b[1])),
    )
}


def _build_constraint(name: str, argument: str | None) -> Constraint:
    """One inline constraint from the registry; unknown names are template errors, as at host startup."""
    kind = CONSTRAINTS.get(name.lower())
    if kind is None:
        raise RouteTemplateError(
            f"unknown route constraint {name!r}; use one of: {', '.join(CONSTRAINTS)} (with their arguments, "
            "e.g. length(2,8) or regex(^[a-z]+$))"
        )
    return kind.make(argument)


@dataclass
class Parameter:
    """One `{...}` of a template."""

    name: str
    constraints: list[Constraint] = field(default_factory=list)
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


def _split_constraints(text: str) -> tuple[str, list[tuple[str, str | None]], str]:
    """Split `name:c1(args):c2?` into name, constraints and the trailing `?`/`=default` part."""
    i = 0
    while i < len(text) and text[i] not in ":=?":
        i += 1
    name, rest = text[:i], text[i:]
    constraints: list[tuple[str, str | None]] = []
    while rest.startswith(":"):
        j = 1
        while j < len(rest) and rest[j] not in "(:=?":
            j += 1
        cname = rest[1:j]
        if j < len(rest) and rest[j] == "(":
            # The argument ends at the first ')' followed by ':', '=', the end, or a final '?';
            # a regex may hold other ')' (e.g. `regex(^(a|b)$)`).
            end = next(
                (
                    k
                    for k in range(j + 1, len(rest))
                    if rest[k] == ")" and (rest[k + 1 : k + 2] in ("", ":", "=") or rest[k + 1 :] == "?")
                ),
                -1,
            )
            if end < 0:
                raise RouteTemplateError(f"unbalanced parentheses in constraint {cname!r}")
            constraints.append((cname, rest[j + 1 : end]))
            rest = rest[end + 1 :]
        else:
            constraints.append((cname, None))
            rest = rest[j:]
    return name, constraints, rest


def _parse_parameter(text: str) -> Parameter:
    catch_all = text.startswith("*")
    body = text.lstrip("*")
    name, constraint_specs, tail = _split_constraints(body)
    if not name or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise RouteTemplateError(f"invalid parameter name {name!r}")
    optional, default = False, None
    if tail == "?":
        optional = True
    elif tail.startswith("="):
        default = tail[1:]
    elif tail:
        raise RouteTemplateError(f"unexpected {tail!r} after parameter {name!r}")
    constraints = [_build_constraint(c, a) for c, a in constraint_specs]
    return Parameter(name, constraints, optional or catch_all, default, catch_all)


def _segment_parts(segment: str) -> list[str | Parameter]:
    """A segment is literals and parameters, e.g. `{name}.{ext}`; `{{`/`}}` are literal braces."""
    parts: list[str | Parameter] = []
    literal = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if segment.startswith("{{", i) or segment.startswith("}}", i):
            literal.append(ch)
            i += 2
        elif ch == "{":
            depth, j = 1, i + 1
            while j < len(segment) and depth:
                if segment.startswith("{{", j) or segment.startswith("}}", j):
                    j += 2
                    continue
                depth += {"{": 1, "}": -1}.get(segment[j], 0)
                j += 1
            if depth:
                raise RouteTemplateError(f"unclosed '{{' in segment {segment!r}")
            if literal:
                parts.append("".join(literal))
                literal = []
            inner = segment[i + 1 : j - 1].replace("{{", "{").replace("}}", "}")
            parts.append(_parse_parameter(inner))
            i = j
        elif ch == "}":
            raise RouteTemplateError(f"unmatched '}}' in segment {segment!r}")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


@dataclass
class RouteTemplate:
    """A compiled template: a regex over the raw path plus the constraints checked after it matches."""

    template: str
    regex: re.Pattern[str]
    parameters: list[Parameter]
    precedence: tuple[int, ...]

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Route values for `raw_path` (no leading slash, still percent-encoded), or None."""
        m = self.regex.match(raw_path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for index, param in enumerate(self.parameters):
            raw = m.group(f"p{index}")
            if raw is None or raw == "":
                if param.default is not None:
                    values[param.name] = param.default
                elif not param.optional:
                    return None
                continue
            value = unquote(raw)
            if not all(check(value) for check in param.constraints):
                return None
            values[param.name] = value
        return values


def compile_route(template: str) -> RouteTemplate:
    """Compile a template (without the route prefix) into a matcher; raise RouteTemplateError if invalid."""
    text = template.strip().strip("/")
    if text.startswith("~"):
        text = text[1:].lstrip("/")
    segments = [s for s in text.split("/")] if text else []
    parameters: list[Parameter] = []
    pattern = ""
    precedence: list[int] = []
    for position, segment in enumerate(segments):
        if segment == "":
            raise RouteTemplateError(f"empty segment in route {template!r}")
        parts = _segment_parts(segment)
        is_last = position == len(segments) - 1
        seg_regex = ""
        optional_segment = False
        for part in parts:
            if isinstance(part, str):
                seg_regex += re.escape(part)
                continue
            index = len(parameters)
            parameters.append(part)
            if part.catch_all:
                if not is_last or len(parts) != 1:
                    raise RouteTemplateError(
                        f"catch-all {{*{part.name}}} must be the last segment of {template!r}"
                    )
                seg_regex += f"(?P<p{index}>.*)"
                optional_segment = True
            else:
                seg_regex += f"(?P<p{index}>[^/]+)" if len(parts) == 1 else f"(?P<p{index}>[^/]+?)"
                if (part.optional or part.default is not None) and len(parts) == 1:
                    optional_segment = True
        if optional_segment:
            pattern += f"(?:/{seg_regex})?" if position else f"(?:{seg_regex})?"
        else:
            pattern += f"/{seg_regex}" if position else seg_regex
        if len(parts) > 1:
            precedence.append(2)
        elif isinstance(parts[0], str):
            precedence.append(1)
        elif parts[0].catch_all:
            precedence.append(5)
        else:
            precedence.append(3 if parts[0].constraints else 4)
    # Literals match case-insensitively; parameter classes are unaffected by the flag.
    regex = re.compile(f"^{pattern}/?$", re.IGNORECASE | re.DOTALL)
    names = [p.name.lower() for p in parameters]
    if len(set(names)) != len(names):
        raise RouteTemplateError(f"route {template!r} repeats a parameter name")
    return RouteTemplate(template, regex, parameters, tuple(precedence))
