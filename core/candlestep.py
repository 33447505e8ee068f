"""The fused candle step: one symbol's indicator updates in one function, derived from the
indicators' own definitions (core.indicators and strategies' `indicators`).

Calling each indicator's `update` costs a Python call and an attribute load per piece of
state, for every indicator of every candle: in a backtest that is most of the indicator
time. `fuse` reads each definition's own `update` (its source, through `inspect`) and
splices the bodies into one function: `self.<state>` becomes a closure variable, locals
and module globals get per-indicator names, `return x` ends that indicator's block. The
result is compiled with the definition's file name and line numbers, so a traceback points
at the line of the definition that failed, and it runs the same float operations in the
same order (tests/core/test_indicators.py checks the values bit for bit).

A definition this cannot splice (a helper method call, a nested function, a `return` inside
a loop, ...) is not an error: that indicator's `update` is called as it is, and `fuse`
says which and why.

`_candlestep` is the deriver FeatureBank uses; set to None, every bank calls each definition's
`update` in turn instead (the reference: the golden scenario runs both ways and compares the
decisions). AVAILABLE is always true: the fused step needs no compiler. Reading the source is
the interpreter reading its own loaded modules (linecache, as a traceback does), not data.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from types import CodeType, FunctionType
from typing import Any

from core.indicators import Indicator

Values = dict[str, float | None]
Update = Callable[[float, float, float, float, float], Values]
PARAMS = ("o", "h", "lo", "c", "v")  # the fused function's parameters

_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.Global,
    ast.Nonlocal,
    ast.Yield,
    ast.YieldFrom,
    ast.Await,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.NamedExpr,
)


class Unfusable(Exception):
    """Why one definition's update cannot be spliced; it is then called as it is."""


class Fused:
    """The step derived for one list of keys: compiled once, built for any number of symbols
    (each with its own indicator instances, whose state the built function takes over)."""

    __slots__ = ("_makers", "unfused")

    def __init__(
        self,
        makers: list[tuple[Callable[..., Update], list[tuple[int, str]]]],
        unfused: dict[str, str],
    ) -> None:
        self._makers = makers
        self.unfused = unfused  # kind -> why its update is called as it is

    def build(self, instances: Sequence[Indicator]) -> list[Update]:
        """Functions `(o, h, lo, c, v) -> {key: value}` that together update `instances`
        (in the order of the keys the step was derived for) once per call."""
        return [
            make(tuple(getattr(instances[i], attr) for i, attr in slots))
            for make, slots in self._makers
        ]


def fuse(indicators: Sequence[tuple[str, Indicator]]) -> Fused:
    """Derive the step for these (key, indicator) pairs: one function per source file (a
    code object has one file name). The instances only show the classes and their state;
    `Fused.build` takes the instances to run."""
    by_file: dict[str, list[tuple[int, str, Indicator]]] = {}
    called: list[tuple[int, str, Indicator]] = []
    unfused: dict[str, str] = {}
    parts: dict[int, _Part] = {}
    for i, (key, ind) in enumerate(indicators):
        try:
            parts[i] = _splice(i, ind)
        except (Unfusable, OSError, TypeError, SyntaxError) as exc:
            unfused.setdefault(type(ind).kind, str(exc) or type(exc).__name__)
            called.append((i, key, ind))
            continue
        by_file.setdefault(parts[i].filename, []).append((i, key, ind))
    groups = list(by_file.items())
    if called:  # plain calls have no lines of their own: they join any group
        if groups:
            groups[0] = (groups[0][0], sorted(groups[0][1] + called, key=lambda m: m[0]))
        else:
            groups = [("<indicators>", called)]
    return Fused([_build(filename, members, parts) for filename, members in groups], unfused)


class _Part:
    __slots__ = ("body", "def_node", "filename", "globals", "state")

    def __init__(
        self,
        body: list[ast.stmt],
        def_node: ast.FunctionDef,
        filename: str,
        state: dict[str, str],
        globals_: dict[str, Any],
    ) -> None:
        self.body = body
        self.def_node = def_node
        self.filename = filename
        self.state = state
        self.globals = globals_


def _splice(i: int, ind: Indicator) -> _Part:
    fn = type(ind).update
    if not isinstance(fn, FunctionType) or fn is Indicator.update:
        raise Unfusable("update is not a plain function")
    lines, first = inspect.getsourcelines(fn)
    src = "".join(lines)
    indent = len(src) - len(src.lstrip())
    tree = ast.parse(textwrap.dedent(src))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef) or node.decorator_list:
        raise Unfusable("update is not a plain method")
    if not _same_code(tree, fn):
        raise Unfusable("its source is not the code that runs (file edited since import?)")
    ast.increment_lineno(node, first - 1)  # the lines of the file, for tracebacks
    for sub in ast.walk(node):
        if isinstance(sub, (ast.stmt, ast.expr)):  # and its columns, for the ^^^ markers
            sub.col_offset += indent
            sub.end_col_offset = (sub.end_col_offset or 0) + indent
    args = node.args
    names = [a.arg for a in args.args]
    if args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg or len(names) != 6:
        raise Unfusable("update must take (self, o, h, lo, c, v)")
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    renamer = _Renamer(i, ind, names[0], dict(zip(names[1:], PARAMS, strict=True)), fn)
    stmts = _fold_constants([renamer.visit(s) for s in body])
    return _Part(_returns(i, stmts, node), node, fn.__code__.co_filename, renamer.state, renamer.g)


class _Renamer(ast.NodeTransformer):
    """`self.x` -> `s{i}_x` (state), params -> the fused names, locals -> `l{i}_x`,
    globals -> `g{i}_x` (their values taken now)."""

    def __init__(
        self, i: int, ind: Indicator, me: str, params: dict[str, str], fn: FunctionType
    ) -> None:
        self.i, self.ind, self.me, self.params, self.fn = i, ind, me, params, fn
        self.state: dict[str, str] = {}  # closure name -> attribute
        self.g: dict[str, Any] = {}
        self.locals = set(fn.__code__.co_varnames) - set(params) - {me}

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            raise Unfusable(f"line {getattr(node, 'lineno', '?')}: {type(node).__name__}")
        return super().generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if not (isinstance(node.value, ast.Name) and node.value.id == self.me):
            return self.generic_visit(node)
        attr = node.attr
        if not _is_state(self.ind, attr):
            raise Unfusable(f"line {node.lineno}: self.{attr} is not instance state")
        if attr == "period" and isinstance(node.ctx, ast.Load):
            return ast.copy_location(ast.Constant(self.ind.period), node)
        if attr == "period":
            raise Unfusable(f"line {node.lineno}: assigns self.period")
        name = f"s{self.i}_{attr}"
        self.state[name] = attr
        return ast.copy_location(ast.Name(name, node.ctx), node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        nid = node.id
        if nid == self.me:
            raise Unfusable(f"line {node.lineno}: self used other than as self.<state>")
        if nid in self.params:
            if not isinstance(node.ctx, ast.Load):
                raise Unfusable(f"line {node.lineno}: assigns the parameter {nid}")
            return ast.copy_location(ast.Name(self.params[nid], node.ctx), node)
        if nid in self.locals:
            return ast.copy_location(ast.Name(f"l{self.i}_{nid}", node.ctx), node)
        scope = self.fn.__globals__
        if nid in scope:
            value = scope[nid]
        elif hasattr(builtins, nid):
            value = getattr(builtins, nid)
        else:
            raise Unfusable(f"line {node.lineno}: unknown name {nid}")
        if type(value) in (int, float, str):  # taken now anyway: fold it in
            return ast.copy_location(ast.Constant(value), node)
        name = f"g{self.i}_{nid}"
        self.g[name] = value
        return ast.copy_location(ast.Name(name, ast.Load()), node)


def _same_code(tree: ast.Module, fn: FunctionType) -> bool:
    """The source read now compiles to the code the imported function runs: a file edited
    after import, or anything the class body changes (name mangling, super()), would
    otherwise be spliced in instead of the running definition. Compared by names, constants
    and operations; jump offsets and LOAD_METHOD vs LOAD_ATTR (which depends on imports seen
    in the enclosing module) may differ."""
    module = compile(tree, fn.__code__.co_filename, "exec")
    fresh = next((c for c in module.co_consts if isinstance(c, CodeType)), None)
    code = fn.__code__
    if fresh is None:
        return False
    attrs = ("co_names", "co_varnames", "co_freevars", "co_cellvars", "co_consts")
    return all(getattr(fresh, a) == getattr(code, a) for a in attrs) and _ops(fresh) == _ops(code)


def _ops(code: CodeType) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for ins in dis.get_instructions(code):
        name = "LOAD_ATTR" if ins.opname == "LOAD_METHOD" else ins.opname
        out.append((name, None if ins.opcode in dis.hasjrel + dis.hasjabs else ins.argval))
    return out


def _fold_constants(body: list[ast.stmt]) -> list[ast.stmt]:
    """A local assigned once, at the top level, from a constant (`p = self.period` became
    `p = 14`) is that constant wherever it is read, so `p - 1` folds at compile time."""
    stores = Counter(
        n.id
        for s in body
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    )
    consts: dict[str, ast.Constant] = {}
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
            pairs = (
                list(zip(target.elts, value.elts, strict=True))
                if isinstance(target, ast.Tuple)
                and isinstance(value, ast.Tuple)
                and len(target.elts) == len(value.elts)
                else [(target, value)]
            )
            keep = []
            for t, v in pairs:
                if isinstance(t, ast.Name) and isinstance(v, ast.Constant) and stores[t.id] == 1:
                    consts[t.id] = v
                else:
                    keep.append((t, v))
            if len(keep) != len(pairs):
                if len(keep) == 1:
                    out.append(ast.copy_location(ast.Assign([keep[0][0]], keep[0][1]), stmt))
                elif keep:
                    tt = ast.Tuple([t for t, _ in keep], ast.Store())
                    vv = ast.Tuple([v for _, v in keep], ast.Load())
                    out.append(ast.copy_location(ast.Assign([tt], vv), stmt))
                continue
        out.append(stmt)
    if not consts:
        return body
    return [_Inline(consts).visit(s) for s in out]


class _Inline(ast.NodeTransformer):
    def __init__(self, consts: dict[str, ast.Constant]) -> None:
        self.consts = consts

    def visit_Name(self, node: ast.Name) -> ast.AST:
        c = self.consts.get(node.id)
        if c is None or not isinstance(node.ctx, ast.Load):
            return node
        return ast.copy_location(ast.Constant(c.value), node)


def _is_state(ind: Indicator, attr: str) -> bool:
    if attr in getattr(ind, "__dict__", {}):
        return True
    slots = (s for k in type(ind).__mro__ for s in _slots(k))
    return attr in slots and hasattr(ind, attr)


def _slots(cls: type) -> tuple[str, ...]:
    s = cls.__dict__.get("__slots__", ())
    return (s,) if isinstance(s, str) else tuple(s)


def _returns(i: int, body: list[ast.stmt], where: ast.FunctionDef) -> list[ast.stmt]:
    """`return x` -> `r{i} = x` and the end of this indicator's block."""
    result = f"r{i}"
    for sub in ast.walk(ast.Module(body=body, type_ignores=[])):
        is_loop = isinstance(sub, (ast.For, ast.While, ast.AsyncFor))
        if is_loop and any(isinstance(n, ast.Return) for n in ast.walk(sub)):
            raise Unfusable(f"line {getattr(sub, 'lineno', '?')}: return inside a loop")
    returns = [n for s in body for n in ast.walk(s) if isinstance(n, ast.Return)]
    last = body[-1] if body else None
    if all(r is last for r in returns):  # straight-line: no block needed
        out = body[:-1] if isinstance(last, ast.Return) else list(body)
        value = last.value if isinstance(last, ast.Return) else None
        ref = last or where
        out.append(_assign(result, value, ref))
        return out
    fixed = [_ReturnToBreak(result).visit(s) for s in body]
    flat: list[ast.stmt] = []
    for s in fixed:
        flat.extend(s if isinstance(s, list) else [s])
    flat += [_assign(result, None, where), ast.copy_location(ast.Break(), where)]
    loop = ast.While(test=ast.Constant(True), body=flat, orelse=[])
    return [ast.copy_location(loop, where)]


class _ReturnToBreak(ast.NodeTransformer):
    def __init__(self, result: str) -> None:
        self.result = result

    def visit_Return(self, node: ast.Return) -> list[ast.stmt]:
        return [_assign(self.result, node.value, node), ast.copy_location(ast.Break(), node)]


def _assign(name: str, value: ast.expr | None, ref: ast.AST) -> ast.stmt:
    expr = value if value is not None else ast.copy_location(ast.Constant(None), ref)
    return ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], expr), ref)


def _build(
    filename: str, members: list[tuple[int, str, Indicator]], parts: dict[int, _Part]
) -> tuple[Callable[..., Update], list[tuple[int, str]]]:
    """def make(init): <state> = init; def updates(o, h, lo, c, v): <bodies>; return {...}
    and where each piece of `init` comes from: (indicator index, attribute)."""
    spliced = [parts[i] for i, _, _ in members if i in parts]
    ref: ast.AST = spliced[0].def_node if spliced else ast.Pass(lineno=1, col_offset=0)
    ns: dict[str, Any] = {"__builtins__": builtins}
    state: dict[str, tuple[int, str]] = {}
    body: list[ast.stmt] = []
    for i, _key, _ind in members:
        part = parts.get(i)
        if part is None:
            state[f"m{i}"] = (i, "update")  # the bound method, called as it is
            call = ast.Call(
                ast.Name(f"m{i}", ast.Load()), [ast.Name(p, ast.Load()) for p in PARAMS], []
            )
            body.append(_assign(f"r{i}", ast.copy_location(call, ref), ref))
            continue
        ns.update(part.globals)
        state.update({name: (i, attr) for name, attr in part.state.items()})
        body += part.body
    values = ast.Dict(
        keys=[ast.Constant(key) for _, key, _ in members],
        values=[ast.Name(f"r{i}", ast.Load()) for i, _, _ in members],
    )
    body.append(ast.copy_location(ast.Return(values), ref))
    assigned = [n for n in state if not n.startswith("m")]
    if assigned:
        body.insert(0, ast.copy_location(ast.Nonlocal(assigned), ref))
    inner = ast.FunctionDef(
        name="updates",
        args=_args(PARAMS),
        body=body,
        decorator_list=[],
        returns=None,
    )
    outer_body: list[ast.stmt] = []
    if state:
        target = ast.Tuple([ast.Name(n, ast.Store()) for n in state], ast.Store())
        outer_body.append(ast.Assign([target], ast.Name("init", ast.Load())))
    outer_body += [inner, ast.Return(ast.Name("updates", ast.Load()))]
    outer = ast.FunctionDef(
        name="make",
        args=_args(("init",)),
        body=outer_body,
        decorator_list=[],
        returns=None,
    )
    for n in (inner, outer, *outer_body):
        ast.copy_location(n, ref)
    module = ast.fix_missing_locations(ast.Module(body=[outer], type_ignores=[]))
    code = compile(module, filename, "exec")
    make_code = next(c for c in code.co_consts if isinstance(c, CodeType))
    make: Callable[..., Update] = FunctionType(make_code, ns)
    return make, list(state.values())


def _args(names: Sequence[str]) -> ast.arguments:
    return ast.arguments(
        posonlyargs=[],
        args=[ast.arg(n) for n in names],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )


_candlestep: Callable[[Sequence[tuple[str, Indicator]]], Fused] | None
_candlestep = fuse
AVAILABLE = True
