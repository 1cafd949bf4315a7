"""The bench's statistics: verdicts follow the spread, interleaving alternates the order."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from stats import compare, interleave, summary  # noqa: E402


def test_summary():
    assert summary([3.0, 1.0, 2.0]) == {"n": 3, "min": 1.0, "median": 2.0, "max": 3.0}


def test_clear_effect_and_inconclusive():
    fast = compare([1.0, 1.02, 0.98, 1.01, 0.99], [2.0, 2.0, 2.0, 2.0, 2.0], target=0.95)
    assert fast["ratio"] == 0.5 and fast["verdict"] == "a faster" and fast["target_verdict"] == "met"
    noisy = compare([1.0, 1.4], [1.3, 1.0], target=0.95)  # paired ratios 0.77 and 1.4: spread > effect
    assert noisy["verdict"] == "inconclusive" and noisy["target_verdict"] == "inconclusive"
    slow = compare([1.2, 1.21, 1.19], [1.0, 1.0, 1.0], target=1.05)
    assert slow["verdict"] == "a slower" and slow["target_verdict"] == "not met"


def test_interleave_warms_up_and_alternates():
    order = []
    paths = {"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 2.0}
    times = interleave(paths, repeat=3, warmup=1)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_same_work_steps_gives_diffusers_the_webuis_step_count():
    """The hand-written img2img loop runs as many UNet steps as the WebUI-exact one (int(strength x steps) + 1)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline
    from steady import same_work_steps

    for steps, strength in ((20, 0.75), (4, 0.75), (30, 0.75), (20, 0.5), (10, 0.3)):
        n = same_work_steps(steps, strength)
        scheduler = DPMSolverMultistepScheduler(use_karras_sigmas=True)
        scheduler.set_timesteps(n)
        holder = type("P", (), {"scheduler": scheduler})()
        timesteps, run = StableDiffusionImg2ImgPipeline.get_timesteps(holder, n, strength, "cpu")
        assert run == len(timesteps) == int(strength * steps) + 1, (steps, strength, n)
    assert same_work_steps(20, 0.75) != 20  # diffusers at the same num_inference_steps runs one step fewer
