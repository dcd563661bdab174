"""``render3d check-kernels`` and the variant declarations it compiles: a real kernel compiles
for sm_80 and sm_90, a kernel only the interpreter accepts fails the command, and a launch
outside the declared variants never runs."""
import json

import pytest
import torch

from render3d.apps.check_kernels import check, kernel_modules, parse_archs, plan
from render3d.apps.cli import main
from render3d.errors import ConfigError
from render3d.kernels._variants import UndeclaredVariantError, declare
from render3d.ops._backend import triton_interpreted
from tests.kernels import aot_samples

SAMPLES = "tests.kernels.aot_samples"


@pytest.mark.slow
def test_a_real_kernel_variant_compiles_for_sm80_and_sm90(capsys):
    results, failures, _ = check([80, 90], ["render3d.kernels.volume_rendering"], "_forward_kernel", workers=1)
    assert failures == []
    assert [(r.kernel, r.arch, r.ok) for r in results] == [("_forward_kernel", 80, True), ("_forward_kernel", 90, True)]
    for result in results:
        assert 0 < result.registers <= 255
        assert result.spill_stores == 0 and result.spill_loads == 0
        assert result.shared_bytes is not None
    assert "volume_rendering._forward_kernel" in capsys.readouterr().out


@pytest.mark.slow
def test_a_kernel_only_the_interpreter_accepts_fails_the_command(device, tmp_path, capsys):
    # The interpreter runs it (a static_range over a runtime bound is unrolled n times); a GPU
    # launch compiles it and fails like the check.
    out = torch.zeros(16, device=device)
    if triton_interpreted():
        aot_samples.runtime_static_range_kernel[(1,)](out, 3, BLOCK=16)
        assert torch.equal(out, torch.full_like(out, 3.0))
    else:
        with pytest.raises(Exception, match="static_range"):
            aot_samples.runtime_static_range_kernel[(1,)](out, 3, BLOCK=16)

    report = tmp_path / "kernels.json"
    status = main(["check-kernels", "--module", SAMPLES, "--arch", "90", "--json", str(report), "--jobs", "1"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "FAILED aot_samples.runtime_static_range_kernel [-] sm_90: CompilationError" in printed
    assert "FAILED aot_samples.undeclared_kernel: @triton.jit function reached by no declared kernel" in printed
    written = json.loads(report.read_text())
    by_kernel = {(r["kernel"], r["variant"]): r for r in written["results"]}
    assert by_kernel[("scale_kernel", "SQUARE=0")]["ok"] and by_kernel[("scale_kernel", "SQUARE=1")]["ok"]
    assert not by_kernel[("runtime_static_range_kernel", "-")]["ok"]
    assert len(written["failures"]) == 2


def test_an_undeclared_variant_cannot_be_launched(device):
    x = torch.arange(20, dtype=torch.float32, device=device)
    out = torch.zeros_like(x)
    aot_samples.scale_kernel[(2,)](x, out, 20, BLOCK=16, SQUARE=True)
    assert torch.equal(out, x * x)

    untouched = torch.zeros_like(x)
    with pytest.raises(UndeclaredVariantError, match=r"constexprs \{'BLOCK': 32, 'SQUARE': True\}"):
        aot_samples.scale_kernel[(1,)](x, untouched, 20, BLOCK=32, SQUARE=True)
    with pytest.raises(UndeclaredVariantError, match=r"'x_ptr': '\*fp64'"):
        aot_samples.scale_kernel[(2,)](x.double(), untouched.double(), 20, BLOCK=16, SQUARE=False)
    with pytest.raises(UndeclaredVariantError, match=r"'n': 'i64'"):
        aot_samples.scale_kernel[(2,)](x, untouched, 2**40, BLOCK=16, SQUARE=False)
    with pytest.raises(TypeError, match="launch options belong in the kernel's declaration"):
        aot_samples.scale_kernel[(2,)](x, untouched, 20, BLOCK=16, SQUARE=False, num_warps=2)
    assert not untouched.any()


def test_a_real_launcher_kernel_refuses_an_undeclared_block(device):
    from render3d.kernels import volume_rendering

    values = torch.zeros(4, device=device)
    rays = torch.zeros(1, dtype=torch.int64, device=device)
    with pytest.raises(UndeclaredVariantError, match="volume_rendering._forward_kernel"):
        volume_rendering._forward_kernel[(1,)](values, values, values, values, rays, rays,
                                               values, values, values, values, BLOCK=32)


def test_a_declaration_names_every_parameter_exactly_once():
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(x_ptr, n, BLOCK: tl.constexpr):
        pass

    with pytest.raises(TypeError, match="types misses parameter"):
        declare(types={"x_ptr": "*fp32"}, constexprs=[{"BLOCK": 16}])(kernel)
    with pytest.raises(TypeError, match="'BLOCK', which is not a non-constexpr parameter"):
        declare(types={"x_ptr n BLOCK": "*fp32"}, constexprs=[{"BLOCK": 16}])(kernel)
    with pytest.raises(TypeError, match="twice"):
        declare(types={"x_ptr": "*fp32", "x_ptr n": "i32"}, constexprs=[{"BLOCK": 16}])(kernel)
    with pytest.raises(TypeError, match="must name exactly"):
        declare(types={"x_ptr": "*fp32", "n": "i32"}, constexprs=[{"BLOCK": 16, "EXTRA": 1}])(kernel)
    declared = declare(types={"x_ptr": ["*fp32", "*fp64"], "n": "i32"}, constexprs=[{"BLOCK": 16}])(kernel)
    assert [declared.label(v) for v in declared.variants] == ["x_ptr:*fp32", "x_ptr:*fp64"]


def test_every_kernel_module_declares_its_kernels():
    modules = kernel_modules()
    jobs, problems = plan(modules, [90])
    assert problems == []
    assert {job.module for job in jobs} == set(modules)


def test_architectures_are_checked(capsys):
    assert parse_archs("80,90") == [80, 90]
    with pytest.raises(ConfigError, match="--arch"):
        parse_archs("75")
    assert main(["check-kernels", "--arch", "eighty"]) == 2
    assert "render3d check-kernels: error: --arch" in capsys.readouterr().err
