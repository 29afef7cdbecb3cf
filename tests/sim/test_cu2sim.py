"""tools/cu2sim.py, the build-time rewrite of csrc/ for the CPU simulator: it keeps every line in
place, rewrites launches and function-scope __shared__, and refuses what the simulator cannot run.
Pure Python, no build needed. Run: ``pytest tests/sim/test_cu2sim.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cu2sim", ROOT / "tools" / "cu2sim.py")
cu2sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cu2sim)


def test_every_csrc_file_rewrites_line_for_line():
    files = sorted((ROOT / "csrc").glob("*.cu")) + sorted((ROOT / "csrc").glob("*.cuh")) + [
        ROOT / "csrc" / "sim" / "selftest.cu"
    ]
    for f in files:
        text = f.read_text()
        out = cu2sim.rewrite(text, str(f))
        assert out.count("\n") == text.count("\n"), f
        assert "<<<" not in cu2sim.code_mask(out) and ">>>" not in cu2sim.code_mask(out), f


def test_launch_rewrite_keeps_template_callee_and_lines():
    src = "void f() {\n    k<true><<<grid,\n        dim3(16, 16), 0, s>>>(a, b);\n}\n"
    out = cu2sim.rewrite(src, "x.cu")
    assert '::ekdaa_sim::configure(k<true>, "k<true>", __FILE__, __LINE__, grid,' in out
    assert "dim3(16, 16), 0, s)(a, b);" in out
    assert out.count("\n") == src.count("\n")


def test_shared_declarations_become_per_block_slots():
    src = (
        "__global__ void k() {\n"
        "    __shared__ float tile[16][17];  // comment\n"
        "    __shared__ __align__(16) float v[4];\n"
        "    extern __shared__ float dyn[];\n"
        "}\n"
    )
    out = cu2sim.rewrite(src, "x.cu").splitlines()
    assert "shared_var<ekdaa_sim_shared_t_tile_2>" in out[1] and "float[16][17]" in out[1] and "// comment" in out[1]
    assert "alignas(16)" in out[2] and "auto& v =" in out[2]
    assert out[3].strip() == "float* const dyn = ::ekdaa_sim::dynamic_shared<float>();"


@pytest.mark.parametrize(
    "src, message",
    [
        ("__device__ void f() { asm volatile(\"bar.sync 0;\"); }\n", "inline assembly"),
        ("namespace a {\n__shared__ float x[4];\n}\n", "outside a function body"),
        ("__shared__ float x[4];\n", "outside a function body"),
        ("__global__ void k() {\n    __shared__ float a[4], b[4];\n}\n", "one __shared__ variable per line"),
        ("__global__ void k() {\n    int i = 0; __shared__ float a[4];\n}\n", "must start its line"),
        ("void f() { k<<<1, 2>(x); }\n", "closing '>>>'"),
    ],
)
def test_unsupported_constructs_fail_the_build(src, message):
    with pytest.raises(cu2sim.RewriteError, match=message):
        cu2sim.rewrite(src, "bad.cu")


def test_comments_and_strings_are_ignored():
    src = '// k<<<1, 1>>>() and __shared__ in a comment\nconst char* s = "asm __shared__ <<<";\n'
    assert cu2sim.rewrite(src, "x.cu") == src


def test_main_reports_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.cu"
    bad.write_text("int x;\n__shared__ float y[2];\n")
    assert cu2sim.main(["--out-dir", str(tmp_path / "out"), str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err
    good = tmp_path / "good.cu"
    good.write_text("int x;\n")
    assert cu2sim.main(["--out-dir", str(tmp_path / "out"), str(good)]) == 0
    assert (tmp_path / "out" / "good.cu.cpp").read_text() == f'#line 1 "{good}"\nint x;\n'
