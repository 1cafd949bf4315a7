"""Test images written as each tool writes them (read from each tool's own saving code, not from sdcli's reader).

ComfyUI (nodes.py SaveImage): tEXt `prompt` = the API graph as JSON, `workflow` = the UI graph as JSON.
InvokeAI (app/services/image_files): tEXt `invokeai_metadata` JSON (and `invokeai_graph`); legacy `sd-metadata`
JSON and `Dream` command line. NovelAI: tEXt Title/Description (prompt)/Software/Source (model)/Comment (JSON).
Fooocus (modules/private_logger + meta_parser): tEXt `parameters` JSON and `fooocus_scheme`; JPEG: EXIF
UserComment (0x9286) holds the JSON, Software (0x0131) the version, MakerNote (0x927C) the scheme. SwarmUI
(docs/Image Metadata Format.md): `parameters` = {"sui_image_params": {...}}. Draw Things: iTXt
`XML:com.adobe.xmp` with the JSON in exif:UserComment. Stealth PNG info (sd_webui_stealth_pnginfo): signature,
32-bit bit count, payload in the low bit of alpha (or R, G, B), column by column.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo


def png(path: Path, chunks: dict[str, str], itxt: tuple[str, ...] = (), mode: str = "RGB") -> Path:
    """A small PNG with the given text chunks (those named in `itxt` as iTXt)."""
    info = PngInfo()
    for key, value in chunks.items():
        if key in itxt:
            info.add_itxt(key, value)
        else:
            info.add_text(key, value)
    Image.new(mode, (16, 16), "gray").save(path, pnginfo=info)
    return path


def comfy_api(seed: int = 42, steps: int = 3, cfg: float = 5.0, sampler: str = "euler", scheduler: str = "normal",
              width: int = 64, height: int = 64, ckpt: str = "tiny.safetensors", prompt: str = "a red fox",
              negative: str = "blurry", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """ComfyUI's default txt2img graph (API form), as its example workflow builds it."""
    graph: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                                                   "scheduler": scheduler, "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    graph.update(extra or {})
    return graph


def comfy_img2img_api(image: str = "photo.png", denoise: float = 0.6, start: int | None = None,
                      **settings: Any) -> dict[str, Any]:
    """ComfyUI's img2img example graph (LoadImage -> VAEEncode -> KSampler at `denoise`), or with `start` a
    KSamplerAdvanced from that step of `steps`."""
    graph = comfy_api(**settings)
    del graph["5"]
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": image, "upload": "image"}}
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    sampler = graph["3"]["inputs"]
    sampler.update(latent_image=["11", 0], denoise=denoise)
    if start is not None:
        graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "enable", "noise_seed": sampler.pop("seed"), "start_at_step": start, "end_at_step": 10000,
            "return_with_leftover_noise": "disable", **{k: v for k, v in sampler.items() if k != "denoise"}}}
    return graph


def comfy_flux_api(seed: int = 1, steps: int = 3, guidance: float = 3.5, width: int = 32, height: int = 32,
                   prompt: str = "a red cat", sampler: str = "euler", scheduler: str = "simple",
                   shifts: tuple[float, float] = (1.15, 0.5)) -> dict[str, Any]:
    """ComfyUI's Flux.1 dev example graph (API form): UNETLoader, DualCLIPLoader, VAELoader, FluxGuidance,
    ModelSamplingFlux, RandomNoise, BasicGuider, KSamplerSelect, BasicScheduler, SamplerCustomAdvanced."""
    return {
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                          "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["11", 0]}},
        "60": {"class_type": "FluxGuidance", "inputs": {"guidance": guidance, "conditioning": ["6", 0]}},
        "61": {"class_type": "ModelSamplingFlux", "inputs": {"max_shift": shifts[0], "base_shift": shifts[1],
                                                             "width": width, "height": height, "model": ["12", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["61", 0], "conditioning": ["60", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": scheduler, "steps": steps, "denoise": 1.0,
                                                          "model": ["61", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                 "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                 "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_sd3_api(seed: int = 1, steps: int = 3, cfg: float = 4.5, width: int = 32, height: int = 32,
                  prompt: str = "a red cat", negative: str = "", shift: float = 3.0) -> dict[str, Any]:
    """ComfyUI's SD3 example graph (API form): UNETLoader-free checkpoint, TripleCLIPLoader, ModelSamplingSD3,
    EmptySD3LatentImage, KSampler euler/simple."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
        "11": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                            "clip_name2": "clip_g.safetensors",
                                                            "clip_name3": "t5xxl_fp16.safetensors"}},
        "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": shift, "model": ["4", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["11", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                                                   "scheduler": "simple", "denoise": 1.0, "model": ["13", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_workflow() -> dict[str, Any]:
    """The same graph as ComfyUI's UI saves it (nodes with widgets_values; links [id, from, slot, to, slot, type])."""
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 6, 0, 3, 1, "CONDITIONING"], [3, 7, 0, 3, 2, "CONDITIONING"],
             [4, 5, 0, 3, 3, "LATENT"], [5, 4, 1, 6, 0, "CLIP"], [6, 4, 1, 7, 0, "CLIP"], [7, 3, 0, 8, 0, "LATENT"],
             [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]]
    slot = lambda name, link: {"name": name, "link": link}  # noqa: E731
    nodes = [
        {"id": 3, "type": "KSampler", "widgets_values": [7, "fixed", 4, 6.5, "euler_ancestral", "karras", 1.0],
         "inputs": [slot("model", 1), slot("positive", 2), slot("negative", 3), slot("latent_image", 4)]},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15/model.safetensors"], "inputs": []},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [512, 768, 1], "inputs": []},
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a lighthouse"], "inputs": [slot("clip", 5)]},
        {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["fog"], "inputs": [slot("clip", 6)]},
        {"id": 8, "type": "VAEDecode", "widgets_values": [], "inputs": [slot("samples", 7), slot("vae", 8)]},
        {"id": 9, "type": "SaveImage", "widgets_values": ["ComfyUI"], "inputs": [slot("images", 9)]},
        {"id": 10, "type": "Note", "widgets_values": ["just a note"], "inputs": []},
    ]
    return {"last_node_id": 10, "nodes": nodes, "links": links, "version": 0.4}


def comfy_png(path: Path, graph: dict[str, Any] | None = None, workflow: dict[str, Any] | None = None) -> Path:
    chunks = {}
    if graph is not None:
        chunks["prompt"] = json.dumps(graph)
    if workflow is not None:
        chunks["workflow"] = json.dumps(workflow)
    return png(path, chunks)


INVOKEAI_META = {
    "generation_mode": "txt2img", "positive_prompt": "a tabby cat", "negative_prompt": "dog", "width": 512,
    "height": 640, "seed": 1234, "rand_device": "cpu", "cfg_scale": 7.5, "cfg_rescale_multiplier": 0, "steps": 30,
    "scheduler": "dpmpp_2m_k", "clip_skip": 0,
    "model": {"key": "abc", "hash": "blake3:00", "name": "Deliberate v2", "base": "sd-1", "type": "main"},
    "loras": [{"model": {"key": "l1", "name": "add_detail", "base": "sd-1"}, "weight": 0.6}],
    "app_version": "4.2.0",
}
SD_METADATA = {"model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "model_hash": "cc6cb27103",
               "app_id": "invoke-ai/InvokeAI", "app_version": "2.3.0",
               "image": {"prompt": [{"prompt": "a cottage [ugly, blurry]", "weight": 1.0}], "steps": 20,
                         "cfg_scale": 7.5, "threshold": 0, "perlin": 0, "height": 512, "width": 512, "seed": 99,
                         "seamless": False, "hires_fix": False, "type": "txt2img", "postprocessing": None,
                         "sampler": "k_euler_a", "variations": []}}
DREAM = '"a cottage [ugly]" -s 25 -S 3 -W 512 -H 512 -C 7.5 -A k_lms'


def novelai_chunks(sampler: str = "k_euler_ancestral", schedule: str = "karras") -> dict[str, str]:
    comment = {"prompt": "1girl, masterpiece", "steps": 28, "height": 832, "width": 1216, "scale": 5.0,
               "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 3123, "n_samples": 1, "noise_schedule": schedule,
               "sampler": sampler, "sm": False, "sm_dyn": False, "uc": "lowres, bad anatomy", "strength": 0.7,
               "noise": 0.0, "request_type": "PromptGenerateRequest"}
    return {"Title": "AI generated image", "Description": comment["prompt"], "Software": "NovelAI",
            "Source": "NovelAI Diffusion V3 C1E1DE52", "Comment": json.dumps(comment)}


FOOOCUS = {"adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion.safetensors",
           "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["lowres"], "full_prompt": ["a castle, epic"],
           "guidance_scale": 4.0, "loras": [["sd_xl_offset_example-lora_1.0.safetensors", 0.1, "4852686128"]],
           "metadata_scheme": "fooocus", "negative_prompt": "lowres", "performance": "Speed",
           "prompt": "a castle", "prompt_expansion": "a castle, epic", "refiner_model": "None",
           "refiner_switch": 0.5, "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras",
           "seed": "1234567", "sharpness": 2.0, "steps": 30, "styles": "['Fooocus V2']", "vae": "Default (model)",
           "version": "Fooocus v2.5.5"}

SWARM = {"sui_image_params": {"prompt": "a lighthouse at dusk", "negativeprompt": "fog", "model": "Flux/flux1-dev",
                              "seed": 305223794, "steps": 25, "cfgscale": 1.0, "aspectratio": "1:1", "width": 1024,
                              "height": 1024, "sampler": "euler", "scheduler": "simple", "fluxguidancescale": 3.5,
                              "loras": ["detail-tweaker"], "loraweights": ["0.8"], "swarm_version": "0.9.2.1",
                              "date": "2024-08-07"},
         "sui_extra_data": {"prep_time": "1.2 sec"}}

DRAWTHINGS = {"c": "a red panda", "uc": "blurry", "seed": 2718, "steps": 20, "scale": 4.5,
              "sampler": "DPM++ 2M Karras", "size": "768x512", "model": "sd_v1.5_f16.ckpt", "strength": 1,
              "lora": [{"file": "detail_f16.ckpt", "weight": 0.5}], "seed_mode": "Scale Alike", "shift": 1}


def drawthings_xmp(data: dict[str, Any]) -> str:
    """Draw Things' XMP packet: the JSON in exif:UserComment's rdf:Alt (escaped as XML text)."""
    from xml.sax.saxutils import escape

    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/" '
            'x:xmptk="XMP Core 6.0.0"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
            'xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:CreatorTool>Draw Things</xmp:CreatorTool>'
            f'<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">{escape(json.dumps(data))}</rdf:li></rdf:Alt>'
            '</exif:UserComment></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="r"?>')


def stealth_png(path: Path, text: str, mode: str = "alpha", compressed: bool = True, size: int = 64) -> Path:
    """An image with `text` hidden as the stealth PNG info extension hides it (and no text chunk)."""
    payload = gzip.compress(text.encode()) if compressed else text.encode()
    head = f"stealth_{'png' if mode == 'alpha' else 'rgb'}{'comp' if compressed else 'info'}".encode()
    bits = np.unpackbits(np.frombuffer(head + (len(payload) * 8).to_bytes(4, "big") + payload, np.uint8))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size, size, 4 if mode == "alpha" else 3), dtype=np.uint8)
    if mode == "alpha":
        pixels[:, :, 3] = 255
    plane = pixels[:, :, 3:] if mode == "alpha" else pixels[:, :, :3]
    column_major = plane.transpose(1, 0, 2).reshape(-1).copy()  # x outer, y inner, as the extension walks
    assert bits.size <= column_major.size, "text too long for the image"
    column_major[:bits.size] = (column_major[:bits.size] & 0xFE) | bits
    plane[...] = column_major.reshape(size, size, plane.shape[2]).transpose(1, 0, 2)
    Image.fromarray(pixels).save(path)
    return path
