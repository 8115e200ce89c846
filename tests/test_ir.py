"""The SSA IR: text form (golden round trips, parse errors), hash-consing, and validate()."""

from __future__ import annotations

import math

import pytest

from hnfc.ir import Builder, IRError, Node, Program, TensorType, TupleType, format_program, live_subprogram, parse_program, parse_type, problems, validate

# ---------------------------------------------------------------------------------------------
# Golden text round trips: format(parse(text)) == text

GOLDENS = {
    "basic": """\
%0 = input(name="x") : f32[4,8]
%1 = const(value=1.0) : f32[]
%2 = add(%0, %1) : f32[4,8]
%3 = log(%2) : f32[4,8]
return %3
""",
    "consts": """\
%0 = const() : f32[]
%1 = const(value=-0.0) : f32[]
%2 = const(value=inf) : f32[]
%3 = const(value=-inf) : f32[]
%4 = const(value=nan) : f32[]
%5 = const(value=-2.5e-08, dtype="f64") : f64[]
%6 = const(value=3, dtype="i64") : i64[]
%7 = const(value=True, dtype="bool") : bool[]
%8 = const(value=1e+300, dtype="f64") : f64[]
return %0, %1, %2, %3, %4, %5, %6, %7, %8
""",
    "attrs_and_optional_args": """\
%0 = input(name="x") : f32[2,3,8]
%1 = param(name="ln.weight") : f32[8]
%2 = layer_norm(%0, %1, _) : f32[2,3,8]
%3 = layer_norm(%0, _, _, normalized_ndim=2, eps=1e-06) : f32[2,3,8]
%4 = sum(%2, dim=(0, -1), keepdim=True) : f32[1,3,1]
%5 = clamp(%3, min=-1.5, max=inf) : f32[2,3,8]
%6 = gelu(%5, approximate="tanh") : f32[2,3,8]
%7 = softmax(%6, dim=1) : f32[2,3,8]
%8 = squeeze(%4) : f32[3]
%9 = slice(%7, dim=-1, start=-3, step=2) : f32[2,3,2]
%10 = cat(%9, %9, %9, dim=-1) : f32[2,3,6]
return %8, %10
""",
    "opaque_and_tuples": """\
%0 = input(name="x") : f32[3,5]
%1 = opaque(%0, target="aten.max.dim", args=(("$arg", 0), -1)) : (f32[3], i64[3])
%2 = getitem(%1) : f32[3]
%3 = getitem(%1, index=1) : i64[3]
%4 = opaque(target="aten.arange.default", args=(8,), kwargs=(("dtype", ("$dtype", "i64")), ("device", ("$device", "cpu")), ("pin_memory", False))) : i64[8]
%5 = opaque(%0, %0, target="aten.cumsum.default", args=(("$arg", 0), 1)) : f32[3,5]
%6 = opaque(%0, target="aten.foo.default", args=(("$arg", 0), ("$torch", "contiguous_format"), (1.5, -2, None, ()))) : (f32[3,5], _, bool[])
return %2, %3, %4, %5, %6
""",
    "strings": """\
%0 = input(name="a \\"quoted\\" \\\\ name") : f32[2]
%1 = input(name="100%1 ) : f32[9]") : f32[2]
%2 = input(name="line\\x0abreak \\u2028 é") : f32[2]
%3 = mul(%0, %1) : f32[2]
%4 = mul(%3, %2) : f32[2]
return %4
""",
    "dtypes_and_shapes": """\
%0 = input(name="x") : bf16[]
%1 = input(name="m") : bool[2,1]
%2 = input(name="s") : f32[s0,8]
%3 = to(%0, dtype="f64") : f64[]
%4 = where(%1, %3, %3) : f64[2,1]
%5 = full(shape=(2, 0), value=-1.0, dtype="f16") : f16[2,0]
%6 = to(%2, dtype="i64") : i64[s0,8]
return %4, %5, %6
""",
}


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_round_trip(name):
    text = GOLDENS[name]
    program = parse_program(text)
    assert format_program(program) == text
    assert str(program) == text
    # and once more: the parsed program's text parses to the same nodes
    again = parse_program(format_program(program))
    assert again.nodes == program.nodes or name == "consts"  # nan != nan in node equality
    assert again.outputs == program.outputs


def test_golden_values_parse_exactly():
    p = parse_program(GOLDENS["consts"])
    values = [n.attr["value"] for n in p.nodes]
    assert values[0] == 0.0 and math.copysign(1, values[1]) == -1.0
    assert values[2] == math.inf and values[3] == -math.inf and math.isnan(values[4])
    assert values[5] == -2.5e-08 and isinstance(values[6], int) and values[7] is True
    s = parse_program(GOLDENS["strings"])
    assert s.input_names == ('a "quoted" \\ name', "100%1 ) : f32[9]", "line\nbreak \u2028 é")
    o = parse_program(GOLDENS["opaque_and_tuples"])
    assert o.nodes[1].type == TupleType((TensorType((3,), "f32"), TensorType((3,), "i64")))
    assert o.nodes[6].type.items[1] is None
    assert o.nodes[4].attr["kwargs"][0] == ("dtype", ("$dtype", "i64"))
    a = parse_program(GOLDENS["attrs_and_optional_args"])
    assert a.nodes[2].args == (0, 1, None) and a.nodes[9].attr["end"] is None
    assert a.nodes[10].args == (9, 9, 9)


def test_every_golden_validates():
    for name, text in GOLDENS.items():
        validate(parse_program(text))


def test_format_of_built_program_parses_back():
    b = Builder()
    x = b.input("x", TensorType((3,), "f32"))
    odd = b.input("weird\tname\u0000", TensorType((3,), "f32"))
    c = b.const(-0.0)
    y = b.add("mul", [b.add("add", [x, c]), odd])
    z = b.add("pow", [y], {"exponent": -1.5})
    p = b.build([z, y])
    text = format_program(p)
    assert "\t" not in text and "\x00" not in text and len(text.splitlines()) == len(p) + 1
    q = parse_program(text)
    assert q.nodes == p.nodes and q.outputs == p.outputs


def test_parse_type():
    assert parse_type("f32[2,3]") == TensorType((2, 3), "f32")
    assert parse_type(" i64[] ") == TensorType((), "i64")
    assert parse_type("(f32[2], _, bool[s0,1])") == TupleType((TensorType((2,), "f32"), None, TensorType(("s0", 1), "bool")))
    assert parse_type("()") == TupleType(())
    with pytest.raises(ValueError, match="bad type"):
        parse_type("f32(2)")


# ---------------------------------------------------------------------------------------------
# Parse errors name the line


@pytest.mark.parametrize(
    "text,line,words",
    [
        ('%0 = input(name="x") : f32[2]\n%1 = frobnicate(%0) : f32[2]\nreturn %1\n', 2, "unknown op 'frobnicate'"),
        ('%0 = input(name="x") : f32[2]\n\n%1 = log(%7) : f32[2]\nreturn %1\n', 3, "%7 is not defined"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(%0 : f32[2]\nreturn %1\n', 2, "expected"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(%0) : f32(2)\nreturn %1\n', 2, "bad type"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(%0, %0) : f32[2]\nreturn %1\n', 2, "expects 1 arguments"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(%0, base=2) : f32[2]\nreturn %1\n', 2, "unknown attributes ['base']"),
        ('%0 = input(name="x") : f32[2]\n%1 = sum(%0, dim=foo) : f32[]\nreturn %1\n', 2, "not a literal"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(%0) : f32[2]\n%1 = exp(%0) : f32[2]\nreturn %1\n', 3, "defined twice"),
        ('%0 = input(name="x") : f32[2]\n%1 = log(_) : f32[2]\nreturn %1\n', 2, "may not be omitted"),
        ('%0 = input(name="x") : f32[2]\nreturn %3\n', 2, "%3 is not defined"),
    ],
)
def test_parse_errors_name_the_line(text, line, words):
    with pytest.raises(IRError) as e:
        parse_program(text)
    msg = str(e.value)
    assert msg.startswith(f"line {line}:"), msg
    assert words in msg, msg


def test_parse_needs_return():
    with pytest.raises(IRError, match="missing 'return'"):
        parse_program('%0 = input(name="x") : f32[2]\n')


def test_comments_and_blank_lines_are_ignored():
    p = parse_program('# a comment\n\n%0 = input(name="x") : f32[2]\n  %1 = exp(%0) : f32[2]  \nreturn %1\n')
    assert [n.op for n in p.nodes] == ["input", "exp"]


# ---------------------------------------------------------------------------------------------
# Hash-consing


def _b():
    b = Builder()
    return b, b.input("x", TensorType((2, 3), "f32"))


def test_same_op_args_attrs_share_an_id():
    b, x = _b()
    a = b.add("exp", [x])
    assert b.add("exp", [x]) == a
    s1 = b.add("sum", [a], {"dim": (1,)})
    assert b.add("sum", [a], {"dim": (1,), "keepdim": False}) == s1  # defaults filled in
    assert b.add("sum", [a], {"dim": (1,), "keepdim": True}) != s1
    assert b.add("sum", [a], {"dim": (0,)}) != s1
    assert b.add("log", [x]) != a
    c1, c2 = b.const(2.0), b.const(2.0)
    assert c1 == c2
    assert b.add("mul", [x, c1]) == b.add("mul", [x, c2])
    assert len(b.nodes) == 8


def test_consts_hash_by_exact_value():
    b = Builder()
    ids = [b.const(0.0), b.const(-0.0), b.const(1), b.const(1.0), b.const(True, "bool"), b.const(1.0, "f64"), b.const(math.nan), b.const(math.nan)]
    assert len(set(ids[:6])) == 6  # 0.0 vs -0.0, int vs float vs bool, f32 vs f64 all distinct
    assert ids[6] == ids[7]


def test_inputs_and_opaque_are_never_merged():
    b = Builder()
    t = TensorType((2,), "f32")
    assert b.input("x", t) != b.input("x", t)  # a duplicate name is validate()'s business
    x = b.input("y", t)
    attrs = {"target": "aten.rand_like.default", "args": (("$arg", 0),)}
    assert b.add("opaque", [x], attrs, t) != b.add("opaque", [x], attrs, t)
    p = b.build([])
    assert [n.op for n in p.nodes] == ["input", "input", "input", "opaque", "opaque"]


def test_builder_rejects_bad_nodes_by_name():
    b, x = _b()
    with pytest.raises(IRError, match="unknown op 'nope'"):
        b.add("nope", [x])
    with pytest.raises(IRError, match="exp: expects 1 arguments, got 2"):
        b.add("exp", [x, x])
    with pytest.raises(IRError, match="argument %5 is not defined"):
        b.add("exp", [5])
    with pytest.raises(IRError, match="mm: cannot type arguments"):
        b.add("mm", [x, x])
    with pytest.raises(IRError, match="opaque: its type cannot be inferred"):
        b.add("opaque", [x], {"target": "aten.foo.default"})


def test_live_subprogram_drops_dead_nodes_keeps_inputs():
    b, x = _b()
    y = b.input("y", TensorType((2, 3), "f32"))
    dead = b.add("exp", [y])
    live = b.add("log", [x])
    b.add("sin", [dead])
    p = live_subprogram(b.build([live], params={"unused": 1}))
    assert [n.op for n in p.nodes] == ["input", "input", "log"]
    assert p.outputs == (2,) and dict(p.params) == {}


# ---------------------------------------------------------------------------------------------
# validate()

T = TensorType((2, 3), "f32")


def _node(op, args=(), attrs=None, type=T):
    from hnfc import ops

    full = {**ops.full_attrs(ops.OPS[op], attrs or {}), **(attrs or {})} if op in ops.OPS else dict(attrs or {})
    return Node(op, tuple(args), tuple(full.items()), type)


def _program(*nodes, outputs=None, params=None):
    from types import MappingProxyType

    return Program(tuple(nodes), tuple(outputs if outputs is not None else [len(nodes) - 1]), MappingProxyType(dict(params or {})))


@pytest.mark.parametrize(
    "program,needle",
    [
        (_program(_node("input", attrs={"name": "x"}), _node("frobnicate", [0])), "%1 = frobnicate: unknown op"),
        (_program(_node("input", attrs={"name": "x"}), _node("exp", [0, 0])), "%1 = exp: exp: expects 1 arguments, got 2"),
        (_program(_node("input", attrs={"name": "x"}), _node("exp", [2]), _node("exp", [0])), "%1 = exp: uses %2, not defined before it"),
        (_program(_node("input", attrs={"name": "x"}), _node("exp", [0], type=TensorType((3, 2), "f32"))), "%1 = exp: recorded type f32[3,2] but the op's rule gives f32[2,3]"),
        (_program(_node("input", attrs={"name": "x"}), _node("neg", [0], type=TensorType((2, 3), "f64"))), "%1 = neg: recorded type f64[2,3]"),
        (_program(_node("input", attrs={"name": "x"}), _node("input", attrs={"name": "x"})), "%1 = input: duplicate input name 'x'"),
        (_program(_node("input", attrs={"name": "x"}), _node("exp", [0]), outputs=[0, 7]), "output %7 does not exist"),
        (_program(_node("input", attrs={"name": "x"}), _node("mm", [0, 0])), "%1 = mm: arguments do not type"),
        (_program(_node("input", attrs={"name": "x"}), _node("input", attrs={"name": "y"}, type=TensorType((4,), "f32")), _node("add", [0, 1])), "%2 = add: arguments do not type"),
        (_program(_node("input", attrs={"name": "x"}), _node("log", [None])), "%1 = log: log: argument 0 may not be omitted"),
        (_program(_node("input", attrs={"name": "x"}), Node("sum", (0,), (("dim", None),), T)), "%1 = sum: missing attributes ['keepdim']"),
        (_program(_node("input", attrs={"name": "x"}), _node("exp", [0], {"base": 2})), "%1 = exp: exp: unknown attributes ['base']"),
    ],
)
def test_validate_names_the_value(program, needle):
    found = problems(program)
    assert any(needle in p for p in found), found
    with pytest.raises(IRError) as e:
        validate(program)
    assert needle in str(e.value)


def test_validate_params_only_when_asked():
    p = _program(_node("param", attrs={"name": "w"}), _node("exp", [0]))
    assert problems(p) == []
    found = problems(p, need_params=True)
    assert found == ["%0 = param: no value for parameter 'w'"]
    assert problems(_program(_node("param", attrs={"name": "w"}), _node("exp", [0]), params={"w": 1.0}), need_params=True) == []


def test_validate_reports_every_problem_and_accepts_symbolic_dims():
    p = _program(
        _node("input", attrs={"name": "x"}),
        _node("input", attrs={"name": "x"}),
        _node("exp", [0, 1]),
        _node("exp", [9]),
    )
    assert len(problems(p)) == 3
    sym = TensorType(("s0", 3), "f32")
    q = _program(_node("input", attrs={"name": "x"}, type=sym), _node("exp", [0], type=TensorType(("s1", 3), "f32")))
    assert problems(q) == []
    assert validate(q) is q
