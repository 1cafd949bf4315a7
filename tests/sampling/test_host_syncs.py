"""Device -> host reads per sampling step: sdcli's loop does no more of them than diffusers' pipeline call.

On a GPU every read of a tensor's value by the host (`.item()`, `bool()`/`float()`/`int()` of a tensor,
`.tolist()`, `.numpy()`, `.cpu()`) and every op whose output size depends on tensor values
(`nonzero`, boolean masks, `linalg.solve`'s error check) waits for the device's queue to drain. On the
CPU nothing waits, but the same calls happen, so they are counted here: at the torch-function level
(the Python-side reads) and at the dispatch level (the aten ops that read a value, also those made from
C++). Every read counts, whether its tensor would sit on the device or the host: an upper bound
of the GPU's syncs, measured the same way on both sides. Per step = (count at 2N steps - count at N
steps) / N: loading, prompt encoding and decoding cancel out.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate

# Python-side reads that do not reach the dispatcher on a CPU tensor (item/bool/float/int do: below).
_FUNCTION_READS = {torch.Tensor.tolist: "tolist", torch.Tensor.numpy: "numpy", torch.Tensor.cpu: "cpu",
                   torch.Tensor.__array__: "__array__"}
# aten ops that read a value back to the host (item, bool, float, int, C++ checks) or size their output by
# the values (a GPU sync each).
_DISPATCH_READS = ("_local_scalar_dense", "nonzero", "masked_select", "_linalg_check_errors", "unique",
                   "repeat_interleave", "equal", "is_nonzero")


class HostReads:
    """Counts host reads of tensor values while active (a `with` block), by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        outer = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func in _FUNCTION_READS:
                    outer.counts[_FUNCTION_READS[func]] += 1
                return func(*args, **(kwargs or {}))

        class Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.overloadpacket.__name__
                if name in _DISPATCH_READS or (name == "index" and any(
                        t is not None and t.dtype == torch.bool for t in args[1])):
                    outer.counts[name if name != "index" else "boolean index"] += 1
                return func(*args, **(kwargs or {}))

        self._modes = (Functions(), Dispatch())

    def synchronize(self, *_args, **_kwargs) -> None:
        self.counts["cuda.synchronize"] += 1

    def __enter__(self) -> HostReads:
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(torch.cuda, "synchronize", self.synchronize)
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        self._patch.undo()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def per_step(generate, steps: int) -> tuple[float, Counter[str]]:
    """Host reads per step of `generate(steps)`: (count(2 steps) - count(steps)) / steps, and the extra reads."""
    with HostReads() as short:
        generate(steps)
    with HostReads() as long:
        generate(2 * steps)
    return (long.total - short.total) / steps, long.counts - short.counts


def sdcli_run(model, sampler: str, steps: int, **fields) -> None:
    request = GenerationRequest(**{"prompt": "a lighthouse", "steps": steps, "seed": 1, "width": 32, "height": 32,
                                   "sampler": sampler, **fields})
    for _ in run(request, model, validate(request), model_name="t", model_hash="0"):
        pass


def pipeline_run(model, sampler: str, steps: int) -> None:
    """The diffusers pipeline call a user writes, with sdcli's choice of diffusers scheduler for `sampler`."""
    from sdcli.models.loader import set_sampler
    from sdcli.sampling.samplers import resolve_sampler

    scheduler = model.pipe.scheduler
    set_sampler(model, resolve_sampler(sampler, "automatic"))
    model.pipe.set_progress_bar_config(disable=True)
    try:
        model.pipe("a lighthouse", num_inference_steps=steps, width=32, height=32, output_type="np",
                   generator=torch.Generator().manual_seed(1))
    finally:
        model.pipe.scheduler = scheduler


LOOP_SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DDIM", "UniPC", "LCM"]


@pytest.mark.parametrize("sampler", LOOP_SAMPLERS)
def test_sd1_loop_reads_no_more_per_step_than_the_pipeline(tiny_pipe, single_thread, sampler):
    ours, ours_by_kind = per_step(lambda n: sdcli_run(tiny_pipe, sampler, n), 4)
    theirs, theirs_by_kind = per_step(lambda n: pipeline_run(tiny_pipe, sampler, n), 4)
    assert ours <= theirs, f"{sampler}: sdcli {ours}/step {dict(ours_by_kind)}, diffusers {theirs} {theirs_by_kind}"
    assert ours == 0, f"{sampler}: {dict(ours_by_kind)}"


def test_flow_loop_with_euler_reads_no_more_per_step_than_the_pipeline(tiny_flux, tiny_flux_pipe, single_thread):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_flux["flux-dev"], local_files_only=True)  # its own Euler (flow)
    pipe.set_progress_bar_config(disable=True)
    pipe.tokenizer_max_length = 77  # the tiny CLIP tokenizer names no length (sdcli's encoder knows CLIP's)

    def pipeline(steps: int) -> None:
        pipe("a lighthouse", height=32, width=32, num_inference_steps=steps, max_sequence_length=16,
             generator=torch.Generator().manual_seed(1), output_type="np")

    ours, ours_by_kind = per_step(lambda n: sdcli_run(tiny_flux_pipe, "Euler", n), 2)
    theirs, theirs_by_kind = per_step(pipeline, 2)
    assert ours <= theirs, f"sdcli {ours}/step {dict(ours_by_kind)}, diffusers {theirs} {dict(theirs_by_kind)}"
    assert ours == 0, dict(ours_by_kind)


def test_the_count_sees_a_read_per_step(tiny_pipe, single_thread, monkeypatch):
    """The counter is not blind: one `float(sigma)` per step in the loop shows as one read per step."""
    from sdcli.sampling import kdiffusion

    to_d = kdiffusion.to_d
    monkeypatch.setattr(kdiffusion, "to_d", lambda x, sigma, denoised: to_d(x, sigma + 0 * float(sigma), denoised))
    ours, by_kind = per_step(lambda n: sdcli_run(tiny_pipe, "Euler", n), 2)
    assert ours == 1 and by_kind == {"_local_scalar_dense": 2}
