"""sdcli's own API field for Flux.2 dev's caption upsampling: upsample_prompt reaches the request (unset: off), an
edit's (/sdcli/v1/edit) too."""

from sdcli.server.schemas import EditRequest, Txt2ImgRequest, edit_request, txt2img_request

TXT = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32}


def test_upsample_prompt_arrives_in_the_request():
    assert txt2img_request(Txt2ImgRequest(**TXT), {}).upsample_prompt is None
    assert txt2img_request(Txt2ImgRequest(**TXT, upsample_prompt=0.15), {}).upsample_prompt == 0.15
    edit = edit_request(EditRequest(prompt="make it blue", upsample_prompt=0.15), {}, ("ref.png",))
    assert (edit.mode, edit.references, edit.upsample_prompt) == ("edit", ("ref.png",), 0.15)
