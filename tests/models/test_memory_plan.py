"""--cpu-offload auto on CUDA (models.runtime.plan_offload): the Flux memory table in README.md is what the
planner decides for a Flux.1 dev job (parameter counts of the published model; bf16 = 2 bytes) on each card,
and the rule itself (resident / model offload / sequential offload) at its edges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdcli.models.runtime import GIB, RuntimeOptions, network_working_bytes, plan_offload, plan_runtime

# Parameters of Flux.1 dev as published (counted from the bundled configs: tests/models/test_flux_bundle.py).
FLUX_DEV_PARAMS = {"transformer": 11_901_408_320, "text_encoder_2": 4_762_310_656, "text_encoder": 123_060_480,
                   "vae": 83_819_683}
CONTEXT = int(0.6 * GIB)  # what the CUDA context and the driver keep on a card
README = Path(__file__).resolve().parents[2] / "README.md"


def flux_plan(card_gib: int, transformer_bytes: float = 2.0, side: int = 1024) -> str:
    parts = {k: int(v * (transformer_bytes if k == "transformer" else 2)) for k, v in FLUX_DEV_PARAMS.items()}
    tokens = (side // 16) ** 2 + 512
    working = network_working_bytes(tokens, 3072, 1, 2)
    return plan_offload(parts, network="transformer", free_bytes=card_gib * GIB - CONTEXT, working=working)[0]


def test_readme_table_is_the_planners():
    rows = re.findall(r"^\| (\d+) GB \| (\w+) \| (\w+) \| (\w+) \|", README.read_text(encoding="utf-8"), re.M)
    assert [int(r[0]) for r in rows] == [80, 24, 16, 12, 8]
    for card, bf16, q8, q4 in rows:
        # bf16 weights; a Q8_0 GGUF transformer (~8.5 bits a weight); a Q4_0 one (~4.5 bits)
        assert (bf16, q8, q4) == (flux_plan(int(card)), flux_plan(int(card), 8.5 / 8), flux_plan(int(card), 4.5 / 8))


def test_rule_edges():
    parts = {"transformer": 10 * GIB, "text_encoder_2": 5 * GIB}
    assert plan_offload(parts, network="transformer", free_bytes=None, working=GIB)[0] == "none"
    assert plan_offload(parts, network="transformer", free_bytes=int(16 * GIB / 0.9) + 1, working=GIB)[0] == "none"
    assert plan_offload(parts, network="transformer", free_bytes=int(16 * GIB / 0.9) - GIB, working=GIB)[0] == "model"
    assert plan_offload(parts, network="transformer", free_bytes=int(11 * GIB / 0.9) - GIB, working=GIB)[0] \
        == "sequential"
    # --compile cannot trace sequential offload: model offload is the most it picks
    assert plan_offload(parts, network="transformer", free_bytes=4 * GIB, working=GIB, compile=True)[0] == "model"


@pytest.mark.parametrize("device,expected", [("cpu", "none"), ("cuda", "auto")])
def test_auto_is_decided_on_cuda_only(device, expected):
    plan = plan_runtime(RuntimeOptions(device=device, cpu_offload="auto"), cuda=True, mps=False, xformers=False,
                        gpu_dtype="bf16")
    assert plan.cpu_offload == expected and plan.dtype == ("bf16" if device == "cuda" else "fp32")
