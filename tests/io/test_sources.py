"""io.sources: every tool's metadata, written as that tool writes it (tests/io/tool_images.py), read into the
WebUI's keys; broken metadata is one line naming what is wrong."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from sdcli.errors import UsageError
from sdcli.io.replay import read_metadata
from tests.io import tool_images as t

WEBUI = ("a cat\nNegative prompt: dog\n"
         "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 5, Size: 64x48")


def test_comfyui_api_graph(tmp_path):
    graph = t.comfy_api(seed=42, steps=3, cfg=5.0, sampler="dpmpp_2m", scheduler="karras", width=64, height=48)
    meta = read_metadata(t.comfy_png(tmp_path / "c.png", graph))
    assert (meta.generator, meta.prompt, meta.negative_prompt) == ("ComfyUI", "a red fox", "blurry")
    assert meta.parameters == {"Steps": "3", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "5",
                               "Seed": "42", "Size": "64x48", "Model": "tiny", "RNG": "Comfy", "Emphasis": "Comfy"}
    assert meta.source == {"prompt": graph} and meta.unmapped == ()
    assert meta.infotext.splitlines()[-1].startswith("Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras")


def test_comfyui_ui_workflow_alone(tmp_path):
    meta = read_metadata(t.comfy_png(tmp_path / "w.png", workflow=t.comfy_workflow()))
    assert (meta.prompt, meta.negative_prompt) == ("a lighthouse", "fog")
    assert meta.parameters == {"Steps": "4", "Sampler": "Euler a", "Schedule type": "Karras", "CFG scale": "6.5",
                               "Seed": "7", "Size": "512x768", "Model": "model", "RNG": "Comfy", "Emphasis": "Comfy"}
    assert meta.unmapped == ()  # its Note node is the UI's own


def test_comfyui_flux_graph_with_loras_clip_skip_and_guidance(tmp_path):
    graph = t.comfy_api(extra={
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/ink.safetensors", "strength_model": 0.7,
                                                      "strength_clip": 0.7, "model": ["4", 0], "clip": ["4", 1]}},
        "11": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]}},
        "12": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
        "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3.0, "model": ["10", 0]}},
        "14": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    })
    graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["11", 0]
    graph["3"]["inputs"].update(model=["13", 0], positive=["12", 0])
    graph["8"]["inputs"]["vae"] = ["14", 0]
    meta = read_metadata(t.comfy_png(tmp_path / "f.png", graph))
    assert meta.prompt == "a red fox, <lora:ink:0.7>"
    p = meta.parameters
    assert (p["Clip skip"], p["Distilled CFG Scale"], p["Shift"], p["VAE"]) == ("2", "3.5", "3", "ae.safetensors")
    assert meta.unmapped == ()


def test_comfyui_graph_with_other_nodes_lists_them(tmp_path):
    graph = t.comfy_api(extra={"20": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x4.pth"}},
                               "21": {"class_type": "ImageUpscaleWithModel", "inputs": {}}})
    meta = read_metadata(t.comfy_png(tmp_path / "u.png", graph))
    assert meta.parameters["Seed"] == "42"  # still read
    assert meta.unmapped == ("nodes ImageUpscaleWithModel, UpscaleModelLoader",)


def test_invokeai_three_formats(tmp_path):
    new = read_metadata(t.png(tmp_path / "i.png", {"invokeai_metadata": json.dumps(t.INVOKEAI_META)}))
    assert (new.generator, new.prompt, new.negative_prompt) == ("InvokeAI", "a tabby cat, <lora:add_detail:0.6>", "dog")
    assert new.parameters == {"Steps": "30", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7.5",
                              "Seed": "1234", "Size": "512x640", "Model": "Deliberate v2", "RNG": "CPU"}
    skipped = read_metadata(t.png(tmp_path / "k.png", {"invokeai_metadata": json.dumps({**t.INVOKEAI_META,
                                                                                        "clip_skip": 1})}))
    assert skipped.parameters["Clip skip"] == "2"  # InvokeAI counts the layers skipped, the WebUI the layer used
    legacy = read_metadata(t.png(tmp_path / "s.png", {"sd-metadata": json.dumps(t.SD_METADATA)}))
    assert (legacy.prompt, legacy.negative_prompt) == ("a cottage", "ugly, blurry")
    assert (legacy.parameters["Sampler"], legacy.parameters["Seed"], legacy.parameters["Model"]) == (
        "Euler a", "99", "stable-diffusion-1.5")
    dream = read_metadata(t.png(tmp_path / "d.png", {"Dream": t.DREAM}))
    assert (dream.prompt, dream.parameters["Sampler"], dream.parameters["Steps"]) == ("a cottage", "LMS", "25")


def test_novelai_in_chunks_and_in_stealth_alpha(tmp_path):
    expected = {"Steps": "28", "Sampler": "Euler a", "Schedule type": "Karras", "CFG scale": "5", "Seed": "3123",
                "Size": "1216x832", "Model": "NovelAI Diffusion V3 C1E1DE52"}
    chunks = read_metadata(t.png(tmp_path / "n.png", t.novelai_chunks()))
    hidden = read_metadata(t.stealth_png(tmp_path / "h.png", json.dumps(t.novelai_chunks()), size=128))
    for meta in (chunks, hidden):
        assert (meta.generator, meta.prompt, meta.negative_prompt) == ("NovelAI", "1girl, masterpiece",
                                                                       "lowres, bad anatomy")
        assert meta.parameters == expected and meta.source["Comment"]["sampler"] == "k_euler_ancestral"
    odd = read_metadata(t.png(tmp_path / "o.png", t.novelai_chunks(sampler="nai_smea", schedule="native")))
    assert odd.unmapped == ("sampler 'nai_smea'",) and "Schedule type" not in odd.parameters


def test_fooocus_png_and_jpeg(tmp_path):
    text = json.dumps(t.FOOOCUS)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = text  # Fooocus writes the JSON as the UserComment's text
    exif[0x0131], exif[0x927C] = "Fooocus v2.5.5", "fooocus"
    Image.new("RGB", (16, 16)).save(tmp_path / "f.jpg", exif=exif)
    for path in (t.png(tmp_path / "f.png", {"parameters": text, "fooocus_scheme": "fooocus"}), tmp_path / "f.jpg"):
        meta = read_metadata(path)
        assert (meta.generator, meta.prompt) == ("Fooocus", "a castle, <lora:sd_xl_offset_example-lora_1.0:0.1>")
        assert meta.parameters == {"Steps": "30", "Sampler": "DPM++ 2M SDE", "Schedule type": "Karras",
                                   "CFG scale": "4", "Seed": "1234567", "Size": "1152x896",
                                   "Model": "juggernautXL_v8Rundiffusion", "RNG": "Comfy"}
        assert meta.source["parameters"]["sharpness"] == 2.0


def test_swarmui_and_draw_things(tmp_path):
    swarm = read_metadata(t.png(tmp_path / "s.png", {"parameters": json.dumps(t.SWARM)}))
    assert (swarm.generator, swarm.prompt, swarm.negative_prompt) == (
        "SwarmUI", "a lighthouse at dusk, <lora:detail-tweaker:0.8>", "fog")
    assert swarm.parameters == {"Steps": "25", "Sampler": "Euler", "Schedule type": "Simple", "CFG scale": "1",
                                "Distilled CFG Scale": "3.5", "Seed": "305223794", "Size": "1024x1024",
                                "Model": "Flux/flux1-dev", "RNG": "Comfy", "Emphasis": "Comfy"}
    xmp = t.drawthings_xmp(t.DRAWTHINGS)
    things = read_metadata(t.png(tmp_path / "d.png", {"XML:com.adobe.xmp": xmp}, itxt=("XML:com.adobe.xmp",)))
    assert (things.generator, things.prompt, things.negative_prompt) == (
        "Draw Things", "a red panda, <lora:detail_f16:0.5>", "blurry")
    assert things.parameters == {"Steps": "20", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "4.5",
                                 "Seed": "2718", "Size": "768x512", "Model": "sd_v1.5_f16"}


@pytest.mark.parametrize("mode,compressed", [("alpha", True), ("alpha", False), ("rgb", True), ("rgb", False)])
def test_stealth_png_info_every_form(tmp_path, mode, compressed):
    meta = read_metadata(t.stealth_png(tmp_path / "s.png", WEBUI, mode=mode, compressed=compressed))
    assert (meta.generator, meta.prompt, meta.negative_prompt) == ("WebUI (stealth PNG info)", "a cat", "dog")
    assert meta.parameters["Schedule type"] == "Karras" and meta.parameters["Size"] == "64x48"


def test_webui_and_forge_generators(tmp_path):
    assert read_metadata(t.png(tmp_path / "w.png", {"parameters": WEBUI + ", Version: v1.10.1"})).generator == "WebUI"
    forge = read_metadata(t.png(tmp_path / "f.png", {"parameters": WEBUI + ", Distilled CFG Scale: 3.5, Version: "
                                                     "f2.0.1v1.10.1-previous-313-g4b7c9e9b, Module 1: ae"}))
    assert forge.generator == "Forge" and forge.parameters["Distilled CFG Scale"] == "3.5"
    assert forge.parameters["Module 1"] == "ae" and forge.source is None


BROKEN = {
    "truncated ComfyUI prompt": ({"prompt": json.dumps(t.comfy_api())[:-40]},
                                 "its ComfyUI prompt chunk is not valid JSON"),
    "missing node": ({"prompt": json.dumps({k: v for k, v in t.comfy_api().items() if k != "7"})},
                     "its ComfyUI prompt graph links negative to node 7, which is not in the graph"),
    "junk graph": ({"prompt": "[1, 2, 3]"}, "its ComfyUI prompt graph is not a graph of nodes"),
    "no sampler": ({"prompt": json.dumps({"1": {"class_type": "LoadImage", "inputs": {}}})},
                   "its ComfyUI prompt graph has no sampler node"),
    "junk workflow": ({"workflow": '{"nodes": 5}'}, "its ComfyUI workflow has no readable nodes and links"),
    "truncated InvokeAI": ({"invokeai_metadata": '{"positive_prompt": "a'}, "its InvokeAI invokeai_metadata chunk is "
                           "not valid JSON"),
    "binary NovelAI": ({"Software": "NovelAI", "Comment": "\x00\x01\x02"},
                       "its NovelAI Comment chunk is not valid JSON"),
    "bad XMP": ({"XML:com.adobe.xmp": "<x:xmpmeta Draw Things UserComment"}, "its XMP packet is not valid XML"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_metadata_is_one_line_naming_the_chunk(tmp_path, case):
    chunks, message = BROKEN[case]
    path = t.png(tmp_path / "b.png", chunks, itxt=("XML:com.adobe.xmp",))
    with pytest.raises(UsageError) as caught:
        read_metadata(path)
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)


def test_broken_stealth_info(tmp_path):
    path = t.stealth_png(tmp_path / "s.png", WEBUI)
    pixels = Image.open(path).convert("RGBA")
    data = bytearray(pixels.tobytes())
    for y in range(64):  # clear every alpha bit after the first three columns: the gzip stream breaks off
        for x in range(3, 64):
            data[(y * 64 + x) * 4 + 3] &= 0xFE
    Image.frombytes("RGBA", pixels.size, bytes(data)).save(path)
    with pytest.raises(UsageError, match="its stealth info .stealth_pngcomp. is not valid gzip"):
        read_metadata(path)


def test_comfyui_webp_exif_and_draw_things_jpeg_xmp(tmp_path):
    exif = Image.Exif()  # ComfyUI's SaveAnimatedWEBP: the graph in EXIF Model (0x0110), the workflow in Make
    exif[0x0110] = "prompt:" + json.dumps(t.comfy_api(seed=9))
    exif[0x010F] = "workflow:" + json.dumps(t.comfy_workflow())
    Image.new("RGB", (16, 16)).save(tmp_path / "c.webp", exif=exif)
    comfy = read_metadata(tmp_path / "c.webp")
    assert (comfy.generator, comfy.parameters["Seed"]) == ("ComfyUI", "9")
    Image.new("RGB", (16, 16)).save(tmp_path / "d.jpg", xmp=t.drawthings_xmp(t.DRAWTHINGS).encode())
    things = read_metadata(tmp_path / "d.jpg")
    assert (things.generator, things.parameters["Seed"]) == ("Draw Things", "2718")


def test_comfyui_flux_sampler_custom_advanced_graph(tmp_path):
    """ComfyUI's Flux example: UNETLoader + DualCLIPLoader + VAELoader, RandomNoise, BasicGuider, KSamplerSelect,
    BasicScheduler, SamplerCustomAdvanced, EmptySD3LatentImage, FluxGuidance."""
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                         "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cabin", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["4", 0]}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 77}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0,
                                                          "model": ["1", 0]}},
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["7", 0], "guider": ["6", 0],
                                                                 "sampler": ["8", 0], "sigmas": ["9", 0],
                                                                 "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["3", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["12", 0]}},
    }
    meta = read_metadata(t.comfy_png(tmp_path / "flux.png", graph))
    assert (meta.prompt, meta.negative_prompt, meta.unmapped) == ("a cabin", "", ())
    assert meta.parameters == {"Steps": "20", "Sampler": "Euler", "Schedule type": "Simple", "CFG scale": "1",
                               "Seed": "77", "Size": "1024x768", "Model": "flux1-dev", "Distilled CFG Scale": "3.5",
                               "VAE": "ae.safetensors", "RNG": "Comfy", "Emphasis": "Comfy"}


def test_comfyui_flux2_template_reads_its_flux2scheduler_as_sdclis_flux2_schedule(tmp_path):
    """ComfyUI's Flux.2 template: Flux2Scheduler (its own sigmas from steps and size) is sdcli's Flux2 schedule type;
    the size from EmptyFlux2LatentImage."""
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux2_dev_fp8mixed.safetensors",
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "mistral_3_small_flux2_bf16.safetensors",
                                                     "type": "flux2"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cabin", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 4.0, "conditioning": ["4", 0]}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "Flux2Scheduler", "inputs": {"steps": 28, "width": 1024, "height": 768}},
        "10": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["7", 0], "guider": ["6", 0],
                                                                 "sampler": ["8", 0], "sigmas": ["9", 0],
                                                                 "latent_image": ["10", 0]}},
    }
    meta = read_metadata(t.comfy_png(tmp_path / "flux2.png", graph))
    p = meta.parameters
    assert (p["Steps"], p["Sampler"], p["Schedule type"], p["Size"], p["Distilled CFG Scale"]) == (
        "28", "Euler", "Flux2", "1024x768", "4")
    assert meta.unmapped == ()


def test_comfyui_sampler_custom_reads_its_select_and_scheduler_nodes(tmp_path):
    graph = t.comfy_api()
    graph["3"] = {"class_type": "SamplerCustom", "inputs": {
        "add_noise": True, "noise_seed": 5, "cfg": 6.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "sampler": ["20", 0], "sigmas": ["21", 0], "latent_image": ["5", 0]}}
    graph["20"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}}
    graph["21"] = {"class_type": "BasicScheduler", "inputs": {"scheduler": "karras", "steps": 9, "denoise": 1.0,
                                                              "model": ["4", 0]}}
    meta = read_metadata(t.comfy_png(tmp_path / "c.png", graph))
    p = meta.parameters
    assert (p["Sampler"], p["Schedule type"], p["Steps"], p["Seed"], p["CFG scale"]) == ("DPM++ 2M", "Karras", "9",
                                                                                         "5", "6")


ODD_VALUES = (None, [], {}, "x", -1, 1e308, [1, 2, 3], ["9", 0])


def _mutations(data):
    """Copies of a JSON value with one leaf (or one object) replaced by each odd value."""
    if isinstance(data, dict):
        for key in list(data):
            for mutated in _mutations(data[key]):
                yield {**data, key: mutated}
    elif isinstance(data, list):
        for i, item in enumerate(data):
            for mutated in _mutations(item):
                yield [*data[:i], mutated, *data[i + 1:]]
    yield from ODD_VALUES


@pytest.mark.parametrize("tool", ["ComfyUI", "InvokeAI", "NovelAI", "Fooocus", "SwarmUI", "Draw Things"])
def test_odd_values_anywhere_give_metadata_or_one_clean_error(tmp_path, tool):
    from sdcli.io.sources import read_chunks
    from sdcli.io.sources.common import BrokenMetadata

    key, data, extra = {
        "ComfyUI": ("prompt", t.comfy_api(), {}), "InvokeAI": ("invokeai_metadata", t.INVOKEAI_META, {}),
        "NovelAI": ("Comment", json.loads(t.novelai_chunks()["Comment"]), {"Software": "NovelAI"}),
        "Fooocus": ("parameters", t.FOOOCUS, {"fooocus_scheme": "fooocus"}), "SwarmUI": ("parameters", t.SWARM, {}),
        "Draw Things": ("XMP", t.DRAWTHINGS, {})}[tool]
    tried = 0
    for mutated in _mutations(data):
        text = t.drawthings_xmp(mutated) if tool == "Draw Things" else json.dumps(mutated)
        try:
            read_chunks({key: text, **extra})
        except BrokenMetadata as exc:
            assert "\n" not in str(exc)
        tried += 1
    assert tried > 50


def test_comfyui_workflow_saved_without_control_after_generate(tmp_path):
    workflow = t.comfy_workflow()
    sampler = next(n for n in workflow["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"] = [7, 4, 6.5, "euler_ancestral", "karras", 1.0]  # no "fixed"/"randomize" widget
    meta = read_metadata(t.comfy_png(tmp_path / "w.png", workflow=workflow))
    assert (meta.parameters["Seed"], meta.parameters["Steps"], meta.parameters["CFG scale"]) == ("7", "4", "6.5")


def test_comfyui_workflow_follows_reroutes_and_bypassed_nodes(tmp_path):
    """A Reroute between loader and sampler, and a bypassed (mode 4) LoRA loader: links pass through both."""
    workflow = t.comfy_workflow()
    nodes = {n["id"]: n for n in workflow["nodes"]}
    workflow["links"][0] = [1, 4, 0, 20, 0, "MODEL"]  # checkpoint -> reroute
    workflow["links"] += [[20, 20, 0, 21, 0, "MODEL"], [21, 21, 0, 3, 0, "MODEL"]]  # reroute -> LoRA -> sampler
    workflow["nodes"] += [
        {"id": 20, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 1}]},
        {"id": 21, "type": "LoraLoaderModelOnly", "mode": 4, "widgets_values": ["ink.safetensors", 0.8],
         "inputs": [{"name": "model", "type": "MODEL", "link": 20}]},
    ]
    nodes[3]["inputs"][0]["link"] = 21
    meta = read_metadata(t.comfy_png(tmp_path / "w.png", workflow=workflow))
    assert (meta.prompt, meta.parameters["Model"], meta.unmapped) == ("a lighthouse", "model", ())  # no LoRA


def test_comfyui_workflow_reads_primitive_nodes_values(tmp_path):
    """A widget turned input and linked to the UI's PrimitiveNode (Flux.2 dev's template sizes its latent and
    scheduler so) takes the primitive's value; the PrimitiveNode itself is no node of the graph."""
    workflow = t.comfy_workflow()
    nodes = {n["id"]: n for n in workflow["nodes"]}
    nodes[5]["inputs"] = [{"name": "width", "type": "INT", "link": 30}, {"name": "height", "type": "INT", "link": 31}]
    workflow["nodes"] += [{"id": 20, "type": "PrimitiveNode", "widgets_values": [640, "fixed"], "inputs": []},
                          {"id": 21, "type": "PrimitiveNode", "widgets_values": [384, "fixed"], "inputs": []}]
    workflow["links"] += [[30, 20, 0, 5, 0, "INT"], [31, 21, 0, 5, 1, "INT"]]
    meta = read_metadata(t.comfy_png(tmp_path / "w.png", workflow=workflow))
    assert (meta.parameters["Size"], meta.unmapped) == ("640x384", ())


@pytest.mark.parametrize("size,shifts,expected", [((1024, 1024), (1.15, 0.5), "1.15"),
                                                 ((32, 32), (1.15, 0.5), "0.45734375"),
                                                 ((1024, 768), (2.0, 0.25), "1.53333333333")])
def test_comfyui_model_sampling_flux_is_its_shift_at_the_nodes_size(tmp_path, size, shifts, expected):
    """ModelSamplingFlux's mu is on the line through (256 tokens, base_shift) and (4096, max_shift) at the node's own
    width x height (any shifts map: sdcli's --shift is Flux's mu)."""
    graph = t.comfy_flux_api(width=size[0], height=size[1], shifts=shifts)
    meta = read_metadata(t.comfy_png(tmp_path / "f.png", graph))
    assert meta.unmapped == () and meta.parameters["Shift"] == expected


def test_comfyui_sd3_graph_with_triple_clip_loader(tmp_path):
    meta = read_metadata(t.comfy_png(tmp_path / "s.png", t.comfy_sd3_api(shift=2.5, negative="dog")))
    assert meta.unmapped == () and meta.negative_prompt == "dog"
    assert {k: meta.parameters[k] for k in ("Shift", "Model", "Emphasis")} == {
        "Shift": "2.5", "Model": "sd3.5_medium", "Emphasis": "Comfy"}
