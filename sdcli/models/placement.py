"""Carrying a runtime plan (models.runtime) out on a loaded model: placement, memory layout, the attention
backend, VAE slicing/tiling, compilation. Imports torch inside."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdcli.errors import UsageError
from sdcli.models.loaded import LoadedModel
from sdcli.models.runtime import Fit, RuntimePlan, fit_memory, free_memory, network_working_bytes, plan_offload


def apply_plan(model: LoadedModel, plan: RuntimePlan) -> Fit:
    """Carry out `plan` on a freshly loaded model (on CPU); return the memory decisions taken (also kept as
    `model.runtime`).

    Order matters: placement first (offload hooks or .to), then memory layout, then the
    one attention processor (fused QKV, xformers or slicing: the planner allows one),
    then VAE slicing/tiling, compilation last (it traces what the steps above set up).
    """
    import torch

    pipe, network = model.pipe, model.family.network_module(model.pipe)
    # 1. Matmul precision and placement ("auto": from the parts' sizes and the free VRAM, models.runtime).
    reasons: tuple[str, ...] = ()
    if plan.cpu_offload == "auto":
        free = free_memory(plan.device)
        if free is not None:  # what is on the GPU already (bitsandbytes loads its parts there) counts as free
            free += resident_bytes(pipe, plan.device)
        offload, why = plan_offload(part_bytes(pipe), network=model.family.network_component, free_bytes=free,
                                    working=working_bytes(model, plan), compile=plan.compile)
        plan, reasons = replace(plan, cpu_offload=offload), (why,) if offload != "none" else ()
    if plan.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if plan.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=plan.device)
    elif plan.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=plan.device)
    else:
        pipe.to(plan.device)
    if plan.channels_last:
        network.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)

    # 2. Memory decisions for the job's size, with the weights in place.
    native = model.native_size
    fit = fit_memory(plan, width=plan.job.width or native, height=plan.job.height or native,
                     free_bytes=free_memory(plan.device),
                     vae_upcast=bool(getattr(pipe.vae.config, "force_upcast", False)))

    # 3. Exactly one attention processor.
    if plan.fuse_qkv:
        if not model.family.capabilities.fuse_qkv:  # diffusers fuses the UNet pipelines' attention only
            raise UsageError(f"--fuse-qkv: diffusers fuses the attention projections of SD 1.x/2.x/SDXL UNets "
                             f"only; leave it out for this {model.family.name} model")
        pipe.fuse_qkv_projections()
    elif plan.attention == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
        except (NotImplementedError, RuntimeError, ValueError) as exc:  # installed, but no kernel for this torch/GPU
            reason = next((line.strip() for line in str(exc).splitlines() if "not supported because" in line
                           or "wasn't build" in line), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise UsageError(f"--xformers: xformers is installed but cannot run here ({reason}); "
                             "install the xformers build for this torch, or leave --xformers out (SDPA)") from None
    elif fit.attention_slicing:
        pipe.enable_attention_slicing()

    # 4. The VAE decodes one image at a time, always: pixels independent of the batch size.
    pipe.vae.enable_slicing()
    if fit.vae_tiling:
        pipe.vae.enable_tiling()

    # 5. Compilation (CUDA only, see plan_runtime): the denoising network, and the VAE decoder, whose
    #    convolutions at full resolution are the other large cost of an image.
    if plan.compile:
        network.compile(fullgraph=False)
        pipe.vae.decoder.compile(fullgraph=False)
    model.runtime = replace(plan, attention_slicing=fit.attention_slicing, vae_tiling=fit.vae_tiling)
    return replace(fit, reasons=reasons + fit.reasons)


def part_bytes(pipe: Any) -> dict[str, int]:
    """Bytes of each torch module of a pipeline (weights and buffers as loaded: the compute dtype, or the
    stored one of quantized layers: stored_bytes)."""
    import torch

    return {name: sum(stored_bytes(t) for t in (*part.parameters(), *part.buffers()))
            for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}


def stored_bytes(tensor: Any) -> int:
    """Bytes a weight takes in memory: a tensor subclass (torchao's Float8Tensor, whose dtype is the compute
    dtype) by the tensors it holds; bitsandbytes' 4-bit weights with their blocks' scales (quant_state)."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        return sum(stored_bytes(getattr(tensor, name)) for name in flatten()[0])
    scales = getattr(getattr(tensor, "quant_state", None), "absmax", None)
    return tensor.numel() * tensor.element_size() + (stored_bytes(scales) if scales is not None else 0)


def resident_bytes(pipe: Any, device: str) -> int:
    """Bytes of a pipeline's weights and buffers on `device` already: a quantized part that bitsandbytes loaded
    straight onto the GPU, which the free memory the offload plan reads no longer holds while part_bytes counts it."""
    import torch

    where = torch.device(device)
    return sum(stored_bytes(t) for part in pipe.components.values() if isinstance(part, torch.nn.Module)
               for t in (*part.parameters(), *part.buffers())
               if t.device.type == where.type and where.index in (None, t.device.index))


def working_bytes(model: LoadedModel, plan: RuntimePlan) -> int:
    """One denoising step's working memory at the job's size (transformers: by tokens; UNets: small)."""
    native = model.native_size
    width, height = plan.job.width or native, plan.job.height or native
    side, config = model.family.token_pixels(), model.family.network_module(model.pipe).config
    tokens = (width // side) * (height // side) + 512
    hidden = int(getattr(config, "dim", 0)) or (  # Z-Image's config names its width
        int(getattr(config, "num_attention_heads", 8)) * int(getattr(config, "attention_head_dim", 64)))
    return network_working_bytes(tokens, hidden, plan.job.batch, 4 if plan.dtype == "fp32" else 2)
