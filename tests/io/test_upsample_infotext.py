"""An infotext with Flux.2 dev's caption upsampling: `Prompt upsampling` is the setting replay takes back,
`Upsampled prompt` is the rewrite the seed writes again (not a setting, not reported as ignored)."""

from pathlib import Path

from sdcli.io.metadata import build_infotext
from sdcli.io.replay import ImageMetadata, request_from_infotext


def test_prompt_upsampling_is_read_back_and_the_rewrite_is_informational():
    params = {"Steps": 2, "Sampler": "Euler", "Seed": 3, "Size": "32x32", "Prompt upsampling": "0.15",
              "Upsampled prompt": "a cat, sitting: on a mat", "Version": "sdcli"}
    infotext = build_infotext("a cat", "", params)
    meta = ImageMetadata(Path("x.png"), "", "", {}, infotext, None)
    request, ignored, given = request_from_infotext(meta)
    assert request.upsample_prompt == 0.15 and "upsample_prompt" in given
    assert request.prompt == "a cat" and ignored == []
