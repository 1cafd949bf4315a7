"""sdcli's own API field for Flux.2 dev's caption upsampling: upsample_prompt reaches the request (unset: off)."""

from sdcli.server.schemas import Txt2ImgRequest, txt2img_request

TXT = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32}


def test_upsample_prompt_arrives_in_the_request():
    assert txt2img_request(Txt2ImgRequest(**TXT, upsample_prompt=0.15), {}).upsample_prompt == 0.15
    assert txt2img_request(Txt2ImgRequest(**TXT), {}).upsample_prompt is None
