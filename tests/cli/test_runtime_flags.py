"""Runtime flags through the real CLI on CPU: each works or is refused with a reason."""

import pytest


@pytest.mark.parametrize("flag, message", [
    (("--compile",), "--compile: torch.compile is offered for CUDA only"),
    (("--tf32",), "--tf32: TF32 is a matmul mode"),
    (("--cpu-offload", "model"), "--cpu-offload: it moves weights between a CUDA GPU"),
    (("--vae-tiling", "maybe"), "--vae-tiling: unknown value 'maybe'"),
])
def test_cli_refuses_gpu_only_options_on_cpu_before_loading(cli, tiny_model, tmp_path, flag, message):
    result = cli("txt2img", "x", "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32", "-o", tmp_path, *flag)
    assert result.exit_code == 2
    assert message in result.stderr and not list(tmp_path.glob("*.png"))


def test_cli_runs_with_cpu_speed_options(cli, tiny_model, tmp_path):
    result = cli("txt2img", "x", "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32", "-o", tmp_path,
                 "--channels-last", "--fuse-qkv", "--vae-tiling", "on", "--attention-slicing", "off", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(list(tmp_path.glob("*.png"))) == 1
