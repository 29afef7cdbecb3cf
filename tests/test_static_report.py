"""bench/static_report.py on the CPU: parsing of captured nvcc/cuobjdump output, the occupancy
calculator on hand-checked cases, the kernel table's loud failures, the launch count of the model's
op sequence and the analytic model's arithmetic on toy cases. With nvcc and cuobjdump present, one
real sm_90 compile of csrc/optim.cu (a few seconds); skipped cleanly without them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

sr = importlib.import_module("static_report")
floors = importlib.import_module("floors")

# ------------------------------------------------------------------ captured fixtures

FILTER = "_ZN5ekdaa39_GLOBAL__N__58f3593a_7_conv_cu_8dd64ccb25conv_filter_update_kernelENS_16FilterUpdateArgsE"
FWD = "_ZN5ekdaa39_GLOBAL__N__58f3593a_7_conv_cu_8dd64ccb21conv_block_fwd_kernelENS_16ConvBlockFwdArgsEl"
PROJ_T = "_ZN5ekdaa37_GLOBAL__N__2daa49ac_5_fc_cu_bedda97214fc_proj_kernelILb1EEEvPKfS3_S3_PfiiiiiifNS_7DropoutE"
BILINEAR = "_ZN5ekdaa39_GLOBAL__N__58f3593a_7_conv_cu_8dd64ccb27unpool_bilinear_proj_kernelEPKfPflllll"

# `nvcc -arch=sm_90 -cubin --resource-usage csrc/conv.cu` / `csrc/fc.cu` (nvcc 13.0.88), excerpts.
RESOURCE_USAGE = f"""\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '{FILTER}' for 'sm_90'
ptxas info    : Function properties for {FILTER}
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compile time = 709.929 ms
ptxas info    : Compiling entry function '{FWD}' for 'sm_90'
ptxas info    : Function properties for {FWD}
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 48 registers, used 0 barriers, 40 bytes cmem[2]
ptxas info    : Compile time = 672.449 ms
ptxas info    : Compiling entry function '{PROJ_T}' for 'sm_90'
ptxas info    : Function properties for {PROJ_T}
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 2176 bytes smem
"""
# (the conv_block_fwd spill/cmem[2] numbers above were edited in to exercise those fields)

# `cuobjdump -res-usage` (13.5.37) of the conv.cu cubin, excerpt.
CUOBJDUMP_RES = f"""\

Resource usage:
 Common:
  GLOBAL:0
 Function {FILTER}:
  REG:40 STACK:0 SHARED:2048 LOCAL:0 CONSTANT[0]:624 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function {BILINEAR}:
  REG:26 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:584 TEXTURE:0 SURFACE:0 SAMPLER:0
"""

# `cuobjdump -sass` of fc_bias_update_kernel (csrc/fc.cu, sm_90), encodings and trailing NOPs removed.
SASS_FC_BIAS = """\
	code for sm_90
		Function : _ZN5ekdaa37_GLOBAL__N__2daa49ac_5_fc_cu_bedda97221fc_bias_update_kernelEPKfPfxx
	.headerflags	@"EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   S2R R16, SR_TID.X ;
        /*0020*/                   S2UR UR4, SR_CTAID.X ;
        /*0030*/                   ULDC UR5, c[0x0][0x0] ;
        /*0040*/                   LDC.64 R2, c[0x0][0x228] ;
        /*0050*/                   UIMAD.WIDE.U32 UR4, UR4, UR5, URZ ;
        /*0060*/                   IADD3 R15, P0, R16, UR4, RZ ;
        /*0070*/                   IMAD.X R0, RZ, RZ, UR5, P0 ;
        /*0080*/                   ISETP.GE.U32.AND P0, PT, R15, R2, PT ;
        /*0090*/                   ISETP.GE.AND.EX P0, PT, R0, R3, PT, P0 ;
        /*00a0*/               @P0 EXIT ;
        /*00b0*/                   LDC.64 R6, c[0x0][0x220] ;
        /*00c0*/                   ULDC.64 UR6, c[0x0][0x208] ;
        /*00d0*/                   IMAD.MOV.U32 R14, RZ, RZ, RZ ;
        /*00e0*/                   ISETP.GE.U32.AND P0, PT, R6, 0x1, PT ;
        /*00f0*/                   ISETP.GE.AND.EX P0, PT, R7, RZ, PT, P0 ;
        /*0100*/              @!P0 BRA 0x530 ;
        /*0110*/                   IADD3 R4, P0, R6.reuse, -0x1, RZ ;
        /*0120*/                   IMAD.MOV.U32 R14, RZ, RZ, RZ ;
        /*0130*/                   LOP3.LUT R17, R6, 0x3, RZ, 0xc0, !PT ;
        /*0140*/                   CS2R R18, SRZ ;
        /*0150*/                   ISETP.GE.U32.AND P1, PT, R4, 0x3, PT ;
        /*0160*/                   IADD3.X R4, R7, -0x1, RZ, P0, !PT ;
        /*0170*/                   ISETP.NE.U32.AND P0, PT, R17, RZ, PT ;
        /*0180*/                   ISETP.GE.U32.AND.EX P1, PT, R4, RZ, PT, P1 ;
        /*0190*/                   ISETP.NE.AND.EX P0, PT, RZ, RZ, PT, P0 ;
        /*01a0*/              @!P1 BRA 0x3c0 ;
        /*01b0*/                   ULDC.64 UR8, c[0x0][0x210] ;
        /*01c0*/                   IADD3 R23, P2, R17, -R6, RZ ;
        /*01d0*/                   IMAD.WIDE.U32 R4, R2, 0x4, RZ ;
        /*01e0*/                   LEA R10, P1, R15, UR8, 0x2 ;
        /*01f0*/                   CS2R R18, SRZ ;
        /*0200*/                   IMAD.SHL.U32 R21, R3, 0x4, RZ ;
        /*0210*/                   LEA.HI.X R11, R15, UR9, R0, 0x2, P1 ;
        /*0220*/                   IMAD.X R20, RZ, RZ, ~R7, P2 ;
        /*0230*/                   IMAD.MOV.U32 R14, RZ, RZ, RZ ;
        /*0240*/                   IMAD.IADD R21, R5, 0x1, R21 ;
        /*0250*/                   IADD3 R6, P1, R10, R4, RZ ;
        /*0260*/                   IMAD.X R7, R11, 0x1, R21.reuse, P1 ;
        /*0270*/                   IADD3 R8, P1, R6, R4.reuse, RZ ;
        /*0280*/                   LDG.E.CONSTANT R11, desc[UR6][R10.64] ;
        /*0290*/                   IMAD.X R9, R7, 0x1, R21.reuse, P1 ;
        /*02a0*/                   IADD3 R12, P1, R8, R4, RZ ;
        /*02b0*/                   LDG.E.CONSTANT R6, desc[UR6][R6.64] ;
        /*02c0*/                   IMAD.X R13, R9, 0x1, R21, P1 ;
        /*02d0*/                   LDG.E.CONSTANT R8, desc[UR6][R8.64] ;
        /*02e0*/                   LDG.E.CONSTANT R25, desc[UR6][R12.64] ;
        /*02f0*/                   IADD3 R18, P1, R18, 0x4, RZ ;
        /*0300*/                   IADD3 R22, P2, R18, R23, RZ ;
        /*0310*/                   IMAD.X R19, RZ, RZ, R19, P1 ;
        /*0320*/                   ISETP.NE.U32.AND P1, PT, R22, RZ, PT ;
        /*0330*/                   IMAD.X R10, R19, 0x1, R20, P2 ;
        /*0340*/                   ISETP.NE.AND.EX P1, PT, R10, RZ, PT, P1 ;
        /*0350*/                   IADD3 R10, P2, R12, R4, RZ ;
        /*0360*/                   FADD R11, R11, R14 ;
        /*0370*/                   FADD R11, R11, R6 ;
        /*0380*/                   FADD R8, R11, R8 ;
        /*0390*/                   IMAD.X R11, R13, 0x1, R21, P2 ;
        /*03a0*/                   FADD R14, R8, R25 ;
        /*03b0*/               @P1 BRA 0x250 ;
        /*03c0*/              @!P0 BRA 0x530 ;
        /*03d0*/                   IMAD.WIDE.U32 R4, R18, R2.reuse, UR4 ;
        /*03e0*/                   ULDC.64 UR8, c[0x0][0x210] ;
        /*03f0*/                   IADD3 R17, P2, RZ, -R17, RZ ;
        /*0400*/                   IMAD R19, R19, R2, RZ ;
        /*0410*/                   IADD3 R8, P0, R16, R4, RZ ;
        /*0420*/                   SHF.L.U64.HI R9, R2, 0x2, R3 ;
        /*0430*/                   IMAD R19, R18, R3, R19 ;
        /*0440*/                   LEA R7, P1, R8, UR8, 0x2 ;
        /*0450*/                   IMAD.X R6, RZ, RZ, -0x1, P2 ;
        /*0460*/                   IMAD.X R5, R5, 0x1, R19, P0 ;
        /*0470*/                   LEA.HI.X R8, R8, UR9, R5, 0x2, P1 ;
        /*0480*/                   IMAD.MOV.U32 R4, RZ, RZ, R7 ;
        /*0490*/                   IMAD.MOV.U32 R5, RZ, RZ, R8 ;
        /*04a0*/                   LDG.E.CONSTANT R3, desc[UR6][R4.64] ;
        /*04b0*/                   IADD3 R17, P0, R17, 0x1, RZ ;
        /*04c0*/                   LEA R7, P1, R2, R7, 0x2 ;
        /*04d0*/                   IMAD.X R6, RZ, RZ, R6, P0 ;
        /*04e0*/                   ISETP.NE.U32.AND P0, PT, R17, RZ, PT ;
        /*04f0*/                   IMAD.X R8, R8, 0x1, R9, P1 ;
        /*0500*/                   ISETP.NE.AND.EX P0, PT, R6, RZ, PT, P0 ;
        /*0510*/                   FADD R14, R3, R14 ;
        /*0520*/               @P0 BRA 0x480 ;
        /*0530*/                   ULDC.64 UR8, c[0x0][0x218] ;
        /*0540*/                   LEA R2, P0, R15, UR8, 0x2 ;
        /*0550*/                   LEA.HI.X R3, R15, UR9, R0, 0x2, P1 ;
        /*0560*/                   STG.E desc[UR6][R2.64], R14 ;
        /*0570*/                   EXIT ;
        /*0580*/                   BRA 0x580;
        /*0590*/                   NOP;
"""

# Synthetic (hand-written in cuobjdump's format): an outer loop 0x20-0x90 around an inner loop
# 0x30-0x70 of 2 FFMA in 5 instructions, a second function after it, encodings kept on one line.
SASS_NESTED = """\
		Function : _Z6nestedPKfPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;                    /* 0x00000a0000017a02 */
        /*0010*/                   IMAD.MOV.U32 R2, RZ, RZ, RZ ;              /* 0x000000ffff027224 */
        /*0020*/                   LDG.E R4, desc[UR4][R6.64] ;              /* 0x0000000406047981 */
        /*0030*/                   FFMA R2, R4, R5, R2 ;                      /* 0x0000000504027223 */
        /*0040*/                   LDS R5, [R3] ;                             /* 0x0000000003057984 */
        /*0050*/                   FFMA R2, R4, R5, R2 ;                      /* 0x0000000504027223 */
        /*0060*/                   ISETP.NE.AND P0, PT, R3, R8, PT ;          /* 0x000000080300720c */
        /*0070*/               @P0 BRA 0x30 ;                                 /* 0xfffffffc00000947 */
        /*0080*/                   IADD3 R6, R6, 0x4, RZ ;                    /* 0x0000000406067810 */
        /*0090*/              @!P1 BRA 0x20 ;                                 /* 0xfffffff800009947 */
        /*00a0*/                   STG.E desc[UR4][R10.64], R2 ;              /* 0x000000020a007986 */
        /*00b0*/                   EXIT ;                                     /* 0x000000000000794d */
        /*00c0*/                   BRA 0xc0;                                  /* 0xfffffff000007947 */
		Function : _Z8straightv
        /*0000*/                   EXIT ;                                     /* 0x000000000000794d */
        /*0010*/                   BRA 0x10;                                  /* 0xfffffff000007947 */
"""



# ------------------------------------------------------------------ parsing


def test_parse_resource_usage():
    u = sr.parse_resource_usage(RESOURCE_USAGE)
    assert set(u) == {FILTER, FWD, PROJ_T}
    assert u[FILTER] == {"arch": "sm_90", "registers": 40, "stack": 0, "spill_stores": 0, "spill_loads": 0,
                         "smem": 1024, "barriers": 1, "cmem": {}}
    assert (u[FWD]["registers"], u[FWD]["stack"], u[FWD]["spill_stores"], u[FWD]["spill_loads"]) == (48, 16, 8, 12)
    assert u[FWD]["smem"] == 0 and u[FWD]["cmem"] == {"cmem[2]": 40}
    assert u[PROJ_T]["smem"] == 2176 and u[PROJ_T]["barriers"] == 1


def test_parse_cuobjdump_resources():
    r = sr.parse_cuobjdump_resources(CUOBJDUMP_RES)
    assert r[FILTER]["REG"] == 40 and r[FILTER]["SHARED"] == 2048 and r[FILTER]["CONSTANT[0]"] == 624
    assert r[FILTER]["LOCAL"] == 0
    assert len(r) == 2


@pytest.mark.parametrize("mangled, short", [
    (FILTER, "conv_filter_update_kernel"),
    (PROJ_T, "fc_proj_kernel<true>"),
    ("_ZN5ekdaa37_GLOBAL__N__2daa49ac_5_fc_cu_bedda97214fc_proj_kernelILb0EEEvPKf", "fc_proj_kernel<false>"),
    ("_Z6nestedPKfPf", "nested"),
])
def test_kernel_names_with_and_without_cxxfilt(mangled, short):
    assert sr._demangle_fallback(mangled) == short
    assert sr.demangle([mangled])[mangled] == short  # through c++filt when installed
    demangled = "void ekdaa::(anonymous namespace)::fc_proj_kernel<true>(const float *, float *, ekdaa::Dropout)"
    assert sr.short_name("x", demangled) == "fc_proj_kernel<true>"


def test_parse_sass_and_main_loop_of_a_captured_kernel():
    sass = sr.parse_sass(SASS_FC_BIAS)
    (name, instrs), = sass.items()
    assert name.endswith("fc_bias_update_kernelEPKfPfxx")
    assert instrs[0].addr == 0 and instrs[0].opcode == "LDC" and instrs[-1].opcode == "NOP"
    assert instrs[10].pred == "@P0" and instrs[10].opcode == "EXIT"
    # loops: the 4x-unrolled body 0x250-0x3b0 and the remainder 0x480-0x520; `BRA 0x580` at 0x580 is none
    assert sr.find_loops(instrs) == [(0x250, 0x3B0), (0x480, 0x520)]
    assert sr.main_loop(instrs) == (0x250, 0x3B0)  # no FFMA in either: the larger body
    mix = sr.instruction_mix(instrs, (0x250, 0x3B0))
    assert mix["instructions"] == 23
    assert mix["counts"]["load_global"] == 4 and mix["counts"]["fp32_other"] == 4
    assert mix["counts"]["branch"] == 1 and mix["counts"]["int"] == 14
    assert mix["ffma_share"] == 0.0 and mix["instructions_per_ffma"] is None


def test_nested_loops_ffma_share():
    sass = sr.parse_sass(SASS_NESTED)
    assert set(sass) == {"_Z6nestedPKfPf", "_Z8straightv"}
    instrs = sass["_Z6nestedPKfPf"]
    assert sr.find_loops(instrs) == [(0x20, 0x90), (0x30, 0x70)]
    assert sr.main_loop(instrs) == (0x30, 0x70)  # innermost
    mix = sr.instruction_mix(instrs, (0x30, 0x70))
    assert mix["instructions"] == 5 and mix["counts"]["ffma"] == 2 and mix["ffma_share"] == pytest.approx(0.4)
    assert mix["instructions_per_ffma"] == pytest.approx(2.5)
    assert mix["counts"]["load_shared"] == 1 and mix["counts"]["int"] == 1 and mix["counts"]["branch"] == 1
    assert sr.main_loop(sass["_Z8straightv"]) is None


def test_launch_block_sizes(tmp_path):
    (tmp_path / "k.h").write_text("constexpr int kTile = 16;\nconstexpr int kThreads = 2 * kTile * 4;\n")
    (tmp_path / "k.cu").write_text(
        "// a comment mentioning every<<<x, y>>> launch is ignored\n"
        "void a() { foo_kernel<<<grid, kThreads, 0, stream>>>(x); }\n"
        "void b() { bar_kernel<true><<<grid, dim3(kTile, kTile), 0, stream>>>(x); }\n"
        "void c() { baz_kernel<<<blocks, runtime_value>>>(x); }\n")
    assert sr.launch_block_sizes(tmp_path) == {"foo_kernel": 128, "bar_kernel<true>": 256, "baz_kernel": None}


def test_launch_block_sizes_of_the_sources():
    blocks = sr.launch_block_sizes(ROOT / "csrc")
    assert blocks, "no <<<...>>> launch found in csrc/"
    unknown = [k for k in blocks if k not in sr.KERNELS and k.split("<")[0] not in sr.KERNELS]
    assert not unknown, f"kernels launched in csrc/ but missing from static_report.KERNELS: {unknown}"


def test_unknown_kernel_fails_loudly():
    with pytest.raises(KeyError, match="not in KERNELS"):
        sr.lookup_kernel("brand_new_kernel")
    assert sr.lookup_kernel("fc_proj_kernel<true>")["phase"] == "error"
    assert sr.lookup_kernel("conv_filter_update_kernel")["ffma_target"] is True


# ------------------------------------------------------------------ occupancy (sm_90)


@pytest.mark.parametrize("regs, threads, smem, blocks, occupancy, limiter", [
    # 40 regs: 40·32 = 1280 regs/warp (a multiple of 256); 65536 // 1280 = 51 warps, down to a
    # multiple of 4 = 48; 48 // 8 warps = 6 blocks = 48/64 warps (today's conv_filter_update_kernel)
    (40, 256, 1024, 6, 0.75, "registers"),
    # 48 regs: 1536 regs/warp; 65536 // 1536 = 42 -> 40 warps; 40 // 8 = 5 blocks = 62.5%
    (48, 256, 0, 5, 0.625, "registers"),
    # 32 regs: 1024/warp -> 64 warps = 8 blocks; smem (2176 + 1 KB reserved = 3200 B) allows 72
    (32, 256, 2176, 8, 1.0, "warps"),
    # 255 regs: 8160 -> 8192 regs/warp; 8 warps/block × 8192 = 65536 = the per-block maximum: 1 block
    (255, 256, 0, 1, 0.125, "registers"),
    # 1024 threads × 64 regs = the whole register file: 1 block of 32 warps
    (64, 1024, 0, 1, 0.5, "registers"),
    # Modal's GPU glossary example (H100: 32 threads, 8 regs, 12 KB smem) gives 19 blocks without the
    # 1 KB per-block reservation of the Hopper tuning guide; with it, 228 KB // 13 KB = 17
    (8, 32, 12 * 1024, 17, 17 / 64, "shared_memory"),
    # 227 KB, the per-block maximum: one block
    (32, 128, 227 * 1024, 1, 4 / 64, "shared_memory"),
    # tiny blocks hit the 32-blocks/SM cap: 32 blocks × 1 warp = 50%
    (16, 32, 0, 32, 0.5, "blocks"),
])
def test_occupancy_hand_checked(regs, threads, smem, blocks, occupancy, limiter):
    occ = sr.occupancy(regs, threads, smem)
    assert occ["blocks_per_sm"] == blocks
    assert occ["occupancy"] == pytest.approx(occupancy)
    assert occ["limited_by"] == limiter


def test_occupancy_impossible_launches():
    assert sr.occupancy(32, 256, 227 * 1024 + 1)["blocks_per_sm"] == 0  # more than 227 KB
    with pytest.raises(ValueError, match="threads per block"):
        sr.occupancy(32, 2048, 0)


# ------------------------------------------------------------------ launches and the model


def test_launch_sequence_of_the_current_backend():
    la = sr.launch_sequence("fmnist")
    # 3 conv fwd + fc1 fwd + fc_softmax_error; fc_update_proj for out and fc1 (each with the projection
    # of its error and the epilogue below); 3 x 2 conv filter-update launches (split-K GEMM + reduce);
    # 2 conv_error_proj; optim_update: 16 (tests/gpu/test_launch_count.py counts the same on the simulator)
    assert la["ekdaa_kernel_launches"] == 16
    # the two copies of the batch into the recorded input buffers and of the output launch's two sums;
    # no finiteness check per step (the optimizer kernel flags non-finite updates on the device)
    assert la["cupy_launches"] == 4 and "all_finite" not in la["per_backend_call"]
    assert la["total_launches"] == 20 and la["host_syncs"] == 0
    # the simulator's count of a replayed step agrees with the mapping (None where _sim is not built)
    assert la["sim_launch_count"] in (None, la["ekdaa_kernel_launches"])


def _fake_kernels(ffma_share=0.5):
    occ = sr.occupancy(32, 256, 0)
    loop = {"ffma_share": ffma_share}
    igemm = [f"{k}<{bm}, {bn}, {ks}>" for k in ("conv_block_fwd_igemm_kernel", "conv_error_proj_igemm_kernel")
             for bm, bn, ks in sr.IGEMM_TILES]  # the template instances the cubin holds
    return {name: {"occupancy": occ, "main_loop": loop} for name in [*sr.KERNELS, *igemm]}


@pytest.mark.parametrize("preset", ["fmnist", "cifar"])
def test_ekdaa_launches_keep_floors_counts(preset):
    kernels = _fake_kernels()
    launches = sr.ekdaa_launches(preset, 50, kernels)
    blocks = floors.blocks_of(preset)
    rows = floors.update_rows(blocks, 50, "ekdaa")
    # a pooled conv layer's filter update runs v3: one term per 2x2 window, a quarter of the floor's FLOPs
    pooled = {b.name for b in blocks if b.kind == "conv" and b.pool}
    sparse = [r for r in rows if r["op"] == "conv_filter_update" and r["layer"] in pooled]
    assert sparse and sum(la.name == "conv_filter_update_pooled_kernel" for la in launches) == len(sparse)
    want = sum(r["flops"] for r in rows) - sum(r["flops"] - r["flops"] // 4 for r in sparse)
    assert sum(la.flops for la in launches) == want
    assert abs(sum(la.nbytes for la in launches) - sum(r["bytes"] for r in rows)) < len(launches)
    assert all(la.blocks >= 1 for la in launches)


def test_kernel_time_toy_case():
    gpu = {"sms": 2, "fp32_tflops": 1.0, "hbm_tbs": 1.0}
    model = dict(sr.MODEL, hbm_efficiency=1.0, issue_efficiency=1.0, occupancy_saturation=0.5, min_kernel_us=0.0)
    kernel = {"occupancy": {"blocks_per_sm": 8, "warps_per_block": 8}, "main_loop": {"ffma_share": 0.5}}
    # 3 blocks on 2 SMs: 2 resident per SM, one wave, 3/4 of the slots busy; 16 warps = 25%
    # occupancy -> hiding 0.5; rate = 1e12 × 0.5 × 1 × 0.5 × 0.75 = 1.875e11 FLOP/s
    la = sr.Launch("k", "forward", flops=1_875_000, nbytes=5_000_000, blocks=3, kernel=kernel)
    t = sr.kernel_time_us(la, gpu, model)
    assert t["compute_us"] == pytest.approx(10.0) and t["memory_us"] == pytest.approx(5.0)
    assert t["us"] == pytest.approx(10.0) and t["bound"] == "flops"
    assert (t["blocks_per_sm"], t["waves"], t["sm_use"], t["latency_hiding"]) == (2, 1, 0.75, 0.5)
    slow = sr.kernel_time_us(sr.Launch("k", "forward", 0, 1000, 1, kernel), gpu, dict(model, min_kernel_us=3.0))
    assert slow["us"] == 3.0 and slow["bound"] == "launch"


def test_gemm_fill_toy_cases():
    gpu = {"sms": 4}
    model = dict(sr.MODEL, cudnn_tiles=((2, 2, 1.0),), cudnn_min_k=1, cudnn_ctas_per_sm=1)
    assert sr.gemm_fill((4, 4, 8), gpu, model) == 1.0  # 4 tiles on 4 SMs
    assert sr.gemm_fill((2, 2, 1), gpu, model) == 0.25  # 1 tile, K too short to split
    assert sr.gemm_fill((2, 2, 8), gpu, model) == 1.0  # 1 tile split 4 ways over K
    assert sr.gemm_fill((6, 2, 1), gpu, model) == pytest.approx(3 / 4)
    assert sr.gemm_fill(None, gpu, model) == 1.0


def test_prediction_on_fake_kernels_is_consistent():
    la = sr.launch_sequence("fmnist")
    p = sr.predict("fmnist", 50, _fake_kernels(), la, "H100-SXM")
    assert p["ekdaa_ms"] >= p["ekdaa_device_ms"] > 0 and p["cudnn_best_ms"] > 0
    assert p["ratio_ekdaa_vs_cudnn"] == pytest.approx(p["ekdaa_ms"] / p["cudnn_best_ms"])
    assert p["ekdaa_kernel_launches"] == la["ekdaa_kernel_launches"]  # one Launch per ekdaa_cuda launch


# ------------------------------------------------------------------ a real compile (nvcc + cuobjdump)


@pytest.mark.skipif(sr.find_tool("nvcc") is None or sr.find_tool("cuobjdump") is None,
                    reason="needs nvcc and cuobjdump (pip install nvidia-cuda-cuobjdump)")
def test_real_compile_of_one_file(tmp_path):
    src = tmp_path / "csrc"
    src.mkdir()
    for f in (ROOT / "csrc").iterdir():
        if f.suffix in (".h", ".cuh") or f.name == "optim.cu":
            (src / f.name).write_text(f.read_text())
    kernels = sr.analyse_kernels(src, tmp_path, "sm_90")
    assert {"optim_update_kernel", "optim_sq_norm_kernel"} <= set(kernels)
    for k in kernels.values():
        assert 0 < k["registers"] <= 255 and k["occupancy"]["blocks_per_sm"] >= 1
        assert k["main_loop"] is not None and k["main_loop"]["instructions"] > 0


def test_tensor_core_kernels_are_not_silently_modelled_as_simt():
    kernel = {"occupancy": sr.occupancy(64, 128, 0), "main_loop": {"ffma_share": 0.0, "counts": {"mma": 8}}}
    with pytest.raises(NotImplementedError, match="tensor cores"):
        sr.kernel_time_us(sr.Launch("k", "forward", 10, 10, 1, kernel), sr.GPUS["H200"])


def test_baseline_rows_are_attached():
    rep = {"predictions": [{"preset": "fmnist", "batch": 50, "gpu": "H200", "ekdaa_ms": 0.5}]}
    base = {"commit": "abc", "predictions": [{"preset": "fmnist", "batch": 50, "gpu": "H200", "ekdaa_ms": 3.0}]}
    sr.add_baseline(rep, base, "old.json")
    assert rep["baseline"] == {"file": "old.json", "commit": "abc"}
    assert rep["predictions"][0]["speedup_vs_baseline"] == pytest.approx(6.0)


# Synthetic: a loop 0x00-0x80 whose 64-bit division has a slow path (a CALL block) beside the fast one.
SASS_CALL = """\
		Function : _Z4divsv
        /*0000*/                   ISETP.NE.U32.AND P0, PT, R5, RZ, PT ;
        /*0010*/              @!P0 BRA 0x50 ;
        /*0020*/                   MOV R12, 0x40 ;
        /*0030*/                   CALL.REL.NOINC 0x100 ;
        /*0040*/                   BRA 0x60 ;
        /*0050*/                   IMAD.HI.U32 R7, R3, R4, RZ ;
        /*0060*/                   FFMA R2, R7, R8, R2 ;
        /*0070*/                   ISETP.NE.AND P1, PT, R3, R9, PT ;
        /*0080*/               @P1 BRA 0x0 ;
        /*0090*/                   EXIT ;
        /*0100*/                   IMAD R7, R3, R4, RZ ;
        /*0110*/                   RET.REL.NODEC R12 0x0 ;
"""


def test_call_blocks_are_left_out_of_the_fast_path_share():
    instrs = sr.parse_sass(SASS_CALL)["_Z4divsv"]
    assert sr.main_loop(instrs) == (0x0, 0x80)
    blocks = sr.basic_blocks(instrs, (0x0, 0x80))
    assert [[i.addr for i in b] for b in blocks] == [[0x0, 0x10], [0x20, 0x30, 0x40], [0x50], [0x60, 0x70, 0x80]]
    mix = sr.instruction_mix(instrs, (0x0, 0x80))
    assert mix["instructions"] == 9 and mix["calls"] == 1
    assert mix["without_call_blocks"] == {"instructions": 6, "ffma_share": pytest.approx(1 / 6),
                                          "instructions_per_ffma": pytest.approx(6.0)}


@pytest.mark.parametrize("shape", [(50, 1, 32, 28, 28, 5), (50, 32, 64, 14, 14, 3), (1024, 64, 128, 7, 7, 3),
                                   (1, 1, 1, 1, 1, 1), (3, 7, 65, 3, 3, 3)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("pooled", [False, True])  # True: v3, conv_filter_update_pooled
def test_filter_update_plan_matches_the_launcher(shape, bias, pooled):
    """The model's split-K plan (_fwu_plan) is the launcher's: same workspace size (splits·C_out·cols)."""
    from ekdaa_cuda._device import sim_available

    if not sim_available():
        pytest.skip("needs ekdaa_cuda._sim (the launcher's plan)")
    from ekdaa_cuda import _sim

    n, c_in, c_out, h, w, k = shape
    tiles, splits, cols = sr._fwu_plan(dict(n=n, c_in=c_in, c_out=c_out, h=h, w=w, k=k, bias=bias, pooled=pooled))
    assert cols == c_in * k * k + bias and 1 <= splits and tiles >= 1
    floats = _sim.conv_filter_update_pooled_workspace_floats if pooled else _sim.conv_filter_update_workspace_floats
    assert splits * c_out * cols == floats(n, c_in, c_out, h, w, k, bias)


@pytest.mark.parametrize("shape", [(50, 6272, 128), (1, 6272, 1), (50, 128, 10), (1024, 3136, 256), (1, 1, 1),
                                   (33, 1 << 20, 1), (7, 0, 5)])
def test_fc_fwd_plan_matches_the_launcher(shape):
    """The model's fc_fwd v2 plan (_fc_fwd_plan) is the launcher's: same splits and workspace size."""
    from ekdaa_cuda._device import sim_available

    if not sim_available():
        pytest.skip("needs ekdaa_cuda._sim (the launcher's plan)")
    from ekdaa_cuda import _sim

    n, f_in, f_out = shape
    tiles, splits = sr._fc_fwd_plan(dict(n=n, f_in=f_in, f_out=f_out))
    assert _sim.fc_fwd_sizes(n, f_in, f_out, 0) == (splits, tiles * splits * 1024 if splits > 1 else 0,
                                                    tiles if splits > 1 else 0)
