"""Static performance report of the CUDA kernels: no GPU needed, every time figure a PREDICTION.

    python bench/static_report.py                       # writes bench/results/static-<UTC date>.{json,md}
    python bench/static_report.py --date 2026-12-04 --out-dir bench/results

What it does, on a CPU-only machine (issue 9, point 4):

1. compiles every ``csrc/*.cu`` for one architecture (sm_90) with ``nvcc -cubin --resource-usage``
   (the build's flags: -O3 -DNDEBUG -lineinfo, C++17) and reads per kernel: registers, stack frame,
   spill stores/loads, static shared memory, barriers (from ptxas) and constant bank 0 (from
   ``cuobjdump -res-usage``);
2. finds every kernel in the cubin (nothing is hard-coded but the table ``KERNELS``, which maps a
   kernel to its role and phase and **fails loudly** on a kernel it does not know), reads its launch
   block size from the ``<<<grid, block>>>`` of the launchers in ``csrc/`` (constants resolved from
   the sources; a table entry may override it), and computes the theoretical occupancy on sm_90;
3. disassembles the cubin (``cuobjdump -sass``), finds each kernel's main loop (the innermost
   backward-branch loop holding the most FFMA) and reports its static instruction mix: FFMA share,
   integer (IMAD, IADD3, LEA, ISETP, ...), loads (LDG, LDS, LDC), branches;
4. an analytic model of one training update per preset and batch: FLOPs and bytes per op from
   ``bench/floors.py`` (the counting is not repeated here), grid sizes from the launchers, launches
   per update from the model's real op sequence (``launch_sequence``), and a predicted time per
   update on H100 SXM and H200 beside the same model's prediction for the PyTorch + cuDNN backprop
   sequence of the same network.

Every constant below carries its source or is labelled ASSUMPTION. The model is deliberately
simple; its purpose is to rank and to be re-run unchanged when the kernels change, not to replace
a measurement (``bench/run_all.sh`` on a GPU does that).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib.util
import json
import math
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(ROOT))  # ekdaa_cuda from the source tree when it is not installed

# ====================================================================== hardware constants

# sm_90 (compute capability 9.0) limits. Sources: CUDA C++ Programming Guide, "Technical
# Specifications per Compute Capability" (CC 9.0: 32 resident blocks/SM, 64 resident warps/SM =
# 2048 threads, 64K 32-bit registers/SM and per block, 255 registers/thread, 228 KB shared memory/SM,
# 227 KB max per block, 1024 threads/block); NVIDIA Hopper Tuning Guide §"Occupancy" / "Shared
# memory" (228 KB/SM, 227 KB per block, 1 KB of shared memory reserved by the system per block);
# allocation granularities as in NVIDIA's CUDA Occupancy Calculator / Nsight Compute occupancy
# section for CC ≥ 7.0: registers allocated per warp in units of 256, warps in groups of 4 (one per
# SM sub-partition), shared memory in units of 128 bytes.
SM90 = {
    "arch": "sm_90",
    "warp_size": 32,
    "max_warps_per_sm": 64,
    "max_threads_per_sm": 2048,
    "max_blocks_per_sm": 32,
    "max_threads_per_block": 1024,
    "regs_per_sm": 65536,
    "max_regs_per_block": 65536,
    "max_regs_per_thread": 255,
    "reg_alloc_unit": 256,  # registers, per warp
    "warp_alloc_granularity": 4,
    "smem_per_sm": 228 * 1024,
    "max_smem_per_block": 227 * 1024,
    "smem_alloc_unit": 128,
    "smem_reserved_per_block": 1024,
    "schedulers_per_sm": 4,
}

# The cards. Sources: NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: FP32 67 TFLOPS, 3.35 TB/s
# HBM3, 80 GB) and architecture whitepaper (132 SMs on H100 SXM5, 50 MB L2, 128 FP32 lanes/SM,
# 4 sub-partitions each issuing one warp instruction per clock); NVIDIA H200 datasheet (H200 SXM:
# FP32 67 TFLOPS, 4.8 TB/s HBM3e, 141 GB; same GH100 SM count and clocks as H100 SXM).
GPUS = {
    "H100-SXM": {"sms": 132, "fp32_tflops": 66.9, "hbm_tbs": 3.35,
                 "source": "NVIDIA H100 datasheet + Hopper whitepaper"},
    "H200": {"sms": 132, "fp32_tflops": 66.9, "hbm_tbs": 4.8, "source": "NVIDIA H200 datasheet"},
}

# Model constants: ASSUMPTIONS unless a source is given. Change them here; the report prints them.
MODEL = {
    # fraction of the HBM peak a streaming kernel reaches (ASSUMPTION; copy kernels on H100 typically
    # reach 80-90% of the datasheet figure; bench/floors.py --measure-peaks measures it on a card)
    "hbm_efficiency": 0.85,
    # fraction of cycles a scheduler issues in a kernel's main loop once enough warps hide latency
    # (ASSUMPTION: dependent-latency and load stalls; no measured number for these kernels yet)
    "issue_efficiency": 0.7,
    # occupancy (active warps / 64) at and above which latency is taken as hidden (ASSUMPTION:
    # 8 warps per scheduler)
    "occupancy_saturation": 0.5,
    # device time of the smallest kernel, launch to completion, back to back on one stream
    # (ASSUMPTION, order of the 2-4 µs commonly measured for an empty kernel)
    "min_kernel_us": 2.5,
    # gap between kernels replayed from a CUDA graph (ASSUMPTION; floors.py measures graph_kernel_us)
    "graph_gap_us": 1.0,
    # host time per launch from Python (ASSUMPTION): ekdaa_cuda ops (argument validation in Python +
    # pybind11 + launch) and CuPy elementwise/reduction ops; PyTorch eager dispatch per op
    "host_us_ekdaa_op": 12.0,
    "host_us_cupy_op": 12.0,
    "host_us_torch_op": 8.0,
    # a blocking device synchronisation round trip per update (ASSUMPTION)
    "sync_us": 15.0,
    # cuDNN/cuBLAS FP32 (TF32 off) efficiency in a full wave of 128x128 tiles (ASSUMPTION: SIMT FP32
    # implicit GEMM / SGEMM reach 50-70% of the FP32 peak on large problems; 0.6 taken). The library
    # is modelled as picking, per op, the best of these CTA tiles (M x N outputs: relative efficiency,
    # ASSUMPTION: smaller tiles reuse less) with split-K over chunks of >= cudnn_min_k (ASSUMPTION),
    # one CTA per SM (ASSUMPTION): the 'tiles per SM' wave quantisation of small problems.
    "cudnn_efficiency": 0.6,
    "cudnn_tiles": ((128, 128, 1.0), (128, 64, 0.9), (64, 64, 0.75), (64, 32, 0.6), (32, 32, 0.45)),
    "cudnn_min_k": 256,
    "cudnn_ctas_per_sm": 1,
}

# ====================================================================== kernel table

# Every kernel found in the cubins must be listed here (base name, or base name + template
# arguments as c++filt prints them). "role": what it computes; "phase": where it runs in one
# update; "ffma_target": issue 9's target (FFMA >= 50% of the main loop) applies; "block": the
# threads per block when the launcher cannot be parsed (else None); "ops": the bench/floors.py ops
# it executes (used by the model). Adding a kernel to csrc/ without adding it here is an error.
KERNELS = {
    "conv_block_fwd_igemm_kernel": dict(role="conv forward as implicit GEMM (+bias, φ, dropout, pool, argmax)",
                                        phase="forward", ffma_target=True, block=256),
    "conv_error_proj_igemm_kernel": dict(role="transposed conv as implicit GEMM + unpool + error epilogue",
                                         phase="error", ffma_target=True, block=256),
    "conv_block_fwd_kernel": dict(role="conv forward v1 (benchmark-only, one thread per output)",
                                  phase="forward (v1)", ffma_target=True),
    "conv_error_proj_kernel": dict(role="unpool_error; transposed conv v1 (benchmark-only, one thread per output)",
                                   phase="error", ffma_target=True),
    "conv_filter_update_gemm_kernel": dict(role="filter update pass 1: split-K implicit GEMM partials of ΔW|Δb",
                                           phase="update", ffma_target=True),
    "conv_filter_update_pooled_kernel": dict(role="filter update v3 pass 1: argmax-sparse split-K partials "
                                                  "of ΔW|Δb (pooled layers)", phase="update", ffma_target=True),
    "conv_filter_update_reduce_kernel": dict(role="filter update pass 2: fixed-order sum of the partials, ΔW, Δb, ΔE",
                                             phase="update", ffma_target=False),
    "conv_filter_update_kernel": dict(role="filter update v1 (benchmark-only, one block per output)",
                                      phase="update (v1)", ffma_target=True),
    "conv_proj_kernel": dict(role="transposed conv alone (release normalisation path)", phase="error",
                             ffma_target=False),
    "unpool_bilinear_proj_kernel": dict(role="bilinear unpool (release path)", phase="error", ffma_target=False),
    "fc_fwd_splitk_kernel": dict(role="FC forward v2: split-K GEMM (+bias, φ, dropout), last block per tile sums",
                                 phase="forward", ffma_target=True),
    "fc_fwd_kernel": dict(role="FC forward v1 (benchmark-only, 16 x 16 tiles)", phase="forward (v1)",
                          ffma_target=False),
    "fc_proj_kernel<false>": dict(role="FC error projection d = e·Eᵀ", phase="error", ffma_target=False),
    "fc_proj_kernel<true>": dict(role="FC error projection + epilogue (fused)", phase="error", ffma_target=False),
    "error_epilogue_kernel": dict(role="error epilogue on a d in memory", phase="error", ffma_target=False),
    "fc_update_kernel": dict(role="FC update ΔW, ΔE", phase="update", ffma_target=False),
    "fc_bias_update_kernel": dict(role="FC bias update Δb", phase="update", ffma_target=False),
    "softmax_error_kernel": dict(role="softmax + output error e_y", phase="error", ffma_target=False),
    "fc_softmax_error_kernel": dict(role="output layer: FC + softmax + e_y + Σ loss, correct", phase="forward",
                                    ffma_target=False),
    "fc_update_proj_kernel": dict(role="FC update ΔW, ΔE, Δb + error projection (fused)", phase="update",
                                  ffma_target=False),
    "optim_update_kernel": dict(role="multi-tensor optimizer step", phase="optimizer", ffma_target=False),
    "optim_sq_norm_kernel": dict(role="multi-tensor squared norms (rho > 0)", phase="optimizer",
                                 ffma_target=False),
}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _gemm_blocks(rows: int, cols: int, tile: int = 16) -> int:
    return _ceil(rows, tile) * _ceil(cols, tile)


def _fwu_plan(s: dict) -> tuple[int, int, int]:
    """(block tiles, splits, columns) of the v2 filter update for a floors shape: plan_filter_update
    in csrc/conv.cu (64 x 64 tiles, 16 positions a step, ~264 blocks); with s["pooled"], v3's
    plan_filter_update_pooled (64 x 128 tiles over the N·(H/2)·(W/2) pooled cells)."""
    bm, bn = 64, 128 if s.get("pooled") else 64
    bk, target = 16, 264
    cols = s["c_in"] * s["k"] ** 2 + int(bool(s.get("bias", False)))
    tiles = max(1, _ceil(s["c_out"], bm) * _ceil(cols, bn))
    positions = s["n"] * (s["h"] // 2) * (s["w"] // 2) if s.get("pooled") else s["n"] * s["h"] * s["w"]
    chunks = max(1, _ceil(positions, bk))
    want = min(_ceil(target, tiles), chunks, 65535)
    per_split = _ceil(chunks, want)
    return tiles, _ceil(chunks, per_split), cols


def _fc_fwd_plan(s: dict) -> tuple[int, int]:
    """(32 x 32 output tiles, K splits) of fc_fwd v2 for a floors shape: plan_fc_fwd in csrc/fc.cu
    (~264 blocks, at least 4 steps of 32 a split, at most 64 splits)."""
    tiles = _ceil(s["n"], 32) * _ceil(s["f_out"], 32)
    steps = _ceil(s["f_in"], 32)
    return tiles, max(1, min(_ceil(264, max(tiles, 1)), steps // 4, 64))


# The implicit-GEMM tiles (BM, BN, KS depth groups) of conv_block_fwd / conv_error_proj v2 (kIgemmTiles,
# igemm_tile_for in csrc/conv.cu): the first tile giving >= 264 blocks, else the one giving the most,
# among tiles no wider than the columns (rows) rounded up to 32.
IGEMM_TILES = ((128, 64, 1), (64, 128, 1), (64, 64, 1), (64, 32, 2), (32, 64, 2), (32, 32, 4))


def igemm_tile(rows: int, cols: int) -> tuple[int, int, int]:
    """(BM, BN, KS) that the v2 conv launchers pick for a GEMM of rows x cols."""
    best, best_blocks = IGEMM_TILES[0], 0
    for bm, bn, ks in IGEMM_TILES:
        if bn > _ceil(cols, 32) * 32 or bm > _ceil(rows, 32) * 32:
            continue
        blocks = _ceil(rows, bm) * _ceil(cols, bn)
        if blocks >= 264:
            return bm, bn, ks
        if blocks > best_blocks:
            best, best_blocks = (bm, bn, ks), blocks
    return best


def _igemm(kernel: str, rows: int, cols: int) -> tuple[str, int]:
    bm, bn, ks = igemm_tile(rows, cols)
    return f"{kernel}<{bm}, {bn}, {ks}>", _ceil(rows, bm) * _ceil(cols, bn)


# How each bench/floors.py op of the EKDAA update runs today: [(kernel, blocks(shape) -> int)] in
# launch order, from the launchers (csrc/conv.cu, csrc/fc.cu, csrc/optim.cu) and the backend's op
# sequence (ekdaa_cuda/backend_cuda.py). ``group`` is one op's row, or the rows one launch serves
# (ekdaa_launches merges them): the output layer's fc_fwd + softmax_error; an FC layer's fc_update
# + the error projection to the layer below (+ unpool_error, on the v1 conv_error_proj_kernel, when
# the conv below pools).
def _op_kernels(group: list[dict], block_size) -> list[tuple[str, int]]:
    ops = {r["op"]: r["shape"] for r in group}
    if "softmax_error" in ops:
        return [("fc_softmax_error_kernel", _ceil(ops["softmax_error"]["n"], 16))]  # kSoftmaxRows rows a block
    if "fc_update" in ops:
        u = ops["fc_update"]
        blocks = _gemm_blocks(u["f_out"], u["f_in"]) + (_ceil(u["f_out"], 256) if u.get("bias") else 0)
        parts = [("fc_update_proj_kernel", blocks)]
        for op in ("fc_error_proj", "fc_error_proj_to_map"):
            if op in ops:
                s = ops[op]
                parts[0] = ("fc_update_proj_kernel", blocks + _gemm_blocks(s["n"], u["f_in"]))
                if op == "fc_error_proj_to_map" and s["pooled"]:
                    cells = s["n"] * s["c"] * _ceil(s["hh"], 2) * _ceil(s["wh"], 2)
                    parts.append(("conv_error_proj_kernel", _ceil(cells, block_size("conv_error_proj_kernel"))))
        return parts
    (op, s), = ops.items()
    if op == "conv_block_fwd":  # rows: positions, pooled as 4 per 2x2 cell of a ceil(H/2) x ceil(W/2) grid
        rows = s["n"] * (4 * _ceil(s["h"], 2) * _ceil(s["w"], 2) if s["pool"] else s["h"] * s["w"])
        return [_igemm("conv_block_fwd_igemm_kernel", rows, s["c_out"])]
    if op == "conv_error_proj":  # rows: cells of h's ceil(Hh/2) x ceil(Wh/2) grid (pooled) or positions
        rows = s["n"] * (_ceil(s["hh"], 2) * _ceil(s["wh"], 2) if s["pooled"] else s["hh"] * s["wh"])
        return [_igemm("conv_error_proj_igemm_kernel", rows, s["c_in"])]
    if op == "conv_filter_update":
        tiles, splits, cols = _fwu_plan(s)
        first = "conv_filter_update_pooled_kernel" if s.get("pooled") else "conv_filter_update_gemm_kernel"
        return [(first, tiles * splits),
                ("conv_filter_update_reduce_kernel", _ceil(s["c_out"] * cols, 256))]
    if op == "fc_fwd":
        tiles, splits = _fc_fwd_plan(s)
        return [("fc_fwd_splitk_kernel", tiles * splits)]
    if op == "optimizer":
        chunk = 8192  # kOptimChunk, csrc/optim.h: one block per chunk of 8192 elements (a lower bound)
        return [("optim_update_kernel", _ceil(s["numel"], chunk))]
    raise KeyError(f"static_report: no kernel mapping for floors op {op!r}; add it to _op_kernels()")


# ====================================================================== tools and compilation


def find_tool(name: str) -> str | None:
    """A CUDA binary utility: on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin, or from the PyPI
    packages nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm (nvidia/cu*/bin)."""
    found = shutil.which(name)
    if found:
        return found
    for base in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base and (Path(base) / "bin" / name).exists():
            return str(Path(base) / "bin" / name)
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            for cand in sorted(Path(loc).glob(f"cu*/bin/{name}")):
                return str(cand)
    return None


def compile_cu(source: Path, out_dir: Path, arch: str = "sm_90", nvcc: str | None = None) -> tuple[Path, str]:
    """nvcc -cubin --resource-usage for one architecture; returns (cubin, ptxas report)."""
    nvcc = nvcc or find_tool("nvcc")
    if nvcc is None:
        raise FileNotFoundError("static_report: nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    cubin = out_dir / (source.stem + f".{arch}.cubin")
    cmd = [nvcc, "-std=c++17", "-O3", "-DNDEBUG", "-lineinfo", f"-arch={arch}", "-cubin", "--resource-usage",
           f"-I{source.parent}", "-o", str(cubin), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"static_report: {' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return cubin, proc.stdout + proc.stderr


# ====================================================================== parsing

_RU_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_RU_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RU_USED = re.compile(r"Used (\d+) registers")
_RU_FIELD = re.compile(r"(\d+) bytes (smem|cmem\[\d+\]|lmem)|used (\d+) barriers")


def parse_resource_usage(text: str) -> dict:
    """ptxas' --resource-usage report -> {mangled name: {arch, registers, stack, spill_stores,
    spill_loads, smem, barriers, cmem (when printed)}}."""
    out, cur = {}, None
    for line in text.splitlines():
        m = _RU_ENTRY.search(line)
        if m:
            cur = out.setdefault(m.group(1), {"arch": m.group(2), "registers": None, "stack": 0, "spill_stores": 0,
                                              "spill_loads": 0, "smem": 0, "barriers": 0, "cmem": {}})
            continue
        if cur is None:
            continue
        m = _RU_PROPS.search(line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(g) for g in m.groups())
            continue
        m = _RU_USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            for f in _RU_FIELD.finditer(line):
                if f.group(3) is not None:
                    cur["barriers"] = int(f.group(3))
                elif f.group(2) == "smem":
                    cur["smem"] = int(f.group(1))
                elif f.group(2).startswith("cmem"):
                    cur["cmem"][f.group(2)] = int(f.group(1))
    return out


_RES_FUNC = re.compile(r"^\s*Function (\S+?):?\s*$")
_RES_KV = re.compile(r"([A-Z]+(?:\[\d+\])?):(\d+)")


def parse_cuobjdump_resources(text: str) -> dict:
    """``cuobjdump -res-usage`` -> {mangled name: {"REG": .., "SHARED": .., "CONSTANT[0]": .., ...}}."""
    out, cur = {}, None
    for line in text.splitlines():
        m = _RES_FUNC.match(line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        if cur is not None and ":" in line:
            for k, v in _RES_KV.findall(line):
                cur[k] = int(v)
    return out


def _demangle_fallback(mangled: str) -> str:
    """Last identifier of an Itanium nested name with simple template arguments (bool / int):
    enough when c++filt is missing. ``_ZN5ekdaa...14fc_proj_kernelILb1EEEv...`` -> fc_proj_kernel<true>."""
    if not mangled.startswith("_Z"):
        return mangled
    s, i, last = mangled, 2, mangled
    nested = s[i] == "N"
    i += 1 if nested else 0
    while i < len(s) and s[i].isdigit():
        j = i
        while s[j].isdigit():
            j += 1
        n = int(s[i:j])
        last, i = s[j:j + n], j + n
        if i < len(s) and s[i] == "I":  # template arguments: L<type><value>E ...
            args, i = [], i + 1
            while i < len(s) and s[i] == "L":
                k = s.index("E", i)
                typ, val = s[i + 1], s[i + 2:k]
                args.append(("true" if val == "1" else "false") if typ == "b" else val.replace("n", "-"))
                i = k + 1
            last += "<" + ", ".join(args) + ">"
            i += 1  # the closing E of the argument list
        if not nested:
            break
    return last


def short_name(mangled: str, demangled: str | None = None) -> str:
    """``void ekdaa::(anonymous namespace)::fc_proj_kernel<true>(const float*, ...)`` -> ``fc_proj_kernel<true>``."""
    if not demangled or demangled == mangled:
        return _demangle_fallback(mangled)
    text = demangled.replace("(anonymous namespace)::", "")
    depth, cut = 0, len(text)
    for i, ch in enumerate(text):  # the parameter list: the first '(' outside template brackets
        depth += (ch == "<") - (ch == ">")
        if ch == "(" and depth == 0:
            cut = i
            break
    head, depth, start = text[:cut], 0, 0
    for i, ch in enumerate(head):  # after the last '::' or ' ' outside template brackets
        depth += (ch == "<") - (ch == ">")
        if depth == 0 and ch in ": ":
            start = i + 1
    return head[start:].strip()


def demangle(names: list[str]) -> dict:
    """{mangled: short name}, through c++filt when present."""
    tool = shutil.which("c++filt")
    full = {}
    if tool and names:
        proc = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
        if proc.returncode == 0:
            full = dict(zip(names, proc.stdout.splitlines()))
    return {m: short_name(m, full.get(m)) for m in names}


@dataclass
class Instr:
    addr: int
    opcode: str  # full mnemonic with modifiers, e.g. IMAD.WIDE.U32
    pred: str = ""
    target: int | None = None  # branch target address

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]


_SASS_FUNC = re.compile(r"^\s*Function\s*:\s*(\S+)")
_SASS_LINE = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_BRANCH_TARGET = re.compile(r"(?:0x|`\(\.L_x_)([0-9a-fA-F]+)")


def parse_sass(text: str) -> dict:
    """``cuobjdump -sass`` text -> {mangled function name: [Instr, ...]} in address order."""
    out, cur = {}, None
    for line in text.splitlines():
        m = _SASS_FUNC.match(line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        if cur is None:
            continue
        m = _SASS_LINE.match(line)
        if not m:
            continue
        addr, pred, opcode, operands = int(m.group(1), 16), (m.group(2) or "").strip(), m.group(3), m.group(4)
        target = None
        if opcode.split(".")[0] in ("BRA", "BRX", "JMP", "CALL", "BSSY", "BREAK", "SSY", "PBK"):
            t = re.search(r"0x([0-9a-fA-F]+)", operands)
            target = int(t.group(1), 16) if t else None
        cur.append(Instr(addr, opcode, pred, target))
    return out


# Instruction classes of the mix (SASS mnemonics, Hopper). Anything else counts as "other".
CLASSES = {
    "ffma": {"FFMA"},
    "mma": {"HMMA", "HGMMA", "IMMA", "DMMA", "BMMA"},  # tensor cores: not in the FP32 SIMT rate model
    "fp32_other": {"FADD", "FMUL", "FMNMX", "FSETP", "FSEL", "FCHK", "MUFU", "FSWZADD", "FRND", "F2F", "FMNMX3"},
    "int": {"IMAD", "IADD3", "IADD", "LEA", "LEA.HI", "ISETP", "SHF", "SHL", "SHR", "LOP3", "LOP", "IABS", "IMNMX",
            "IMUL", "SEL", "I2F", "F2I", "I2FP", "F2IP", "PRMT", "FLO", "POPC", "BMSK", "VIADD", "VIMNMX", "IDP",
            "UIADD3", "UIMAD", "ULEA", "USHF", "ULOP3", "UISETP", "USEL", "UMOV", "UPRMT", "UFLO", "UPOPC",
            "VIADDMNMX", "IADD32I", "IMAD32I", "ISCADD", "HFMA2"},
    "load_global": {"LDG", "LD", "LDGSTS", "LDGDEPBAR"},
    "load_shared": {"LDS", "LDSM"},
    "load_const": {"LDC", "ULDC"},
    "store": {"STG", "STS", "ST", "STL", "RED", "ATOM", "ATOMS", "ATOMG"},
    "local": {"LDL", "STL"},
    "branch": {"BRA", "BRX", "JMP", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "BREAK", "WARPSYNC", "BAR", "DEPBAR",
               "YIELD"},
    "move": {"MOV", "MOV32I", "S2R", "S2UR", "CS2R", "R2UR", "SHFL", "PLOP3", "P2R", "R2P", "VOTE", "VOTEU",
             "UP2UR", "UR2P"},
}


def classify(opcode: str) -> str:
    base = opcode.split(".")[0]
    for name, members in CLASSES.items():
        if base in members:
            return name
    return "other"


def find_loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """Loop ranges (target, branch address) of every backward branch, sorted."""
    loops = []
    for ins in instrs:
        # target == addr is the idle `BRA .` after EXIT that ends every function, not a loop
        if ins.base in ("BRA", "JMP") and ins.target is not None and ins.target < ins.addr:
            loops.append((ins.target, ins.addr))
    return sorted(set(loops))


def main_loop(instrs: list[Instr]) -> tuple[int, int] | None:
    """The hot loop: among the innermost loops (containing no other loop), the one with the most
    FFMA; among those, the highest FFMA share (a kernel with several code paths, e.g. pooled and
    unpooled, has one such loop per path: ``hot_loops`` lists them all); loops without FFMA: the
    larger body (an unrolled main loop rather than its remainder). None when there is no loop."""
    ranked = hot_loops(instrs)
    return ranked[0] if ranked else None


def hot_loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """Innermost loops in ``main_loop``'s order of preference."""
    loops = find_loops(instrs)
    inner = [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)]

    def key(lp):
        body = [i for i in instrs if lp[0] <= i.addr <= lp[1] and i.base != "NOP"]
        ffma = sum(i.base == "FFMA" for i in body)
        return (-ffma, -ffma / len(body), -len(body), lp[0])

    return sorted(inner, key=key)


def instruction_mix(instrs: list[Instr], span: tuple[int, int] | None = None) -> dict:
    """Static counts per class over ``span`` (inclusive addresses; the whole function when None),
    NOPs excluded, with the FFMA share and instructions per FFMA."""
    body = [i for i in instrs if (span is None or span[0] <= i.addr <= span[1]) and i.base != "NOP"]
    counts = {name: 0 for name in (*CLASSES, "other")}
    for i in body:
        counts[classify(i.opcode)] += 1
    total = len(body)
    ffma = counts["ffma"]
    calls = sum(i.base == "CALL" for i in body)
    no_call = None
    if calls and span is not None:
        kept = [i for blk in basic_blocks(instrs, span) if not any(j.base == "CALL" for j in blk) for i in blk
                if i.base != "NOP"]
        f = sum(i.base == "FFMA" for i in kept)
        no_call = {"instructions": len(kept), "ffma_share": f / len(kept) if kept else 0.0,
                   "instructions_per_ffma": len(kept) / f if f else None}
    return {"instructions": total, "counts": counts, "calls": calls, "without_call_blocks": no_call,
            "ffma_share": ffma / total if total else 0.0,
            "instructions_per_ffma": total / ffma if ffma else None,
            "opcodes": _top_opcodes(body)}


def basic_blocks(instrs: list[Instr], span: tuple[int, int]) -> list[list[Instr]]:
    """Basic blocks of the instructions in ``span``: a block starts at the span's start, at a branch
    target and after a branch or EXIT (a CALL returns, so it does not end a block)."""
    body = [i for i in instrs if span[0] <= i.addr <= span[1]]
    leaders = {span[0]} | {i.target for i in instrs if i.target is not None and i.base in ("BRA", "JMP")}
    blocks: list[list[Instr]] = []
    for k, ins in enumerate(body):
        if not blocks or ins.addr in leaders or body[k - 1].base in ("BRA", "JMP", "BRX", "EXIT", "RET"):
            blocks.append([])
        blocks[-1].append(ins)
    return blocks


def _top_opcodes(body: list[Instr], n: int = 8) -> dict:
    tally: dict[str, int] = {}
    for i in body:
        tally[i.opcode] = tally.get(i.opcode, 0) + 1
    return dict(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


# ====================================================================== launch block sizes

_CONST = re.compile(r"constexpr\s+(?:int|int64_t|unsigned|unsigned int|uint32_t|size_t|long)\s+(\w+)\s*=\s*([^;]+);")
_LAUNCH = re.compile(r"(\w+)\s*(<[^<>;]*>)?\s*<<<(.*?)>>>", re.S)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Div: operator.floordiv, ast.LShift: operator.lshift, ast.RShift: operator.rshift}


def _eval_int(expr: str, consts: dict) -> int:
    """An integer constant expression of the sources (literals, known constexprs, + - * / << >>,
    dim3(a, b, c) as a*b*c). Raises ValueError on anything else."""
    expr = expr.strip()
    m = re.fullmatch(r"dim3\s*\((.*)\)", expr, re.S)
    if m:
        return math.prod(_eval_int(p, consts) for p in _split_args(m.group(1)))
    expr = re.sub(r"(\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b", r"\1", expr)
    expr = re.sub(r"static_cast<[^>]*>", "", expr)

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in consts:
            return consts[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"cannot evaluate {expr!r} statically")

    return ev(ast.parse(expr.replace("::", "_"), mode="eval"))


def _split_args(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def launch_block_sizes(src_dir: Path) -> dict:
    """{kernel base name (+ '<targs>' when the launch names them): threads per block} from every
    ``kernel<<<grid, block, ...>>>`` in ``src_dir``; a value is None when the block expression is not
    a compile-time constant. constexprs of all sources are visible (one namespace here)."""
    texts = {p: p.read_text() for p in sorted(src_dir.glob("*")) if p.suffix in (".cu", ".cuh", ".h")}
    consts: dict = {}
    for _ in range(3):  # constants defined from constants
        for text in texts.values():
            for name, value in _CONST.findall(text):
                try:
                    consts[name] = _eval_int(value, consts)
                except (ValueError, SyntaxError, ZeroDivisionError):
                    pass
    out: dict = {}
    for text in texts.values():
        text = re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", text), flags=re.S)  # comments out
        for m in _LAUNCH.finditer(text):
            name, targs, cfg = m.group(1), (m.group(2) or "").replace(" ", ""), _split_args(m.group(3))
            try:
                threads = _eval_int(cfg[1], consts) if len(cfg) >= 2 else None
            except (ValueError, SyntaxError):
                threads = None
            key = name + targs
            if out.get(key) not in (None, threads):
                raise ValueError(f"static_report: {key} is launched with two block sizes ({out[key]}, {threads})")
            out[key] = threads
    return out


# ====================================================================== occupancy


def occupancy(registers: int, threads: int, smem_static: int, smem_dynamic: int = 0, arch: dict = SM90) -> dict:
    """Theoretical occupancy of one kernel on one SM (the CUDA Occupancy Calculator's rules):
    blocks/SM = min(by warps, by registers, by shared memory, the block cap)."""
    if threads < 1 or threads > arch["max_threads_per_block"]:
        raise ValueError(f"threads per block must be in [1, {arch['max_threads_per_block']}], got {threads}")
    warps = _ceil(threads, arch["warp_size"])
    by_warps = arch["max_warps_per_sm"] // warps
    if registers > 0:
        regs_per_warp = _ceil(registers * arch["warp_size"], arch["reg_alloc_unit"]) * arch["reg_alloc_unit"]
        if regs_per_warp * warps > arch["max_regs_per_block"]:
            by_regs = 0
        else:
            warps_by_regs = arch["regs_per_sm"] // regs_per_warp
            warps_by_regs -= warps_by_regs % arch["warp_alloc_granularity"]
            by_regs = warps_by_regs // warps
    else:
        by_regs = arch["max_blocks_per_sm"]
    smem = smem_static + smem_dynamic
    if smem > arch["max_smem_per_block"]:
        by_smem = 0
    else:
        per_block = _ceil(smem + arch["smem_reserved_per_block"], arch["smem_alloc_unit"]) * arch["smem_alloc_unit"]
        by_smem = arch["smem_per_sm"] // per_block
    limits = {"warps": by_warps, "registers": by_regs, "shared_memory": by_smem, "blocks": arch["max_blocks_per_sm"]}
    blocks = min(limits.values())
    limiter = min(limits, key=lambda k: (limits[k], k != "warps"))
    active = blocks * warps
    return {"threads_per_block": threads, "warps_per_block": warps, "blocks_per_sm": blocks, "active_warps": active,
            "occupancy": active / arch["max_warps_per_sm"], "limited_by": limiter, "limits": limits}


# ====================================================================== per-kernel analysis


def lookup_kernel(name: str) -> dict:
    """The KERNELS entry of a (short) kernel name; exact name first, then the base name."""
    if name in KERNELS:
        return KERNELS[name]
    base = name.split("<")[0]
    if base in KERNELS:
        return KERNELS[base]
    raise KeyError(f"static_report: kernel {name!r} found in the cubin is not in KERNELS (bench/static_report.py); "
                   "add its role, phase and ffma_target there")


def analyse_kernels(src_dir: Path, work: Path, arch: str = "sm_90") -> dict:
    """Compile, parse and analyse every kernel of ``src_dir/*.cu``: {short name: record}."""
    cuobjdump = find_tool("cuobjdump")
    if cuobjdump is None:
        raise FileNotFoundError("static_report: cuobjdump not found; `pip install nvidia-cuda-cuobjdump` "
                                "(NVIDIA's CUDA binary utilities on PyPI) or put CUDA's bin on PATH")
    blocks = launch_block_sizes(src_dir)
    kernels: dict = {}
    for cu in sorted(src_dir.glob("*.cu")):
        cubin, ptxas = compile_cu(cu, work, arch)
        usage = parse_resource_usage(ptxas)
        res = parse_cuobjdump_resources(_run([cuobjdump, "-res-usage", str(cubin)]))
        sass = parse_sass(_run([cuobjdump, "-sass", str(cubin)]))
        names = demangle(sorted(set(usage) | set(sass)))
        for mangled, short in names.items():
            if mangled not in usage:
                continue  # a device function, not an entry point
            info = lookup_kernel(short)
            u = usage[mangled]
            threads = info.get("block") or blocks.get(short) or blocks.get(short.split("<")[0])
            if threads is None:
                raise KeyError(f"static_report: no launch of {short} with a constant block size in {src_dir}; "
                               "set 'block' in its KERNELS entry")
            instrs = sass.get(mangled, [])
            loops = hot_loops(instrs)
            loop = loops[0] if loops else None
            mix = instruction_mix(instrs, loop) if loop else None
            top = [lp for lp in loops if loop and _ffma(instrs, lp) == _ffma(instrs, loop)]
            kernels[short] = {
                "file": cu.name, "mangled": mangled, "role": info["role"], "phase": info["phase"],
                "ffma_target": info["ffma_target"], "registers": u["registers"], "stack_bytes": u["stack"],
                "spill_store_bytes": u["spill_stores"], "spill_load_bytes": u["spill_loads"],
                "smem_static_bytes": u["smem"], "barriers": u["barriers"],
                "cmem0_bytes": res.get(mangled, {}).get("CONSTANT[0]", u["cmem"].get("cmem[0]")),
                "local_bytes": res.get(mangled, {}).get("LOCAL"),
                "occupancy": occupancy(u["registers"], threads, u["smem"]),
                "sass_instructions": len(instrs),
                "main_loop": None if loop is None else {"start": hex(loop[0]), "end": hex(loop[1]), **mix},
                # every innermost loop with as many FFMA as the main loop (one per code path)
                "same_ffma_loops": [{"start": hex(a), "end": hex(b),
                                     "ffma_share": instruction_mix(instrs, (a, b))["ffma_share"]} for a, b in top],
                "whole_function_mix": instruction_mix(instrs),
            }
    return kernels


def _ffma(instrs: list[Instr], span: tuple[int, int]) -> int:
    return sum(i.base == "FFMA" for i in instrs if span[0] <= i.addr <= span[1])


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"static_report: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


# ====================================================================== launches per update


# Launches of one backend call on the CUDA backend (ekdaa_cuda/backend_cuda.py as of this report):
# ekdaa_cuda kernels exactly (one per launcher call, see csrc/); CuPy expressions counted as one
# launch per elementwise/reduction/indexing/copy expression. Keys are backend method names; a value
# is (ekdaa kernels, CuPy ops) or a function of the call's arguments returning that pair.
# launch_sequence records the NumPy backend, which has no fused FC update + projection: there an
# FC layer's ``weight_update`` stands for the CUDA backend's fc_update_proj launch, and the
# ``fc_project`` / epilogue that follow it are inside that launch (docs/kernels.md "The host path").
def _all_finite_launches(arrays) -> tuple[int, int]:
    n = len(list(arrays))
    return (0, 2 * n + 2 if n else 0)  # isfinite + all() per array; stack + all() over the flags


BACKEND_LAUNCHES = {
    "conv_fwd": (1, 0),
    "fc_fwd": (1, 0),
    "output_fwd": (1, 0),  # fc_softmax_error: FC, softmax, e_y, Σ loss and correct count in one launch
    "output_error": (0, 0),  # e_y comes from output_fwd's launch
    "conv_backproject": (1, 0),  # argmax unpool mode (the default)
    "conv_project": (1, 0),
    "fc_project": None,  # inside the FC layer's fc_update_proj launch: below
    "unpool_epilogue": None,  # unpool_error; error_epilogue without pool unless fused: below
    "epilogue": None,
    "weight_update": None,  # by block kind: below
    "all_finite": _all_finite_launches,  # the training loop does not call it per step any more
    "batch_stats": (0, 2),  # copies of the output launch's two sums
    "optimizer.step": None,  # 1, + 1 when rho > 0
}
STAGING_COPIES = 2  # StepPlan.run copies the batch (x, labels) into the recorded input buffers


def launch_sequence(preset: str, rule: str = "ekdaa", batch: int = 2) -> dict:
    """Run one real training step of ``preset`` on the NumPy backend with every backend call
    recorded (the training loop's call: ``step_arrays(..., check_finite=False)``), and count the
    launches the CUDA backend's replayed step makes for that call sequence."""
    import numpy as np

    from ekdaa_cuda.model import build_model

    model = build_model(preset, rule=rule, backend="numpy", seed=0)
    be = model.backend
    calls: list[tuple[str, tuple]] = []
    depth = [0]  # a backend method calling another (e.g. conv_backproject -> epilogue) is one op

    def wrap(obj, name, label=None):
        fn = getattr(obj, name)

        def recorded(*args, **kwargs):
            if depth[0] == 0:
                calls.append((label or name, args))
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(obj, name, recorded)

    for name in BACKEND_LAUNCHES:
        if name != "optimizer.step" and hasattr(be, name):
            wrap(be, name)
    wrap(model.optimizer, "step", "optimizer.step")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    labels = rng.integers(0, model.blocks[-1].size, batch)
    model.step_arrays(be.input(x), be.labels(labels), check_finite=False)
    ekdaa, cupy = 0, STAGING_COPIES
    per_call: dict[str, int] = {"staging": STAGING_COPIES}
    fused = False  # the previous call was an FC fc_project, fused into the update launch
    for name, args in calls:
        spec = BACKEND_LAUNCHES[name]
        if name == "weight_update":
            block = args[2]
            k, c = (2, 0) if block.kind == "conv" else (1, 0)  # conv: GEMM + reduce; FC: fc_update_proj (+Δb)
        elif name == "fc_project":
            k, c = 0, 0
        elif name in ("unpool_epilogue", "epilogue"):
            block = args[2]
            pooled = name == "unpool_epilogue" and block.pool
            k, c = (1 if pooled or not fused else 0), 0  # unpool_error; an FC-projected epilogue is fused
        elif name == "optimizer.step":
            k, c = 1 + int(model.opts["rho"] > 0), 0
        elif callable(spec):
            k, c = spec(*args)
        else:
            k, c = spec
        fused = name == "fc_project"
        ekdaa, cupy = ekdaa + k, cupy + c
        per_call[name] = per_call.get(name, 0) + k + c
    syncs = sum(name == "all_finite" for name, _ in calls)
    return {"preset": preset, "rule": rule, "ekdaa_kernel_launches": ekdaa, "cupy_launches": cupy,
            "total_launches": ekdaa + cupy, "per_backend_call": per_call, "host_syncs": syncs,
            "method": "one step on the NumPy backend with its backend calls recorded, mapped to the CUDA "
                      "backend's launches by BACKEND_LAUNCHES (bench/static_report.py)",
            "sim_launch_count": sim_launch_count(preset, rule),
            "sim_launch_count_note": "kernel launches of one replayed training step (SGD) on the CPU simulator "
                                     "(_sim.launch_count(), as tests/gpu/test_launch_count.py); null = ekdaa_cuda._sim "
                                     "not built here"}


def sim_launch_count(preset: str, rule: str = "ekdaa") -> int | None:
    """Kernel launches of the third (replayed) training step of ``preset`` on the CPU simulator, at
    small widths (the count does not depend on them); None without ekdaa_cuda._sim."""
    import numpy as np

    from ekdaa_cuda._device import device_status, get_device
    from ekdaa_cuda.model import build_model

    if not device_status("cuda-sim").startswith("ok:"):
        return None
    model = build_model(preset, rule=rule, backend="cuda-sim", seed=0,
                        widths=[4] * sum(1 for b in build_model(preset, backend="numpy").blocks[:-1]))
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (3, *model.input_shape)).astype(np.float32)
    labels = rng.integers(0, model.blocks[-1].size, 3)
    sim = get_device("cuda-sim").ext
    for _ in range(2):  # eager, then recorded
        model.step(x, labels)
    sim.reset_launch_count()
    model.step(x, labels)
    return int(sim.launch_count())


# ====================================================================== the analytic model


@dataclass
class Launch:
    name: str
    phase: str
    flops: int
    nbytes: int
    blocks: int = 0
    kernel: dict | None = None
    notes: list = field(default_factory=list)


def kernel_time_us(launch: Launch, gpu: dict, model: dict = MODEL) -> dict:
    """Device time of one launch: max(compute, memory, the minimum kernel time).

    compute = FLOPs / (peak FP32 × FFMA share of the main loop (its path without CALL blocks when it
    has some) × issue efficiency × latency hiding × SM use). On Hopper an SM sub-partition issues
    one warp instruction per clock and owns 32 FP32 lanes, so a loop issuing at full rate runs FFMA
    at the peak times its FFMA share.
    Latency hiding = min(1, achieved occupancy / saturation); SM use = the fraction of block slots
    busy over the waves (grid quantisation, 'tiles per SM')."""
    k = launch.kernel or {}
    t_mem = launch.nbytes / (gpu["hbm_tbs"] * 1e12 * model["hbm_efficiency"]) * 1e6
    t_flop, detail = 0.0, {}
    if launch.flops:
        loop = k.get("main_loop")
        if loop and not loop.get("ffma_share") and loop.get("counts", {}).get("mma"):
            raise NotImplementedError(f"static_report: {launch.name} runs on tensor cores; add a rate model for "
                                      "its MMA instructions to kernel_time_us")
        if not loop or not loop.get("ffma_share"):
            raise ValueError(f"static_report: {launch.name} does FLOPs but its kernel has no FFMA main loop")
        occ = k["occupancy"]
        r = max(1, min(occ["blocks_per_sm"], _ceil(launch.blocks, gpu["sms"])))
        waves = _ceil(launch.blocks, r * gpu["sms"])
        sm_use = launch.blocks / (waves * r * gpu["sms"])
        achieved = r * occ["warps_per_block"] / SM90["max_warps_per_sm"]
        hiding = min(1.0, achieved / model["occupancy_saturation"])
        # the path without the 64-bit division calls when the loop has one (sizes fit 32 bits in practice)
        share = (loop.get("without_call_blocks") or loop)["ffma_share"]
        rate = gpu["fp32_tflops"] * 1e12 * share * model["issue_efficiency"] * hiding * sm_use
        t_flop = launch.flops / rate * 1e6
        detail = {"blocks": launch.blocks, "blocks_per_sm": r, "waves": waves, "sm_use": sm_use,
                  "latency_hiding": hiding, "tflops": rate / 1e12}
    t = max(t_flop, t_mem, model["min_kernel_us"])
    bound = "launch" if t == model["min_kernel_us"] else ("flops" if t_flop >= t_mem else "bytes")
    return {"us": t, "compute_us": t_flop, "memory_us": t_mem, "bound": bound, **detail}


def ekdaa_launches(preset: str, batch: int, kernels: dict) -> list[Launch]:
    """The update's kernel launches with bench/floors.py's FLOPs/bytes split over the kernels of
    each op (the op's FLOPs to its first, FLOP-doing kernel; bytes shared evenly). Ops one launch
    serves are merged first: the output layer's fc_fwd and softmax_error (fc_softmax_error), and
    an FC layer's update and the projection of its error to the layer below (fc_update_proj,
    phase "error")."""
    import floors

    blocks = floors.blocks_of(preset)
    out = []

    def block_size(name):
        return kernels[name]["occupancy"]["threads_per_block"]

    groups: list[list[dict]] = []
    merged: dict[tuple, list[dict]] = {}
    fc_layers = {b.name for b in blocks if b.kind != "conv"}
    # The backend's filter update of a pooled conv layer is v3 (conv_filter_update_pooled): its e is
    # zero off the argmax, one term per 2x2 window, a quarter of the dense FLOPs executed.
    pooled = {b.name for b in blocks if b.kind == "conv" and b.pool}
    for row in floors.update_rows(blocks, batch, "ekdaa"):
        if row["op"] == "conv_filter_update" and row["layer"] in pooled:
            row = {**row, "flops": row["flops"] // 4, "shape": {**row["shape"], "pooled": True}}
        key = None
        if row["layer"] == blocks[-1].name and row["op"] in ("fc_fwd", "softmax_error"):
            key = ("output",)
        elif row["layer"] in fc_layers and row["op"] in ("fc_update", "fc_error_proj", "fc_error_proj_to_map"):
            key = ("fc_update_proj", row["layer"])
        if key is None:
            groups.append([row])
        else:
            if key not in merged:
                merged[key] = []
                groups.append(merged[key])
            merged[key].append(row)
    for group in groups:
        parts = _op_kernels(group, block_size)
        flops, nbytes = sum(r["flops"] for r in group), sum(r["bytes"] for r in group)
        for i, (kname, nblocks) in enumerate(parts):
            if kname not in kernels:
                raise KeyError(f"static_report: op {group[0]['op']} runs on {kname}, which is not in the cubins")
            out.append(Launch(kname, group[0]["phase"], flops if i == 0 else 0, nbytes // len(parts), nblocks,
                              kernels[kname], [f"{r['op']} {r['layer']}" for r in group]))
    return out


# The cuDNN backprop sequence of the same network (PyTorch eager/graph, FP32, TF32 off), as the ops
# PyTorch runs: per conv: cuDNN fwd, tanh, (max-pool with int64 indices); backward: (pool bwd:
# zero-fill + scatter), tanh bwd, cuDNN bwd-filter (split-K: kernel + reduction, ASSUMPTION), cuDNN
# bwd-data (not for the first layer); FC: GEMM fwd, tanh; bwd GEMMs for input and weight;
# log_softmax + nll_loss fwd and bwd; SGD momentum as 3 multi-tensor launches (foreach mul/add/add,
# ASSUMPTION). Launch counts per op are ASSUMPTIONS, to be replaced by the GPU run's profile.
def cudnn_launches(preset: str, batch: int) -> list[dict]:
    import floors

    blocks = floors.blocks_of(preset)
    rows = floors.update_rows(blocks, batch, "bp")
    flops = {(r["phase"], r["layer"]): r["flops"] for r in rows}
    n, F, I64 = batch, floors.F32, 8
    ops: list[dict] = []

    def op(name, phase, launches, nflops=0, nbytes=0, gemm=None):
        ops.append({"op": name, "phase": phase, "launches": launches, "flops": int(nflops), "bytes": int(nbytes),
                    "gemm": gemm})

    params = 0
    for b in blocks:
        if b.kind == "conv":
            c, hh, ww = b.in_shape
            h_el, x_el, w_el = n * b.size * hh * ww, n * c * hh * ww, b.size * c * b.kernel ** 2
            op(f"conv fwd {b.name}", "forward", 1, flops[("forward", b.name)], F * (x_el + w_el + h_el),
               (n * hh * ww, b.size, c * b.kernel ** 2))
            op(f"tanh {b.name}", "forward", 1, 0, 2 * F * h_el)
            if b.pool:
                p_el = h_el // 4
                op(f"maxpool {b.name}", "forward", 1, 0, F * (h_el + p_el) + I64 * p_el)
        else:
            op(f"gemm fwd {b.name}", "forward", 1, flops[("forward", b.name)],
               F * (n * b.in_shape[0] + b.size * b.in_shape[0] + n * b.size), (n, b.size, b.in_shape[0]))
            if b.kind != "output":
                op(f"tanh {b.name}", "forward", 1, 0, 2 * F * n * b.size)
        params += math.prod(b.weight_shape)
    classes = blocks[-1].size
    op("log_softmax + nll_loss fwd", "error", 2, 0, F * 2 * n * classes + I64 * n)
    op("nll_loss + log_softmax bwd", "error", 3, 0, F * 3 * n * classes + I64 * n)
    for i in range(len(blocks) - 1, -1, -1):
        b = blocks[i]
        if b.kind == "conv":
            c, hh, ww = b.in_shape
            h_el, x_el, w_el = n * b.size * hh * ww, n * c * hh * ww, b.size * c * b.kernel ** 2
            if b.pool:
                op(f"maxpool bwd {b.name}", "error", 2, 0, F * (2 * h_el + h_el // 4) + I64 * h_el // 4)
            op(f"tanh bwd {b.name}", "error", 1, 0, 3 * F * h_el)
            op(f"conv bwd-filter {b.name}", "update", 2, flops[("update", b.name)], F * (x_el + h_el + w_el),
               None)
            if i > 0:
                op(f"conv bwd-data {b.name}", "error", 1, flops[("error", b.name)], F * (h_el + w_el + x_el),
                   (n * hh * ww, c, b.size * b.kernel ** 2))
        else:
            if b.kind != "output":
                op(f"tanh bwd {b.name}", "error", 1, 0, 3 * F * n * b.size)
            f_in = b.in_shape[0]
            op(f"gemm bwd-weight {b.name}", "update", 1, flops[("update", b.name)],
               F * (n * f_in + n * b.size + f_in * b.size), None)
            op(f"gemm bwd-data {b.name}", "error", 1, flops[("error", b.name)],
               F * (n * b.size + f_in * b.size + n * f_in), (n, f_in, b.size))
    op("SGD momentum (foreach)", "optimizer", 3, 4 * params, floors.OPT_BYTES_PER_ELEM * params)
    return ops


def cudnn_op_time_us(o: dict, gpu: dict, model: dict = MODEL) -> float:
    """max(FLOPs / (peak × cuDNN efficiency × tile-wave fill), bytes / (HBM × efficiency), minimum
    kernel time × launches). Tile-wave fill from the output GEMM's M × N in CTA tiles; the
    reductions over the batch (bwd-filter/bwd-weight, ``gemm`` None) are taken as split-K and full."""
    t_mem = o["bytes"] / (gpu["hbm_tbs"] * 1e12 * model["hbm_efficiency"]) * 1e6
    t_flop = 0.0
    if o["flops"]:
        t_flop = o["flops"] / (gpu["fp32_tflops"] * 1e12 * model["cudnn_efficiency"] * gemm_fill(o["gemm"], gpu,
                                                                                             model)) * 1e6
    return max(t_flop, t_mem, model["min_kernel_us"] * o["launches"])


def gemm_fill(gemm: tuple | None, gpu: dict, model: dict = MODEL) -> float:
    """Best relative efficiency × wave fill over the modelled CTA tiles for an (M, N, K) GEMM; None
    (a reduction over the batch, e.g. bwd-filter) is taken as perfectly split: 1."""
    if gemm is None:
        return 1.0
    m, n, k = gemm
    slots = gpu["sms"] * model["cudnn_ctas_per_sm"]
    best = 0.0
    for tm, tn, eff in model["cudnn_tiles"]:
        tiles = _ceil(m, tm) * _ceil(n, tn)
        split = max(1, min(_ceil(slots, tiles), k // model["cudnn_min_k"]))
        work = tiles * split
        best = max(best, eff * work / (_ceil(work, slots) * slots))
    return best


def predict(preset: str, batch: int, kernels: dict, launches_info: dict, gpu_name: str,
            model: dict = MODEL) -> dict:
    """Predicted ms per update: EKDAA today (its kernels + the current host path), EKDAA's kernels
    alone replayed from a graph, cuDNN eager and cuDNN graph; phase split of EKDAA's device time."""
    gpu = GPUS[gpu_name]
    import floors

    launches = ekdaa_launches(preset, batch, kernels)
    counts = floors.totals(floors.update_rows(floors.blocks_of(preset), batch, "ekdaa"))
    for ph in floors.PHASES:
        counts[ph]["kernel_launches"] = sum(la.phase == ph for la in launches)
    per_phase = {p: 0.0 for p in ("forward", "error", "update", "optimizer")}
    per_kernel: dict[str, float] = {}
    rows = []
    for la in launches:
        detail = kernel_time_us(la, gpu, model)
        t = detail["us"]
        per_phase[la.phase] += t
        per_kernel[la.name] = per_kernel.get(la.name, 0.0) + t
        rounded = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in detail.items()}
        rows.append({"kernel": la.name, "op": " ".join(la.notes), "phase": la.phase, "flops": la.flops,
                     "bytes": la.nbytes, **rounded})
    dev_kernels = sum(per_phase.values())
    # the CuPy launches of the current host path are elementwise/reductions on tiny arrays: each
    # costs the minimum kernel time on the device
    extra = launches_info["total_launches"] - len(launches)
    dev_eager = dev_kernels + max(0, extra) * model["min_kernel_us"]
    host = (launches_info["ekdaa_kernel_launches"] * model["host_us_ekdaa_op"]
            + launches_info["cupy_launches"] * model["host_us_cupy_op"])
    ekdaa_now = max(dev_eager, host) + launches_info["host_syncs"] * model["sync_us"]
    ekdaa_graph = dev_kernels + len(launches) * model["graph_gap_us"]
    ops = cudnn_launches(preset, batch)
    dev_cudnn = sum(cudnn_op_time_us(o, gpu, model) for o in ops)
    n_torch = sum(o["launches"] for o in ops)
    cudnn_eager = max(dev_cudnn, len(ops) * model["host_us_torch_op"])
    cudnn_graph = dev_cudnn + n_torch * model["graph_gap_us"]
    best = min(cudnn_eager, cudnn_graph)
    return {
        "gpu": gpu_name, "preset": preset, "batch": batch,
        "ekdaa_ms": ekdaa_now / 1e3, "ekdaa_device_ms": dev_eager / 1e3, "ekdaa_host_ms": host / 1e3,
        "ekdaa_kernels_graph_ms": ekdaa_graph / 1e3,
        "ekdaa_phase_device_ms": {p: v / 1e3 for p, v in per_phase.items()},
        "ekdaa_kernel_device_ms": {k: v / 1e3 for k, v in sorted(per_kernel.items(), key=lambda kv: -kv[1])},
        "ekdaa_launches": launches_info["total_launches"], "ekdaa_kernel_launches": len(launches),
        "cudnn_eager_ms": cudnn_eager / 1e3, "cudnn_graph_ms": cudnn_graph / 1e3, "cudnn_best_ms": best / 1e3,
        "cudnn_launches": n_torch,
        "ratio_ekdaa_vs_cudnn": ekdaa_now / best, "ratio_ekdaa_graph_vs_cudnn": ekdaa_graph / best,
        "ekdaa_counts": counts,  # bench/floors.py FLOPs and bytes per phase, + ekdaa_cuda launches per phase
        "ekdaa_launch_rows": rows,
        "cudnn_op_rows": [{"op": o["op"], "phase": o["phase"], "launches": o["launches"], "flops": o["flops"],
                           "bytes": o["bytes"], "us": round(cudnn_op_time_us(o, gpu, model), 4)} for o in ops],
    }


# ====================================================================== report


TARGET_FFMA = 0.5  # issue 9: FFMA >= 50% of the main loop of conv forward, transposed conv, filter update
TARGET_RATIO = {50: 0.5, 1024: 1.0}  # issue 9: EKDAA <= 0.5x best cuDNN at batch 50, <= 1.0x at 1024
TARGET_LAUNCHES = 16  # issue 9: <= 16 launches per fmnist update (counted on the simulator)


def build_report(src_dir: Path, presets, batches, arch: str = "sm_90", work: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        kernels = analyse_kernels(src_dir, Path(work or tmp), arch)
    launches = {p: launch_sequence(p) for p in presets}
    predictions = [predict(p, b, kernels, launches[p], g) for p in presets for b in batches for g in GPUS]
    commit = _run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).strip() if shutil.which("git") else None
    dirty = bool(_run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "csrc"]).strip()) if commit else None
    csrc_commit = _run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--", "csrc"]).strip() if commit else None
    tools = {t: find_tool(t) for t in ("nvcc", "cuobjdump")}
    versions = {t: (_run([p, "--version"]).strip().splitlines()[-1] if p else None) for t, p in tools.items()}
    return {
        "label": "PREDICTIONS: static analysis and an analytic model; no GPU ran",
        "commit": commit, "csrc_commit": csrc_commit, "csrc_dirty": dirty, "arch": arch, "tools": versions,
        "sm90_limits": SM90, "gpus": GPUS, "model_constants": MODEL,
        "targets": {"ffma_share_min": TARGET_FFMA, "ratio_max": TARGET_RATIO, "launches_max_fmnist": TARGET_LAUNCHES},
        "kernels": kernels, "launches": launches, "predictions": predictions,
    }


def add_baseline(rep: dict, base: dict, label: str) -> None:
    """Attach an earlier report's EKDAA prediction to every matching (preset, batch, GPU) row."""
    old = {(r["preset"], r["batch"], r["gpu"]): r for r in base.get("predictions", [])}
    rep["baseline"] = {"file": label, "commit": base.get("commit")}
    for r in rep["predictions"]:
        b = old.get((r["preset"], r["batch"], r["gpu"]))
        if b:
            r["baseline_ekdaa_ms"] = b["ekdaa_ms"]
            r["speedup_vs_baseline"] = b["ekdaa_ms"] / r["ekdaa_ms"]


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def render_markdown(rep: dict) -> str:
    lines = [f"# Static performance report ({rep['arch']}) — PREDICTIONS, no GPU ran", "",
             f"Commit `{rep['commit']}` (csrc/ last changed in `{rep.get('csrc_commit')}`"
             f"{'; csrc/ has uncommitted changes' if rep['csrc_dirty'] else ''}); "
             f"{rep['tools'].get('nvcc')}; cuobjdump {rep['tools'].get('cuobjdump')}. "
             "Produced by `python bench/static_report.py` (see bench/README.md). Registers, spills, shared "
             "memory and instruction mixes are read from the compiled code; occupancy is computed; every time "
             "is a model prediction with the constants listed below, to be checked by `bench/run_all.sh`.", "",
             "## Kernels (sm_90)", "",
             "| kernel | phase | regs | stack/spill st/ld (B) | smem (B) | cmem[0] (B) | block | blocks/SM | "
             "occupancy (limit) | main-loop instr | FFMA share | instr/FFMA | int | LDG | LDS | branch | "
             "target ≥ 50% |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, k in sorted(rep["kernels"].items(), key=lambda kv: (kv[1]["phase"], kv[0])):
        o, m = k["occupancy"], k["main_loop"]
        c = m["counts"] if m else {}
        target = ("n/a" if not k["ffma_target"] else
                  ("MET" if m and m["ffma_share"] >= TARGET_FFMA else "MISSED"))
        ipf = m["instructions_per_ffma"] if m else None
        nc = m.get("without_call_blocks") if m else None
        share = (_pct(m["ffma_share"]) + (f" ({_pct(nc['ffma_share'])})" if nc else "")) if m else "–"
        ipf_s = (f"{ipf:.1f}" + (f" ({nc['instructions_per_ffma']:.1f})" if nc and nc["instructions_per_ffma"]
                                   else "")) if ipf else "–"
        lines.append(
            f"| `{name}` | {k['phase']} | {k['registers']} | {k['stack_bytes']}/{k['spill_store_bytes']}/"
            f"{k['spill_load_bytes']} | {k['smem_static_bytes']} | {k['cmem0_bytes']} | {o['threads_per_block']} | "
            f"{o['blocks_per_sm']} | {_pct(o['occupancy'])} ({o['limited_by']}) | "
            f"{m['instructions'] if m else '–'} | {share} | "
            f"{ipf_s} | {c.get('int', '–')} | {c.get('load_global', '–')} | "
            f"{c.get('load_shared', '–')} | {c.get('branch', '–')} | {target} |")
    lines += ["", "Main loop = the innermost backward-branch loop holding the most FFMA (of several such loops, one "
              "per code path, the one with the highest FFMA share: the JSON's `same_ffma_loops` lists them all), "
              "counted statically over its address range (both sides of an `if` inside the loop count once each, "
              "e.g. the filter update's 32- and 64-bit division paths; calls to the 64-bit division subroutine "
              "are not followed; the share in brackets leaves out the basic blocks that contain such a CALL, i.e. "
              "the 32-bit fast path alone); kernels without a loop show –. int = IMAD/IADD3/LEA/ISETP/SHF/LOP3/"
              "SEL/...; LDG = global loads; branch = BRA/BSSY/BSYNC/EXIT/BAR/....", ""]
    lines += ["## Launches per update (current host path)", "",
              "| preset | ekdaa_cuda kernels | CuPy ops | total | host syncs | simulator count | "
              "target (fmnist kernel launches) |",
              "|---|---|---|---|---|---|---|"]
    for p, la in rep["launches"].items():
        counted = la["sim_launch_count"] if la["sim_launch_count"] is not None else la["ekdaa_kernel_launches"]
        tgt = f"≤ {TARGET_LAUNCHES}: {'MET' if counted <= TARGET_LAUNCHES else 'MISSED'}" if p == "fmnist" else ""
        sim = la["sim_launch_count"] if la["sim_launch_count"] is not None else "not measured (no `_sim`)"
        lines.append(f"| {p} | {la['ekdaa_kernel_launches']} | {la['cupy_launches']} | {la['total_launches']} | "
                     f"{la['host_syncs']} | {sim} | {tgt} |")
    lines += ["", "Counted from the model's real op sequence (one NumPy-backend step, backend calls recorded) "
              "mapped to the CUDA backend's launches; CuPy ops counted one launch per expression (here the "
              "batch's copies into the recorded input buffers and the two sums' copies out: memory copies, not "
              "kernels, so the target counts the package's kernel launches, as the simulator does).", "",
              "## Predicted time per update (ms) — PREDICTIONS", "",
              "| preset | batch | GPU | EKDAA now | EKDAA kernels as a graph | cuDNN eager | cuDNN graph | "
              "EKDAA / best cuDNN | target | EKDAA fwd / err / upd / opt device ms |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["predictions"]:
        tgt = TARGET_RATIO.get(r["batch"])
        verdict = "" if tgt is None else f"≤ {tgt}: {'MET' if r['ratio_ekdaa_vs_cudnn'] <= tgt else 'MISSED'}"
        ph = r["ekdaa_phase_device_ms"]
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['gpu']} | {r['ekdaa_ms']:.3f} | {r['ekdaa_kernels_graph_ms']:.3f} | "
            f"{r['cudnn_eager_ms']:.3f} | {r['cudnn_graph_ms']:.3f} | {r['ratio_ekdaa_vs_cudnn']:.1f}x | {verdict} | "
            f"{ph['forward']:.3f} / {ph['error']:.3f} / {ph['update']:.3f} / {ph['optimizer']:.3f} |")
    if rep.get("baseline"):
        lines += ["", f"Baseline: `{rep['baseline']['file']}` (commit `{rep['baseline']['commit']}`).", "",
                  "| preset | batch | GPU | EKDAA baseline ms | EKDAA now ms | speedup |", "|---|---|---|---|---|---|"]
        for r in rep["predictions"]:
            if "baseline_ekdaa_ms" in r:
                lines.append(f"| {r['preset']} | {r['batch']} | {r['gpu']} | {r['baseline_ekdaa_ms']:.3f} | "
                             f"{r['ekdaa_ms']:.3f} | {r['speedup_vs_baseline']:.1f}x |")
    lines += ["", "## Work per EKDAA update (bench/floors.py counts; ekdaa_cuda kernel launches)", "",
              "| preset | batch | forward GFLOP / MB / launches | error | update | optimizer |",
              "|---|---|---|---|---|---|"]
    seen = set()
    for r in rep["predictions"]:
        if (r["preset"], r["batch"]) in seen:
            continue
        seen.add((r["preset"], r["batch"]))
        c = r["ekdaa_counts"]
        cells = [f"{c[ph]['flops'] / 1e9:.2f} / {c[ph]['bytes'] / 1e6:.1f} / {c[ph]['kernel_launches']}"
                 for ph in ("forward", "error", "update", "optimizer")]
        lines.append(f"| {r['preset']} | {r['batch']} | " + " | ".join(cells) + " |")
    mc = rep["model_constants"]
    lines += ["", "## The model", "",
              "- per EKDAA launch: max(FLOPs / (FP32 peak × main-loop FFMA share × issue efficiency × latency "
              "hiding × SM use), bytes / (HBM × efficiency), minimum kernel time); latency hiding = min(1, achieved "
              "occupancy / saturation); SM use = busy block slots over the grid's waves. FLOPs and bytes per op "
              "from `bench/floors.py`.",
              "- EKDAA now = max(device time incl. the CuPy ops at the minimum kernel time, host launch time) + "
              "host syncs × sync cost; 'as a graph' = its ekdaa_cuda kernels back to back with the graph gap.",
              "- cuDNN: PyTorch's op sequence (conv fwd, bwd-data, bwd-filter, tanh, pool and their backward, GEMMs, "
              "loss, foreach SGD) at max(FLOPs / (peak × cuDNN efficiency × best tile efficiency × wave fill, with "
              "split-K), bytes / HBM, minimum kernel time × launches); eager = max(device, ops × host dispatch), "
              "graph = device + launches × gap.",
              f"- constants (ASSUMPTIONS unless sourced in `bench/static_report.py`): {json.dumps(mc)}",
              "- cards: " + "; ".join(f"{g}: {v['sms']} SMs, {v['fp32_tflops']} TFLOP/s FP32, {v['hbm_tbs']} TB/s "
                                      f"({v['source']})" for g, v in rep["gpus"].items()), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default=str(ROOT / "csrc"))
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--presets", default="fmnist,cifar")
    p.add_argument("--batches", default="50,256,1024")
    p.add_argument("--date", default=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"))
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--keep", help="keep the cubins and listings in this folder")
    p.add_argument("--baseline", help="an earlier static-*.json (e.g. the old kernels'): its EKDAA predictions are "
                                      "shown beside the new ones")
    args = p.parse_args(argv)
    work = Path(args.keep) if args.keep else None
    if work:
        work.mkdir(parents=True, exist_ok=True)
    rep = build_report(Path(args.src), args.presets.split(","), [int(b) for b in args.batches.split(",")],
                       args.arch, work)
    if args.baseline:
        add_baseline(rep, json.loads(Path(args.baseline).read_text()), args.baseline)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"static-{args.date}.json").write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
    md = render_markdown(rep)
    (out / f"static-{args.date}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
