"""The Cypher templates of ``queries/``: their headers, parameter binding and the catalogue.

Every ``queries/<name>.cypher`` starts with a header of ``//`` lines that this module reads,
so the CLI help, the Python API and ``queries/catalogue.md`` all come from one place::

    // name: head_roles
    // purpose: Where a head fires in a run: its (dest_role → src_role) pairs.
    // mode: read
    // param: run_id string — the run
    // param: prompt int? = null — one prompt, or null for all prompts
    // returns: dest_role string, src_role string, firings int, prompts int
    // example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9}
    // example-toy: {"run_id": "toy-ioi-mixed-n256-seed0-0123abcd", "layer": 3, "head": 1}
    //
    // Free text after an empty ``//`` line: how to read the result, how the query runs.

``param`` lines are ``name type[range][?] [= default] — description``; types are ``string``,
``int``, ``float``, ``bool`` and ``list<string|int|float>``; ``?`` allows null. A number's
range is ``[low..high]`` with either end left open (``int[1..]``: at least 1; ``int[1..8]``;
``float[0..1]``), a string's is its allowed values (``string[q|k]``); a list's range applies
to its items. Every ``int`` also fits in 64 bits (Cypher's integer). Defaults and
the examples are JSON (which the Browser's ``:params`` also accepts): ``example`` for a GPT-2
run, and optionally ``example-toy`` for a run of the shipped toy-ioi model (the benchmark times
every template with it, its ``run_id`` replaced). ``mode`` is ``read``
(the default; run in a read transaction) or ``write``. ``methods`` names the run methods a
template answers for (``sad``, ``acc``; default both): ``// methods: sad`` marks a template that
reads what only SAD runs store (``USES`` and ``SingularVector`` of SAD's one Ω per head), which
:func:`atlas.ask.lookups.run_query` refuses on an ACC run in one line. Values are always sent
as Cypher parameters, never spliced into the query text.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from atlas.errors import ParameterError

SCALAR_TYPES = {"string": str, "int": int, "float": float, "bool": bool}
_PARAM = re.compile(
    r"(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[a-z<>]+)(?:\[(?P<range>[^\]]*)\])?"
    r"(?P<nullable>\?)?"
    r"(?:\s*=\s*(?P<default>.+?))?\s+—\s+(?P<description>.+)"
)
_RETURN = re.compile(r"(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[a-z<>?|]+)")
_NO_DEFAULT = object()
INT64 = (-(2**63), 2**63 - 1)
_FIELDS = {"name", "purpose", "mode", "methods", "param", "returns", "example", "example-toy"}
METHODS = ("sad", "acc")


class TemplateError(ParameterError):
    """An unknown template or a parameter that does not fit its header (one line, exit 1)."""


@dataclass(frozen=True)
class Parameter:
    """A typed template parameter; ``required`` when the header gives no default."""

    name: str
    type: str
    nullable: bool
    description: str
    default: Any = _NO_DEFAULT
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def range_text(self) -> str:
        """The header's range (``[1..8]``, ``[1..]``, ``[q|k]``), or "" for none."""
        if self.choices:
            return f"[{'|'.join(self.choices)}]"
        if self.low is None and self.high is None:
            return ""
        return f"[{_number(self.low)}..{_number(self.high)}]"

    def signature(self) -> str:
        text = f"{self.name}: {self.type}{self.range_text()}{'?' if self.nullable else ''}"
        return text if self.required else f"{text} = {json.dumps(self.default)}"

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type; strings (from the CLI) are parsed."""
        if value is None or (isinstance(value, str) and value == "null"):
            if self.nullable:
                return None
            raise self._mistyped(value, "it may not be null")
        if self.type.startswith("list<"):
            item = self.type[5:-1]
            if isinstance(value, str):
                text = value.strip()
                try:
                    value = json.loads(text) if text.startswith("[") else text.split(",")
                except json.JSONDecodeError as error:
                    raise self._mistyped(value, f"not a JSON list ({error.msg})") from None
            if not isinstance(value, list | tuple):
                raise self._mistyped(value, f"expected a list of {item}")
            return [self._scalar(element, item) for element in value]
        return self._scalar(value, self.type)

    def _scalar(self, value: Any, kind: str) -> Any:
        python_type = SCALAR_TYPES[kind]
        if isinstance(value, str) and kind != "string":
            text = value.strip()
            try:
                if kind == "bool":
                    if text.lower() not in {"true", "false"}:
                        raise ValueError(text)
                    return text.lower() == "true"
                parsed = python_type(text)
            except ValueError:
                raise self._mistyped(value, f"expected {kind}") from None
            return self._in_range(parsed)
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return self._in_range(float(value))
        if not isinstance(value, python_type) or (kind == "int" and isinstance(value, bool)):
            raise self._mistyped(value, f"expected {kind}")
        return self._in_range(value)

    def _in_range(self, value: Any) -> Any:
        if self.choices and value not in self.choices:
            raise self._mistyped(value, f"expected one of {', '.join(self.choices)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if isinstance(value, float) and value != value:
            raise self._mistyped(value, "not a number")
        low, high = self.low, self.high
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            raise self._mistyped(value, "beyond a 64-bit integer")
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                why = f"must lie in {_number(low)}..{_number(high)}"
            elif low is not None:
                why = f"must be at least {_number(low)}"
            else:
                why = f"must be at most {_number(high)}"
            raise self._mistyped(value, why)
        return value

    def _mistyped(self, value: Any, why: str) -> TemplateError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
        return TemplateError(f"Parameter '{self.name}' got {shown}: {why} ({self.signature()}).")


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Template:
    """One ``queries/<name>.cypher`` file: header fields and the Cypher body."""

    name: str
    purpose: str
    mode: str
    parameters: tuple[Parameter, ...]
    returns: tuple[Column, ...]
    example: Mapping[str, Any]
    notes: str
    cypher: str
    example_toy: Mapping[str, Any] | None = None
    methods: tuple[str, ...] = METHODS

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: ``given`` ones coerced to their types, defaults for the rest.

        Raises :class:`TemplateError` for an unknown, missing or mistyped parameter.
        """
        known = {p.name for p in self.parameters}
        extra = sorted(set(given) - known)
        if extra:
            raise TemplateError(
                f"Template '{self.name}' has no parameter {', '.join(map(repr, extra))}; "
                f"its parameters: {self.signature()}."
            )
        bound: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.name in given:
                bound[parameter.name] = parameter.coerce(given[parameter.name])
            elif parameter.required:
                raise TemplateError(
                    f"Template '{self.name}' needs parameter '{parameter.name}' "
                    f"({parameter.signature()}: {parameter.description})."
                )
            else:
                bound[parameter.name] = parameter.default
        return bound

    def signature(self) -> str:
        return ", ".join(p.signature() for p in self.parameters) or "none"


def parse_template(name: str, text: str) -> Template:
    """Read the header of a template file; the body is everything after the header lines."""
    header: list[str] = []
    lines = text.splitlines()
    while lines and lines[0].startswith("//"):
        header.append(lines.pop(0)[2:].strip())
    fields: dict[str, list[str]] = {}
    notes: list[str] = []
    in_notes = False
    for line in header:
        if in_notes:
            notes.append(line)
            continue
        if not line:
            in_notes = True
            continue
        key, sep, value = line.partition(":")
        if not sep or key not in _FIELDS:
            if not fields:
                raise ValueError(f"{name}.cypher: header line {line!r} has no known field")
            last = list(fields)[-1]  # a continuation of the previous field
            fields[last][-1] += " " + line
            continue
        fields.setdefault(key, []).append(value.strip())
    for required in ("name", "purpose", "returns", "example"):
        if required not in fields:
            raise ValueError(f"{name}.cypher: header lacks '{required}:'")
    if fields["name"][0] != name:
        raise ValueError(f"{name}.cypher: header names it {fields['name'][0]!r}")
    parameters = []
    for line in fields.get("param", []):
        match = _PARAM.fullmatch(line)
        if match is None or not _known_type(match["type"]):
            raise ValueError(f"{name}.cypher: cannot read parameter line {line!r}")
        default = match["default"]
        parameter = Parameter(
            name=match["name"],
            type=match["type"],
            nullable=bool(match["nullable"]),
            description=match["description"],
            default=_NO_DEFAULT if default is None else json.loads(default),
            **_range(name, match["type"], match["range"]),
        )
        if not parameter.required and parameter.default is not None:
            parameter.coerce(parameter.default)  # a default outside its range is a header bug
        parameters.append(parameter)
    returns = []
    for part in fields["returns"][0].split(","):
        match = _RETURN.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"{name}.cypher: cannot read returned column {part.strip()!r}")
        returns.append(Column(match["name"], match["type"]))
    mode = fields.get("mode", ["read"])[0]
    if mode not in {"read", "write"}:
        raise ValueError(f"{name}.cypher: mode must be read or write, got {mode!r}")
    methods = tuple(m.strip() for m in fields.get("methods", [",".join(METHODS)])[0].split(","))
    if not methods or not set(methods) <= set(METHODS):
        raise ValueError(f"{name}.cypher: methods must be among {METHODS}, got {methods}")
    return Template(
        name=name,
        purpose=fields["purpose"][0],
        mode=mode,
        parameters=tuple(parameters),
        returns=tuple(returns),
        example=json.loads(fields["example"][0]),
        notes="\n".join(notes).strip(),
        cypher="\n".join(lines).strip() + "\n",
        example_toy=json.loads(fields["example-toy"][0]) if "example-toy" in fields else None,
        methods=methods,
    )


def _range(name: str, kind: str, text: str | None) -> dict[str, Any]:
    """``low``/``high`` or ``choices`` of a header's ``[...]`` after the type."""
    if text is None:
        return {}
    item = kind[5:-1] if kind.startswith("list<") else kind
    if item == "string":
        choices = tuple(choice.strip() for choice in text.split("|"))
        if not all(choices):
            raise ValueError(f"{name}.cypher: empty choice in [{text}]")
        return {"choices": choices}
    low, sep, high = text.partition("..")
    if not sep or item not in ("int", "float"):
        raise ValueError(f"{name}.cypher: cannot read the range [{text}] of a {kind}")
    number = int if item == "int" else float
    return {
        "low": number(low) if low.strip() else None,
        "high": number(high) if high.strip() else None,
    }


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _known_type(kind: str) -> bool:
    return kind in SCALAR_TYPES or (
        kind.startswith("list<") and kind.endswith(">") and kind[5:-1] in SCALAR_TYPES
    )


@cache
def template_names() -> tuple[str, ...]:
    return tuple(
        sorted(
            entry.name.removesuffix(".cypher")
            for entry in files("queries").iterdir()
            if entry.name.endswith(".cypher")
        )
    )


@cache
def load_template(name: str) -> Template:
    """The template ``queries/<name>.cypher``; an unknown name is a :class:`TemplateError`."""
    if name not in template_names():
        close = difflib.get_close_matches(name, template_names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TemplateError(
            f"No template '{name}'.{hint} Known: {', '.join(template_names())} "
            "(`circuit-atlas templates` lists them with their parameters)."
        )
    return parse_template(name, (files("queries") / f"{name}.cypher").read_text())


def all_templates() -> list[Template]:
    return [load_template(name) for name in template_names()]


def render_catalogue(templates: list[Template] | None = None) -> str:
    """``queries/catalogue.md``, generated from the headers (a test keeps the file equal)."""
    templates = all_templates() if templates is None else templates
    out = [
        "# Cypher catalogue",
        "",
        "<!-- Generated from the headers of queries/*.cypher by `circuit-atlas templates "
        "--markdown`; do not edit by hand. -->",
        "",
        "Every reusable Cypher template of the atlas, one `.cypher` file each in `queries/`. "
        "They take parameters only (`$name`), never string-built values, and run as they are "
        "in the Neo4j Browser after `:params {...}`, in `cypher-shell --param`, or from Python "
        "with `AtlasStore.read_template(name, **parameters)`.",
        "",
    ]
    for template in templates:
        out += [f"## `{template.name}`", "", template.purpose, ""]
        if template.mode == "write":
            out += ["*Writes to the database.*", ""]
        if template.methods != METHODS:
            runs = " and ".join(m.upper() for m in template.methods)
            out += [f"*Answers on {runs} runs only; refused on the others.*", ""]
        out.append("**Parameters**:" + ("" if template.parameters else " none."))
        out += [""] if template.parameters else []
        for p in template.parameters:
            out.append(f"- `{p.signature()}`: {p.description}")
        out += ["", "**Returns**: " + ", ".join(f"`{c.name}` ({c.type})" for c in template.returns)]
        out += ["", f"**Example**: `:params {json.dumps(template.example, ensure_ascii=False)}`"]
        if template.example_toy is not None:
            toy = json.dumps(template.example_toy, ensure_ascii=False)
            out += ["", f"**Example on toy-ioi**: `:params {toy}`"]
        if template.notes:
            out += ["", template.notes]
        out.append("")
    return "\n".join(out)
