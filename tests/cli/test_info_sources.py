"""`sdcli info` and `sdcli replay` on images from other tools (written as each tool writes them:
tests/io/tool_images.py): one --json schema, --webui, broken files, replay's refusals and --dry-run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext
from tests.io import tool_images as t

SCHEMA = {"schema", "type", "path", "generator", "prompt", "negative_prompt", "parameters", "sdcli", "infotext",
          "source", "notes", "unmapped"}


@pytest.fixture
def images(tmp_path):
    """One image of each tool, by generator."""
    xmp = "XML:com.adobe.xmp"
    return {
        "ComfyUI": t.comfy_png(tmp_path / "comfy.png", t.comfy_api()),
        "InvokeAI": t.png(tmp_path / "invoke.png", {"invokeai_metadata": json.dumps(t.INVOKEAI_META)}),
        "NovelAI": t.png(tmp_path / "nai.png", t.novelai_chunks()),
        "Fooocus": t.png(tmp_path / "fooocus.png", {"parameters": json.dumps(t.FOOOCUS), "fooocus_scheme": "fooocus"}),
        "SwarmUI": t.png(tmp_path / "swarm.png", {"parameters": json.dumps(t.SWARM)}),
        "Draw Things": t.png(tmp_path / "dt.png", {xmp: t.drawthings_xmp(t.DRAWTHINGS)}, itxt=(xmp,)),
        "WebUI (stealth PNG info)": t.stealth_png(tmp_path / "st.png", "a cat\nSteps: 3, Sampler: Euler, Seed: 5"),
    }


def test_info_json_has_one_schema_for_every_tool(cli, images):
    result = cli("info", "--json", *images.values())
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["generator"] for r in records] == list(images)
    for record in records:
        assert set(record) == SCHEMA
        assert record["prompt"] and record["parameters"]["Seed"] and record["parameters"]["Sampler"]
        prompt, negative, params = parse_infotext(record["infotext"])
        assert (prompt, negative, params) == (record["prompt"], record["negative_prompt"], record["parameters"])
    assert records[0]["source"]["prompt"]["3"]["class_type"] == "KSampler"  # the tool's own fields, beside
    assert records[-1]["source"] is None  # a WebUI infotext is its own


def test_info_plain_shows_the_infotext_first_then_what_replay_does(cli, images):
    result = cli("info", images["Fooocus"])
    lines = result.stdout.splitlines()
    assert lines[0] == "a castle, <lora:sd_xl_offset_example-lora_1.0:0.1>" and lines[1] == "Negative prompt: lowres"
    assert lines[2].startswith("Steps: 30, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 4, Seed: 1234567")
    assert lines[3] == "(read from Fooocus metadata; --json shows its own fields)"
    assert lines[4].startswith("replay: Fooocus expands the prompt")


def test_info_webui_prints_only_the_infotext(cli, images):
    for generator, path in images.items():
        result = cli("info", "--webui", path)
        assert result.exit_code == 0, (generator, result.stderr)
        record = json.loads(cli("info", "--json", path).stdout)
        assert result.stdout == record["infotext"] + "\n"


def test_info_on_broken_files_is_one_line_each_and_exit_3(cli, images, tmp_path):
    truncated = t.png(tmp_path / "cut.png", {"prompt": json.dumps(t.comfy_api())[:50]})
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    result = cli("info", images["ComfyUI"], truncated, junk)
    assert result.exit_code == 3
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith(f"error: {truncated}: its ComfyUI prompt chunk is not valid JSON")
    assert errors[1].startswith(f"error: {junk}: not a readable image") and len(errors) == 2
    assert "Traceback" not in result.stderr and result.stdout.startswith("== ")


def test_replay_refuses_a_graph_with_nodes_it_does_not_map(cli, tiny_model, tmp_path):
    graph = t.comfy_api(extra={"20": {"class_type": "ImageScaleBy", "inputs": {"scale_by": 2, "image": ["8", 0]}},
                               "21": {"class_type": "FreeU_V2", "inputs": {}}})
    result = cli("replay", t.comfy_png(tmp_path / "c.png", graph), "-m", tiny_model, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'c.png'}: sdcli cannot replay this ComfyUI image; it does "
                                     "not map: nodes FreeU_V2, ImageScaleBy")
    assert not (tmp_path / "out").exists()


def test_replay_dry_run_loads_nothing(cli, tiny_model, images, tmp_path):
    result = cli("replay", images["ComfyUI"], "--model", tmp_path / "no-such-model", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"sdcli txt2img 'a red fox' --model {tmp_path / 'no-such-model'} --negative-prompt "
                             "blurry --steps 3 --sampler Euler --schedule normal --cfg-scale 5 --seed 42 --width 64 "
                             "--height 64 --rng comfy --emphasis comfy\n")
    assert "from its ComfyUI metadata" in result.stderr and "note: ComfyUI draws its samplers'" in result.stderr
    as_json = json.loads(cli("replay", images["ComfyUI"], "--dry-run", "--json").stdout)
    assert as_json["request"]["rng"] == "comfy" and as_json["model"] is None
    # An sdcli image whose model has gone: replay refuses, the dry run still shows the job.
    model = tmp_path / "moved"
    shutil.copytree(tiny_model, model)
    made = json.loads(cli("txt2img", "x", "-m", model, "--steps", "2", "-W", "32", "-H", "32", "--seed", "3",
                          "-o", tmp_path / "a", "--json").stdout)
    shutil.rmtree(model)
    assert cli("replay", made["path"], "-o", tmp_path / "b").exit_code == 2
    dry = cli("replay", made["path"], "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.startswith(f"sdcli txt2img x --model {model} ")


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.mark.parametrize("sampler,scheduler,webui", [("euler_ancestral", "karras", "Euler a"),
                                                     ("dpmpp_2m", "normal", "DPM++ 2M")])
def test_replayed_comfyui_graph_is_the_mapped_txt2img_job(cli, tiny_model, tmp_path, sampler, scheduler, webui):
    graph = t.comfy_api(seed=11, steps=3, cfg=4.0, sampler=sampler, scheduler=scheduler, width=32, height=32,
                        prompt="a red fox", negative="")
    image = t.comfy_png(tmp_path / "c.png", graph)
    replayed = cli("replay", image, "-m", tiny_model, "-o", tmp_path / "r", "--json")
    assert replayed.exit_code == 0, replayed.stderr
    record = json.loads(replayed.stdout)
    assert (record["sampler"], record["schedule"]) == (webui, scheduler.capitalize())
    assert "RNG: Comfy" in Image.open(record["path"]).info["parameters"]  # ComfyUI's noise, and it says so
    direct = cli("txt2img", "a red fox", "-m", tiny_model, "--steps", "3", "--cfg-scale", "4", "--seed", "11",
                 "-W", "32", "-H", "32", "--sampler", webui, "--schedule", scheduler, "--rng", "comfy",
                 "-o", tmp_path / "d", "--json")
    assert np.array_equal(px(record["path"]), px(json.loads(direct.stdout)["path"]))
    cpu = cli("txt2img", "a red fox", "-m", tiny_model, "--steps", "3", "--cfg-scale", "4", "--seed", "11",
              "-W", "32", "-H", "32", "--sampler", webui, "--schedule", scheduler, "--rng", "cpu",
              "-o", tmp_path / "e", "--json")
    assert not np.array_equal(px(record["path"]), px(json.loads(cpu.stdout)["path"]))  # the WebUI's way differs


NOTES = {"InvokeAI": "note: InvokeAI runs diffusers' schedulers", "NovelAI": "note: NovelAI's models are its own",
         "Fooocus": "note: Fooocus expands the prompt", "SwarmUI": "note: ComfyUI draws its samplers'",
         "Draw Things": "note: Draw Things runs its own implementation"}


def test_other_tools_replay_where_they_map_and_say_what_differs(cli, images, tiny_model):
    for generator, note in NOTES.items():
        dry = cli("replay", images[generator], "-m", tiny_model, "--dry-run", "--json")
        assert dry.exit_code == 0, (generator, dry.stderr)
        assert f"from its {generator} metadata" in dry.stderr and note in dry.stderr
    request = json.loads(cli("replay", images["InvokeAI"], "--dry-run", "--json").stdout)["request"]
    assert (request["sampler"], request["schedule"], request["rng"], request["seed"]) == ("DPM++ 2M", "karras",
                                                                                          "cpu", 1234)


def test_a_tool_sampler_without_webui_equivalent_is_refused(cli, tmp_path):
    image = t.comfy_png(tmp_path / "c.png", t.comfy_api(sampler="deis", scheduler="linear_quadratic"))
    result = cli("replay", image, "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("it does not map: sampler 'deis'; scheduler 'linear_quadratic'")


def test_replayed_invokeai_image_runs(cli, tiny_model, tmp_path):
    meta = {**t.INVOKEAI_META, "width": 32, "height": 32, "steps": 2, "loras": []}
    image = t.png(tmp_path / "i.png", {"invokeai_metadata": json.dumps(meta)})
    result = cli("replay", image, "-m", tiny_model, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["seed"], record["sampler"], record["schedule"], record["width"]) == (1234, "DPM++ 2M", "Karras",
                                                                                        32)


def test_comfy_noise_refuses_variation_seeds_and_ensd(cli, tmp_path):
    for flags, named in ((("--subseed-strength", "0.3"), "--subseed-strength"), (("--ensd", "31337"), "--ensd")):
        result = cli("txt2img", "x", "--rng", "comfy", *flags, "-o", tmp_path)
        assert result.exit_code == 2
        assert result.stderr.strip() == (f"error: {named}: ComfyUI's noise (--rng comfy) has no variation seed or "
                                         "ENSD; use --rng cpu, gpu or nv")


def _photo(path, size=(40, 32)):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_comfyui_img2img_replays_with_its_input_found_or_given(cli, tiny_model, tmp_path):
    graph = t.comfy_img2img_api(image="photo.png [input]", denoise=0.5, steps=2, seed=5, sampler="euler")
    (tmp_path / "made").mkdir()
    image = t.comfy_png(tmp_path / "made" / "c.png", graph)
    # 1. Nowhere to be found: one line naming the file and -i, nothing written.
    missing = cli("replay", image, "-m", tiny_model, "-o", tmp_path / "out")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (f"error: {image}: its ComfyUI graph loads the input image 'photo.png' "
                                      "(LoadImage), which is not beside the image or in --comfy-dir's input/ "
                                      "folder; pass -i INPUT")
    assert not (tmp_path / "out").exists()
    # 2. In --comfy-dir's input/ folder: the dry run shows it, at the input's size (no resize), ComfyUI's steps.
    (tmp_path / "comfy" / "input").mkdir(parents=True)
    found = _photo(tmp_path / "comfy" / "input" / "photo.png")
    dry = cli("replay", image, "-m", tiny_model, "--comfy-dir", tmp_path / "comfy", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith("sdcli img2img 'a red fox' ")
    assert f"--image {found} --strength 0.5" in dry.stdout and "--width 40 --height 32" in dry.stdout
    # 3. -i: the image given wins; the run writes ComfyUI's 2 steps (of a 4-step schedule) as run.
    given = _photo(tmp_path / "other.png", (32, 32))
    run = cli("replay", image, "-m", tiny_model, "-i", given, "-o", tmp_path / "r", "--json")
    assert run.exit_code == 0, run.stderr
    record = json.loads(run.stdout)
    assert Image.open(record["path"]).size == (32, 32)
    assert record["image"] == str(given) and record["steps_run"] == 2
    direct = cli("img2img", "a red fox", "-i", given, "-m", tiny_model, "--strength", "0.5", "--steps", "2",
                 "--seed", "5", "--cfg-scale", "5", "-n", "blurry", "--sampler", "Euler", "--schedule", "normal",
                 "--rng", "comfy", "-o", tmp_path / "d", "--json")
    assert np.array_equal(px(record["path"]), px(json.loads(direct.stdout)["path"]))


def test_comfyui_img2img_beside_the_image_and_what_is_refused(cli, tiny_model, tmp_path):
    _photo(tmp_path / "photo.png")
    graph = t.comfy_img2img_api(denoise=0.75, steps=2)
    dry = cli("replay", t.comfy_png(tmp_path / "c.png", graph), "-m", tiny_model, "--dry-run", "--json")
    assert json.loads(dry.stdout)["request"]["init"]["image"] == str(tmp_path / "photo.png")
    # An inpaint graph (LoadImageMask, SetLatentNoiseMask) is refused naming the nodes.
    masked = t.comfy_img2img_api(extra={"12": {"class_type": "LoadImageMask", "inputs": {"image": "m.png"}},
                                        "13": {"class_type": "SetLatentNoiseMask", "inputs": {}}})
    refused = cli("replay", t.comfy_png(tmp_path / "m.png", masked), "-m", tiny_model, "--dry-run")
    assert refused.exit_code == 2 and "nodes LoadImageMask, SetLatentNoiseMask" in refused.stderr
    # A name reaching outside the image's folder is never looked up; -i on a txt2img image is refused.
    outside = t.comfy_png(tmp_path / "o.png", t.comfy_img2img_api(image="../photo.png"))
    assert "pass -i INPUT" in cli("replay", outside, "-m", tiny_model, "--dry-run").stderr
    txt2img = cli("replay", t.comfy_png(tmp_path / "t.png", t.comfy_api()), "-i", tmp_path / "photo.png", "--dry-run")
    assert txt2img.exit_code == 2 and "-i:" in txt2img.stderr and "not made from an input image" in txt2img.stderr


def test_emphasis_comfy_from_the_cli_and_in_the_infotext(cli, tiny_model, tmp_path):
    """--emphasis comfy is a row of the emphasis table: any run takes it, writes `Emphasis: Comfy` and replays it;
    on a weighted prompt it changes the pixels."""
    def run(prompt, emphasis, out):
        result = cli("txt2img", prompt, "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32", "--seed", "4",
                     "--emphasis", emphasis, "-o", tmp_path / out, "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["path"]

    comfy = run("a (red:1.6) fox", "comfy", "c")
    assert "Emphasis: Comfy" in Image.open(comfy).info["parameters"]
    assert not np.array_equal(px(comfy), px(run("a (red:1.6) fox", "original", "o")))
    again = json.loads(cli("replay", comfy, "-o", tmp_path / "r", "--json").stdout)["path"]
    assert np.array_equal(px(comfy), px(again))
