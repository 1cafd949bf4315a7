"""Runtime plan (pure, GPU decisions tested on CPU) and its application to a real tiny pipeline."""

from dataclasses import replace

import numpy as np
import pytest

from sdcli.errors import UsageError
from sdcli.models.runtime import (
    JobSize,
    RuntimeOptions,
    fit_memory,
    plan_runtime,
    score_matrix_bytes,
    vae_decode_bytes,
)

CPU = dict(cuda=False, mps=False, xformers=False)
CUDA = dict(cuda=True, mps=False, xformers=False)
CUDA_XF = dict(cuda=True, mps=False, xformers=True)
MPS = dict(cuda=False, mps=True, xformers=False)
GIB = 1 << 30


@pytest.mark.parametrize("opts, machine, expected", [
    (RuntimeOptions(), CUDA, ("cuda", "fp16", "auto", "sdpa", "auto")),
    (RuntimeOptions(), CPU, ("cpu", "fp32", "auto", "sdpa", "auto")),
    (RuntimeOptions(), MPS, ("mps", "fp32", "auto", "sdpa", "auto")),
    (RuntimeOptions(dtype="bf16", attention_slicing="off", vae_tiling="on"), CUDA_XF,
     ("cuda", "bf16", False, "sdpa", True)),
    (RuntimeOptions(xformers=True), CUDA_XF, ("cuda", "fp16", "auto", "xformers", "auto")),
    (RuntimeOptions(device="cpu", attention_slicing="on"), CUDA, ("cpu", "fp32", True, "sdpa", "auto")),
])
def test_runtime_plan(opts, machine, expected):
    plan = plan_runtime(opts, **machine)
    assert (plan.device, plan.dtype, plan.attention_slicing, plan.attention, plan.vae_tiling) == expected


def test_cuda_default_is_fp16_sdpa_without_slicing_even_when_memory_is_short():
    # SDPA never holds the score matrix: slicing would only swap in a slower processor.
    plan = plan_runtime(RuntimeOptions(), **CUDA, job=JobSize(1024, 1024, 4))
    fit = fit_memory(plan, width=1024, height=1024, free_bytes=GIB)
    assert plan.dtype == "fp16" and plan.attention == "sdpa" and not fit.attention_slicing


@pytest.mark.parametrize("size, free, tiled", [
    (512, 20 * GIB, False),   # 512 px decode ~0.75 GiB: fits easily
    (1024, 20 * GIB, False),
    (1024, 2 * GIB, True),    # ~3 GiB decode > 80% of 2 GiB
    (2048, 8 * GIB, True),
    (2048, None, False),      # free memory unknown: never guess "on"
])
def test_vae_tiling_auto_follows_free_memory_and_size(size, free, tiled):
    plan = plan_runtime(RuntimeOptions(), **CUDA)
    fit = fit_memory(plan, width=size, height=size, free_bytes=free)
    assert fit.vae_tiling is tiled
    assert bool(fit.reasons) is tiled
    assert (vae_decode_bytes(size, size, 2) > 0.8 * free) is tiled if free else True


def test_vae_tiling_counts_an_upcast_vae_in_fp32():
    plan = plan_runtime(RuntimeOptions(), **CUDA)
    free = 5 * GIB  # 1024 px: ~3 GiB in fp16 fits, ~6 GiB in fp32 does not
    assert not fit_memory(plan, width=1024, height=1024, free_bytes=free).vae_tiling
    assert fit_memory(plan, width=1024, height=1024, free_bytes=free, vae_upcast=True).vae_tiling


def test_attention_slicing_auto_on_mps_only_when_scores_do_not_fit():
    plan = plan_runtime(RuntimeOptions(), **MPS, job=JobSize(batch=4))
    need = score_matrix_bytes(1024, 1024, 4, 4)
    assert fit_memory(plan, width=1024, height=1024, free_bytes=need).attention_slicing
    assert not fit_memory(plan, width=1024, height=1024, free_bytes=4 * need).attention_slicing
    assert not fit_memory(plan, width=1024, height=1024, free_bytes=None).attention_slicing


def test_forced_switches_win_over_memory():
    plan = plan_runtime(RuntimeOptions(attention_slicing="on", vae_tiling="off"), **CUDA)
    fit = fit_memory(plan, width=4096, height=4096, free_bytes=GIB)
    assert fit.attention_slicing and not fit.vae_tiling and fit.reasons == ()


@pytest.mark.parametrize("opts, machine, message", [
    (RuntimeOptions(device="cuda"), CPU, "--device: cuda"),
    (RuntimeOptions(dtype="fp16"), CPU, "--dtype: fp16 is not supported on CPU"),
    (RuntimeOptions(xformers=True), CUDA, "--xformers: xformers is not installed"),
    (RuntimeOptions(xformers=True), {**CPU, "xformers": True}, "--xformers: xformers needs --device cuda"),
    (RuntimeOptions(xformers=True, attention_slicing="on"), CUDA_XF, "--attention-slicing on: both it and --xformers"),
    (RuntimeOptions(fuse_qkv=True, xformers=True), CUDA_XF, "--fuse-qkv: .* --xformers would replace"),
    (RuntimeOptions(fuse_qkv=True, attention_slicing="on"), CPU, "--fuse-qkv: .* --attention-slicing on"),
    (RuntimeOptions(compile=True, cpu_offload="sequential"), CUDA, "--compile: sequential CPU offload"),
    (RuntimeOptions(compile=True), CPU, "--compile: torch.compile is offered for CUDA only"),
    (RuntimeOptions(tf32=True), CPU, "--tf32: TF32 is a matmul mode of NVIDIA"),
    (RuntimeOptions(cpu_offload="model"), CPU, "--cpu-offload: it moves weights between a CUDA GPU"),
    (RuntimeOptions(cpu_offload="all"), CUDA, "--cpu-offload: unknown value 'all'"),
    (RuntimeOptions(vae_tiling="yes"), CPU, "--vae-tiling: unknown value 'yes'"),
])
def test_runtime_plan_refusals(opts, machine, message):
    with pytest.raises(UsageError, match=message):
        plan_runtime(opts, **machine)


@pytest.mark.parametrize("opts", [
    RuntimeOptions(compile=True, channels_last=True, tf32=True, fuse_qkv=True, cpu_offload="model"),
    RuntimeOptions(cpu_offload="sequential", vae_tiling="on"),
])
def test_gpu_speedups_are_planned_on_cuda(opts):
    plan = plan_runtime(opts, **CUDA)
    assert (plan.compile, plan.channels_last, plan.tf32, plan.fuse_qkv, plan.cpu_offload) == (
        opts.compile, opts.channels_last, opts.tf32, opts.fuse_qkv, opts.cpu_offload)


# -- applied to a real tiny pipeline on CPU ---------------------------------------------------

def _fresh_pipe(tiny_model, **options):
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef

    plan = plan_runtime(RuntimeOptions(**options), **CPU, job=JobSize(32, 32))
    return load_model(ModelRef(tiny_model, tiny_model.name), plan)


def _processors(pipe):
    return {type(p).__name__ for p in pipe.pipe.unet.attn_processors.values()}


def _pixels(pipe):
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, validate

    request = GenerationRequest(prompt="a lighthouse", steps=2, seed=3, width=32, height=32)
    return np.asarray(next(run(request, pipe, validate(request), model_name="t", model_hash="0" * 10)).image,
                      dtype=np.int16)


def test_cpu_default_keeps_sdpa_and_slices_the_vae_only(tiny_pipe):
    assert _processors(tiny_pipe) == {"AttnProcessor2_0"}
    assert tiny_pipe.pipe.vae.use_slicing and not tiny_pipe.pipe.vae.use_tiling
    assert tiny_pipe.runtime.attention_slicing is False and tiny_pipe.runtime.vae_tiling is False


@pytest.mark.parametrize("options, processor", [
    (dict(attention_slicing="on"), "SlicedAttnProcessor"),
    (dict(fuse_qkv=True), "FusedAttnProcessor2_0"),
    (dict(channels_last=True, vae_tiling="on"), "AttnProcessor2_0"),
])
def test_cpu_options_work_and_keep_the_picture(tiny_model, tiny_pipe, single_thread, options, processor):
    import torch

    pipe = _fresh_pipe(tiny_model, **options)
    assert _processors(pipe) == {processor}
    if options.get("channels_last"):
        weight = next(p for p in pipe.pipe.unet.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert pipe.pipe.vae.use_tiling
    # Same maths, other kernels: pixels within float noise of the default pipeline's.
    assert np.abs(_pixels(pipe) - _pixels(tiny_pipe)).max() <= 2


def test_xformers_is_not_replaced_by_slicing(tiny_model, monkeypatch):
    """--xformers must end with xformers installed, whatever slicing says (the old order lost it)."""
    from diffusers import StableDiffusionPipeline

    from sdcli.models.placement import apply_plan

    calls = []
    monkeypatch.setattr(StableDiffusionPipeline, "enable_xformers_memory_efficient_attention",
                        lambda self: calls.append("xformers"))
    monkeypatch.setattr(StableDiffusionPipeline, "enable_attention_slicing", lambda self: calls.append("slicing"))
    pipe = _fresh_pipe(tiny_model)
    plan = replace(plan_runtime(RuntimeOptions(), **CPU), attention="xformers", attention_slicing=True)
    apply_plan(pipe, plan)
    assert calls == ["xformers"]


def test_xformers_installed_without_kernels_is_one_line(tiny_model, monkeypatch):
    """Seen on an H100 with torch 2.11: PyPI's xformers (built for torch 2.10) has no kernel; one line, exit 2."""
    from diffusers import StableDiffusionPipeline

    from sdcli.errors import UsageError
    from sdcli.models.placement import apply_plan

    def no_kernel(self):
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward` with inputs:\n"
                                  "`cutlassF-pt` is not supported because:\n"
                                  "    xFormers wasn't build with CUDA support")

    monkeypatch.setattr(StableDiffusionPipeline, "enable_xformers_memory_efficient_attention", no_kernel)
    plan = replace(plan_runtime(RuntimeOptions(), **CPU), attention="xformers")
    with pytest.raises(UsageError, match=r"^--xformers: xformers is installed but cannot run here "
                                         r"\(`cutlassF-pt` is not supported because:\)") as caught:
        apply_plan(_fresh_pipe(tiny_model), plan)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
