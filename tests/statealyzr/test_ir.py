"""The textual-IR front end: globals, initializers, constant expressions, debug variables."""

from nfvlab.statealyzr import ir

from .conftest import needs_clang

LL = r'''
%struct.ops = type { void (i32)*, i32 }
@count = dso_local global i32 0, align 4, !dbg !0
@table = dso_local global %struct.ops { void (i32)* @handler, i32 3 }, align 8
@.str = private unnamed_addr constant [4 x i8] c"a,b\00", align 1

define dso_local void @handler(i32 noundef %0) #0 !dbg !10 {
  %2 = alloca i32, align 4
  store i32 %0, i32* %2, align 4
  call void @llvm.dbg.declare(metadata i32* %2, metadata !12, metadata !DIExpression()), !dbg !13
  %3 = load i32, i32* @count, align 4, !dbg !13
  switch i32 %3, label %6 [
    i32 1, label %4
    i32 2, label %5
  ], !dbg !13

4:                                                ; preds = %1
  call void bitcast (void (...)* @ext to void (i32)*)(i32 noundef 1), !dbg !13
  br label %6

5:                                                ; preds = %1
  %r = call i32 (i8*, ...) @printf(i8* getelementptr inbounds ([4 x i8], [4 x i8]* @.str, i64 0, i64 0))
  br label %6

6:
  %7 = load void (i32)*, void (i32)** getelementptr inbounds (%struct.ops, %struct.ops* @table, i32 0, i32 0), align 8
  call void %7(i32 noundef 2)
  ret void
}
declare void @ext(...)
declare i32 @printf(i8* noundef, ...)

!0 = !DIGlobalVariableExpression(var: !1, expr: !DIExpression())
!1 = distinct !DIGlobalVariable(name: "count", scope: !2, file: !3, line: 4, type: !5)
!2 = distinct !DICompileUnit(language: DW_LANG_C99, file: !3)
!3 = !DIFile(filename: "x.c", directory: "/tmp")
!5 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!10 = distinct !DISubprogram(name: "handler", scope: !3, file: !3, line: 7, scopeLine: 7, unit: !2)
!12 = !DILocalVariable(name: "x", arg: 1, scope: !10, file: !3, line: 7, type: !5)
!13 = !DILocation(line: 8, column: 3, scope: !10)
'''


def test_parse_globals_initializers_and_constexprs():
    m = ir.parse_text(LL)
    assert m.globals["@table"].init_refs == ["@handler"]
    f = m.functions["@handler"]
    assert f.params == ["%0"]
    assert set(f.blocks) == {"%entry", "%4", "%5", "%6"}
    sw = next(i for i in f.instrs() if i.op == "switch")
    assert sw.targets == ["%6", "%4", "%5"] and sw.is_cond
    cast_call = next(i for i in f.instrs() if i.op == "call" and i.direct == "@ext")
    assert cast_call.parts == [[]]
    pr = next(i for i in f.instrs() if i.direct == "@printf")
    assert pr.parts == [["@.str"]] and pr.res == "%r"
    ld = [i for i in f.instrs() if i.op == "load"][-1]
    assert ld.parts == [["@table"]]      # reached through a constant-expression gep
    ind = [i for i in f.instrs() if i.op == "call"][-1]
    assert ind.direct is None and ind.callee == ["%7"]


def test_debug_variables_and_locations():
    m = ir.parse_text(LL)
    dv = m.debug_vars()
    assert dv[1].name == "count" and dv[1].kind == "global" and dv[1].file == "/tmp/x.c"
    assert dv[12].kind == "formal" and dv[12].function == "handler"
    ir.load_lines(m)
    assert m.loc(13) == ("/tmp/x.c", 8)


def test_split_top_respects_nesting():
    assert ir.split_top('i32 1, { i32, i8 } { i32 1, i8 2 }, c"x,y"') == \
        ["i32 1", "{ i32, i8 } { i32 1, i8 2 }", 'c"x,y"']


@needs_clang
def test_clang_roundtrip(tmp_path):
    from nfvlab.statealyzr import build
    src = tmp_path / "a.c"
    src.write_text("int g; static int s; int f(int x){ static int k; int *p = &g; *p = x; k++; return s; }\n")
    m = ir.parse_module(build.compile_sources([src], tmp_path / "w"))
    kinds = {(v.name, v.kind) for v in m.debug_vars().values()}
    assert {("g", "global"), ("s", "global"), ("k", "static"), ("x", "formal"), ("p", "local")} <= kinds


def test_string_contents_are_not_references():
    m = ir.parse_text('@.str = private unnamed_addr constant [16 x i8] c"lcamtuf@coredump\\00", align 1\n'
                      '@tbl = global [1 x i8*] [i8* getelementptr ([16 x i8], [16 x i8]* @.str, i32 0, i32 0)]\n')
    assert m.globals["@.str"].init_refs == []
    assert m.globals["@tbl"].init_refs == ["@.str"]


def test_function_pointer_store_carries_points_to():
    """A store of a function-pointer typed value (type with spaces) must propagate points-to."""
    from nfvlab.statealyzr.pointsto import PointsTo, Program
    m = ir.parse_text('''
@fp = global void (i32, i8*)* null
define void @h(i32 %0, i8* %1) {
  ret void
}
define void @set() {
  store void (i32, i8*)* @h, void (i32, i8*)** @fp, align 8
  %1 = load void (i32, i8*)*, void (i32, i8*)** @fp, align 8
  call void %1(i32 1, i8* null)
  ret void
}
''')
    prog = Program(m)
    pta = PointsTo.analyze(prog)
    call = [i for i in m.instrs if i.op == "call"][0]
    assert pta.callees[call.id] == {"@h"}


def test_store_value_type_with_constant_expressions():
    from nfvlab.statealyzr.pointsto import store_value_type
    assert store_value_type("store i8* getelementptr inbounds ([17 x i8], [17 x i8]* @buf, i64 0, i64 17), "
                            "i8** %2, align 8") == "i8*"
    assert store_value_type("store void (i32, i8*)* @h, void (i32, i8*)** @fp, align 8") == "void (i32, i8*)*"
    assert store_value_type("store i32 %5, i32* @head, align 4") == "i32"
    assert store_value_type("store volatile i64 0, i64* %3, align 8") == "i64"


@needs_clang
def test_pointer_one_past_a_static_array_updates_it(tmp_path):
    """tcpdump's intoa(): `cp = buf + sizeof(buf); *--cp = 0;` writes the static buffer (a miss the
    dynamic check found: the store of a constant-expression pointer was dropped)."""
    from nfvlab.statealyzr import build
    from nfvlab.statealyzr.pointsto import PointsTo, Program
    src = tmp_path / "a.c"
    src.write_text("char *f(void){ static char buf[8]; char *cp = buf + sizeof(buf); *--cp = 0; return cp; }\n")
    m = ir.parse_module(build.compile_sources([src], tmp_path / "w"))
    prog = Program(m)
    pta = PointsTo.analyze(prog)
    stores = [i for i in m.instrs if i.op == "store" and i.text.startswith("store i8 0")]
    assert stores
    v = prog.value(stores[0].fn, stores[0].parts[1][0])
    assert prog.gobj["@f.buf"] in pta.pts[v]
