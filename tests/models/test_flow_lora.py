"""LoRAs on the transformer-only flow families (Chroma, Qwen-Image: FluxDerivedFamily.load_lora, the
pipeline's own diffusers loader): a PEFT file applies, weight 0 gives the base pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "1")


def _lora(folder, path):
    from diffusers import ChromaTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    transformer = ChromaTransformer2DModel.from_pretrained(folder / "transformer")
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"],
                                       init_lora_weights="gaussian"))
    import torch

    generator = torch.Generator().manual_seed(0)  # peft starts lora_B at zero: give it weights that do something
    state = {k: torch.randn(v.shape, generator=generator) * 0.5
             for k, v in get_peft_model_state_dict(transformer).items()}
    save_file({"transformer." + k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _pixels(cli, out, *args):
    result = cli("txt2img", *RUN, "-o", out, *args, "a cat")
    assert result.exit_code == 0, result.stderr
    return np.asarray(Image.open(next(out.glob("*.png"))), dtype=np.int16)


def test_a_chroma_lora_applies_and_weight_0_is_the_base(cli, tiny_chroma, tmp_path):
    lora = _lora(tiny_chroma, tmp_path / "style.safetensors")
    base = _pixels(cli, tmp_path / "base", "-m", tiny_chroma)
    assert np.array_equal(base, _pixels(cli, tmp_path / "zero", "-m", tiny_chroma, "--lora", f"{lora}:0"))
    assert not np.array_equal(base, _pixels(cli, tmp_path / "one", "-m", tiny_chroma, "--lora", f"{lora}:1"))
