"""Tests of the CPU simulator itself (ekdaa_cuda._sim), with its own small kernels.

The kernels live in csrc/sim/selftest.cu (plain CUDA, compiled into _sim through the same
rewrite as csrc/*.cu) and are reached as ``_sim.selftest_*``. Planted bugs — a missing
__syncthreads, a divergent barrier, a thread exiting while others wait, a full-mask shuffle
with exited or nonexistent lanes, a deadlock, 1025 threads a block, too much dynamic shared
memory, an out-of-bounds read (sanitizer build only) — must be reported; a correct tiled
kernel must give bitwise-equal results under every schedule and worker count.

Every result here is exact: integer-valued float32 inputs make the GEMM's sums exact in any
order, and shuffles only move values. Run: ``pytest tests/sim``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sim = pytest.importorskip("ekdaa_cuda._sim", reason="ekdaa_cuda._sim not built")

SELFTEST = Path(__file__).resolve().parents[2] / "csrc" / "sim" / "selftest.cu"
SCHEDULES = [("forward", 0), ("reverse", 0), ("shuffle", 1), ("shuffle", 2), ("shuffle", 3), ("shuffle", 4)]


def marker_line(marker: str) -> int:
    """Line of csrc/sim/selftest.cu carrying the comment `// [marker]`."""
    for number, line in enumerate(SELFTEST.read_text().splitlines(), start=1):
        if f"// [{marker}]" in line:
            return number
    raise AssertionError(f"marker [{marker}] not found in {SELFTEST}")


def addr(a: np.ndarray) -> int:
    return a.ctypes.data


@pytest.fixture(autouse=True)
def restore_settings():
    yield
    sim.set_schedule("forward", 0)
    sim.set_workers(1)


def tiled_gemm(a, b, skip_sync=0):
    M, K = a.shape
    N = b.shape[1]
    c = np.full((M, N), np.nan, np.float32)  # poisoned: an unwritten element fails
    sim.selftest_tiled_gemm(addr(a), addr(b), addr(c), M, N, K, skip_sync)
    return c


def int_matrices(rng, M, K, N):
    a = rng.integers(-4, 5, (M, K)).astype(np.float32)
    b = rng.integers(-4, 5, (K, N)).astype(np.float32)
    return a, b


def test_device_query_reports_the_simulator():
    props = sim.device_properties(0)
    assert props["name"] == "ekdaa_cuda simulator"
    assert props["compute_capability"] == (9, 0)
    assert sim.device_count() == 1 and sim.device_error() == ""
    assert sim.runtime_version() >= 12000
    assert "error" in sim.device_properties(1)


def test_settings_roundtrip_and_validation():
    sim.set_schedule("shuffle", 7)
    assert sim.schedule() == ("shuffle", 7)
    sim.set_workers(2)
    assert sim.workers() == 2
    with pytest.raises(ValueError, match="set_schedule"):
        sim.set_schedule("sideways")
    with pytest.raises(ValueError, match="set_workers"):
        sim.set_workers(0)


@pytest.mark.parametrize("workers", [1, 2])
def test_correct_tiled_kernel_is_bitwise_equal_under_every_schedule(rng, workers):
    # awkward sizes around the 16x16 tile: 1, primes, tile + 1
    M, K, N = (int(rng.choice(s)) for s in ([1, 17, 31], [16, 17, 47], [1, 13, 33]))
    a, b = int_matrices(rng, M, K, N)
    sim.set_workers(workers)
    for name, seed in SCHEDULES:
        sim.set_schedule(name, seed)
        np.testing.assert_array_equal(tiled_gemm(a, b), a @ b, err_msg=f"schedule {name}/{seed}")


@pytest.mark.parametrize("skip_sync", [1, 2], ids=["no-barrier-after-load", "no-barrier-before-overwrite"])
def test_missing_syncthreads_is_caught(skip_sync):
    """A removed barrier of the tiled GEMM changes the result under every schedule tried, and every two
    schedules disagree, so comparing schedules finds it without a reference. Deterministic: fixed inputs,
    and fibers switch only at barriers, so a schedule always gives the same output. (Measured with 14
    schedules — forward, reverse, shuffle 1..12 — : 14 of 14 wrong, 91 of 91 pairs disagree, both bugs.)"""
    a, b = int_matrices(np.random.default_rng(1), 32, 48, 32)  # 3 k-tiles, so the second barrier matters
    want = tiled_gemm(a, b)
    np.testing.assert_array_equal(want, a @ b)
    wrong = 0
    outputs = set()
    for name, seed in SCHEDULES:
        sim.set_schedule(name, seed)
        got = tiled_gemm(a, b, skip_sync)
        outputs.add(got.tobytes())
        wrong += not np.array_equal(got, want, equal_nan=False)
    print(f"skip_sync={skip_sync}: {wrong} of {len(SCHEDULES)} schedules differ from the correct result")
    assert wrong == len(SCHEDULES)
    assert len(outputs) == len(SCHEDULES), "every two schedules disagree"


def test_divergent_barrier_is_an_error():
    out = np.zeros(32, np.float32)
    with pytest.raises(sim.KernelError) as info:
        sim.selftest_barrier(addr(out), 1)
    msg = str(info.value)
    assert "barrier divergence" in msg and "barrier_kernel" in msg and "block (0, 0, 0)" in msg
    assert f"selftest.cu:{marker_line('lower half')}" in msg and f"selftest.cu:{marker_line('upper half')}" in msg
    sim.selftest_barrier(addr(out), 0)  # the simulator is usable after the error
    np.testing.assert_array_equal(out, np.arange(32, dtype=np.float32))


def test_exit_while_others_wait_at_a_barrier_is_an_error():
    out = np.zeros(32, np.float32)
    with pytest.raises(sim.KernelError, match=r"thread \(16, 0, 0\) exited while 16 thread\(s\) wait") as info:
        sim.selftest_barrier(addr(out), 2)
    assert f"selftest.cu:{marker_line('wait')}" in str(info.value)


def test_warp_collectives():
    rng = np.random.default_rng(0)
    x = rng.integers(-8, 9, 64).astype(np.float32)  # integer values: every sum is exact
    out = np.full(4 * 64, np.nan, np.float32)
    sim.selftest_warp_reduce(addr(x), addr(out), 64, 32)
    out = out.reshape(64, 4)
    for w in range(2):
        lanes = slice(32 * w, 32 * w + 32)
        assert np.all(out[lanes, 0] == x[lanes].sum()), "xor butterfly: every lane has the warp's sum"
        assert np.all(out[lanes, 1] == x[lanes].sum()), "shfl_down tree: lane 0's sum, broadcast"
        assert np.all(out[lanes, 2] == (x[lanes] > 0).sum()), "ballot popcount"
        assert np.all(out[lanes, 3] == 2), "any(v > 100) = 0, all(v > -100) = 1"


def test_full_mask_shuffle_with_exited_lanes_is_an_error():
    x = np.ones(64, np.float32)
    out = np.zeros(256, np.float32)
    with pytest.raises(sim.KernelError, match="names lane 20, which has exited") as info:
        sim.selftest_warp_reduce(addr(x), addr(out), 64, 20)
    assert f"selftest.cu:{marker_line('xor')}" in str(info.value) and "warp_reduce_kernel" in str(info.value)


def test_full_mask_shuffle_in_a_partial_warp_is_an_error():
    x = np.ones(64, np.float32)
    out = np.zeros(256, np.float32)
    with pytest.raises(sim.KernelError, match=r"names lane 16, which does not exist \(the block has 48 threads\)"):
        sim.selftest_warp_reduce(addr(x), addr(out), 48, 32)


def test_deadlock_is_an_error():
    out = np.zeros(2, np.float32)
    with pytest.raises(sim.KernelError, match="deadlock") as info:
        sim.selftest_deadlock(addr(out))
    assert f"selftest.cu:{marker_line('deadlock shfl')}" in str(info.value)


def expected_shuffles(v, src, delta, lane_mask, width):
    """PTX shfl.sync: segments of `width` lanes; a source outside the lane's segment gives its own value."""
    out = np.empty((32, 4), np.float32)
    for lane in range(32):
        seg = lane & ~(width - 1)

        def pick(s, lane=lane, seg=seg):
            return v[s] if seg <= s < seg + width else v[lane]

        out[lane] = [v[seg + (src & (width - 1))], pick(lane - delta), pick(lane + delta), pick(lane ^ lane_mask)]
    return out


@pytest.mark.parametrize("width", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("src, delta, lane_mask", [(0, 1, 1), (5, 3, 6), (31, 16, 17)])
def test_shuffle_semantics_with_width(width, src, delta, lane_mask):
    v = np.arange(100, 132, dtype=np.float32)
    out = np.full(128, np.nan, np.float32)
    sim.selftest_shuffle(addr(v), addr(out), src, delta, lane_mask, width)
    np.testing.assert_array_equal(out.reshape(32, 4), expected_shuffles(v, src, delta, lane_mask, width))


@pytest.mark.parametrize(
    "grid, block",
    [((1, 1, 1), (1025, 1, 1)), ((1, 1, 1), (1, 1, 65)), ((1, 1, 1), (64, 32, 1)), ((1, 65536, 1), (32, 1, 1)),
     ((0, 1, 1), (32, 1, 1))],
)
def test_bad_launch_configuration_comes_back_through_cudaGetLastError(grid, block):
    sim.reset_launch_count()
    with pytest.raises(RuntimeError, match="cudaErrorInvalidConfiguration"):
        sim.selftest_launch(grid, block)
    assert sim.launch_count() == 0, "a refused launch does not run and does not count"


def test_largest_legal_blocks_run():
    out = np.zeros(1, np.float32)
    for block in [(1024, 1, 1), (32, 32, 1), (1, 16, 64)]:
        out[0] = 0
        sim.selftest_launch((1, 1, 1), block, addr(out))
        assert out[0] == 1


def test_dynamic_shared_memory_limit_and_opt_in():
    n48k = 48 * 1024 // 4
    out = np.zeros(2 * 16384, np.float32)
    sim.selftest_dynamic_shared(addr(out), n48k)  # exactly 48 KiB: allowed without opt-in
    assert np.isnan(out[:n48k]).all(), "dynamic shared memory starts NaN"
    np.testing.assert_array_equal(out[n48k : 2 * n48k], np.arange(n48k, dtype=np.float32)[::-1])
    with pytest.raises(RuntimeError, match="cudaErrorInvalidValue"):
        sim.selftest_dynamic_shared(addr(out), n48k + 1)
    with pytest.raises(RuntimeError, match="cudaErrorInvalidValue"):
        sim.selftest_dynamic_shared(addr(out), 16384)  # 64 KiB, no opt-in
    sim.selftest_dynamic_shared(addr(out), 16384, 64 * 1024)  # with cudaFuncSetAttribute: fine
    np.testing.assert_array_equal(out[16384:], np.arange(16384, dtype=np.float32)[::-1])


@pytest.mark.parametrize("workers", [1, 2])
def test_static_shared_starts_nan_and_atomics_count_every_thread(workers):
    sim.set_workers(workers)
    out = np.zeros(256, np.float32)
    counter = np.zeros(1, np.int32)
    sim.selftest_static_shared(addr(out), addr(counter), 37)
    assert np.isnan(out).all()
    assert counter[0] == 37 * 256


def test_fresh_allocation_is_nan():
    assert np.isnan(sim.selftest_fresh_allocation(17)).all()


def test_launch_count():
    sim.reset_launch_count()
    out = np.zeros(32, np.float32)
    for _ in range(3):
        sim.selftest_barrier(addr(out), 0)
    assert sim.launch_count() == 3
    sim.reset_launch_count()
    assert sim.launch_count() == 0


def test_package_kernel_runs_on_the_simulator(rng):
    """fc_fwd v1 (a real kernel of csrc/fc.cu, tile_gemm inside) through _sim's binding: exact on integers."""
    N, F_in, F_out = 19, 33, 17
    z = rng.integers(-3, 4, (N, F_in)).astype(np.float32)
    w = rng.integers(-3, 4, (F_out, F_in)).astype(np.float32)
    b = rng.integers(-3, 4, F_out).astype(np.float32)
    results = []
    for workers in (1, 2):
        sim.set_workers(workers)
        for name, seed in SCHEDULES[:3]:
            sim.set_schedule(name, seed)
            h = np.full((N, F_out), np.nan, np.float32)
            out = np.full((N, F_out), np.nan, np.float32)
            sim.fc_fwd_v1(addr(z), addr(w), addr(b), addr(h), addr(out), N, F_in, F_out, 3, False, 0, 0, 1.0, 0)
            results.append(h.copy())
    for h in results:
        np.testing.assert_array_equal(h, z @ w.T + b)


def test_out_of_bounds_read_is_caught_by_the_sanitizer_build(tmp_path):
    if not sim.SANITIZED:
        pytest.skip("needs _sim built with EKDAA_SIM_SANITIZE=ON (CI's sanitizer stage)")
    sim.selftest_out_of_bounds_read(64, 0)  # in bounds: clean
    code = "import ekdaa_cuda._sim as s; s.selftest_out_of_bounds_read(64, 1)"
    # cwd elsewhere: the repository's source folder must not shadow the installed package
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in proc.stderr, proc.stderr[-3000:]
    # the simulator names the CUDA thread; with a symbolizer, ASan names the kernel's line too
    assert re.search(r"happened in kernel copy_kernel .*, block \(1, 0, 0\), thread \(0, 0, 0\)", proc.stderr)
    if re.search(r"#0 0x[0-9a-f]+ in copy_kernel", proc.stderr):  # symbolized: the .cu line, through #line
        assert re.search(rf"#0 0x[0-9a-f]+ in copy_kernel \S*selftest\.cu:{marker_line('overrun')}", proc.stderr)


def test_aligned_float4_loads():
    x = np.arange(4 * 8 + 4, dtype=np.float32)  # numpy's data pointer is 16-byte aligned
    assert x.ctypes.data % 16 == 0
    out = np.full(8, np.nan, np.float32)
    sim.selftest_vector_load(addr(x), addr(out), 8, 0)
    np.testing.assert_array_equal(out, x[:32].reshape(8, 4).sum(axis=1))


def test_misaligned_float4_load_is_caught_by_the_sanitizer_build(tmp_path):
    if not sim.SANITIZED:
        pytest.skip("needs _sim built with EKDAA_SIM_SANITIZE=ON (CI's sanitizer stage); unsanitized it may crash")
    code = (
        "import numpy as np, ekdaa_cuda._sim as s; x = np.zeros(64, np.float32); o = np.zeros(8, np.float32); "
        "s.selftest_vector_load(x.ctypes.data, o.ctypes.data, 8, 1)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "misaligned address" in proc.stderr and "16 byte alignment" in proc.stderr, proc.stderr[-3000:]
    assert f"selftest.cu:{marker_line('float4')}" in proc.stderr  # UBSan names the line (no symbolizer needed)
