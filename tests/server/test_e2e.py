"""`sdcli serve` in a real subprocess on 127.0.0.1, driven by the third-party `webuiapi` client
and by the CLI's own `--server`; bounded waits, stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext, read_replay_record
from tests.server.serving import free_port


@pytest.fixture
def api(server):
    import webuiapi

    return webuiapi.WebUIApi(host="127.0.0.1", port=server["port"], username="me", password="secret",
                             sampler="Euler a", steps=2)


def test_webuiapi_txt2img_img2img_and_helpers(api):
    result = api.txt2img(prompt="a red fox", seed=5, width=32, height=32, batch_size=2, cfg_scale=5)
    assert len(result.images) == 2 and result.images[0].size == (32, 32)
    assert result.info["all_seeds"] == [5, 6] and result.info["sampler_name"] == "Euler a"
    assert result.parameters["prompt"] == "a red fox"
    assert "Seed: 6" in result.images[1].info["parameters"]
    assert api.png_info(result.images[0]).info.startswith("a red fox\n")

    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    inpainted = api.img2img(images=[result.images[0]], mask_image=mask, prompt="a cat", seed=9, width=32,
                            height=32, denoising_strength=0.6, inpainting_fill=1, steps=4)
    assert inpainted.images[0].size == (32, 32) and inpainted.info["denoising_strength"] == 0.6
    right = np.asarray(inpainted.images[0].convert("RGB"), dtype=int)[:, 24:]
    assert np.abs(right - np.asarray(result.images[0].convert("RGB"), dtype=int)[:, 24:]).max() <= 2

    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    names = api.util_get_model_names()
    assert [n.split(" [")[0] for n in names] == ["tiny-sd1", "tiny-sd1-inpaint"]
    api.util_set_model(names[1], find_closest=False)
    assert api.util_get_current_model() == names[1]
    api.util_set_model(names[0], find_closest=False)
    assert api.get_progress()["progress"] == 0
    api.interrupt()
    with pytest.raises(RuntimeError, match="422"):
        api.txt2img(prompt="x", sampler_name="No such sampler", width=32, height=32)


@pytest.mark.parametrize("extra", [(), ("--hires", "--hires-scale", "1.5", "--hires-upscaler", "Latent (bicubic)",
                                          "--hires-steps", "2")], ids=["plain", "hires"])
def test_cli_server_pixels_equal_local_run_and_no_torch(server, tiny_model, tmp_path, extra):
    common = ["x", "-m", str(tiny_model), "--steps", "2", "-W", "32", "-H", "32", "--seed", "21",
              "--sampler", "Euler a", "--json", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    local = subprocess.run([sys.executable, "-m", "sdcli", "txt2img", *common, "-o", str(tmp_path / "local")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr
    # The remote run, in a process that reports whether torch was ever imported.
    probe = ("import sys\nfrom sdcli.cli import main\nsys.argv = ['sdcli'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\nsys.exit(code)\n")
    remote = subprocess.run([sys.executable, "-c", probe, "txt2img", *common, "-o", str(tmp_path / "remote"),
                             "--server", server["auth_url"]], capture_output=True, text=True, env=env, timeout=300)
    assert remote.returncode == 0, remote.stderr
    assert "NO-TORCH" in remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert a["path"].rsplit("/", 1)[1] == b["path"].rsplit("/", 1)[1] == "00000-21.png"
    assert np.array_equal(np.asarray(Image.open(a["path"])), np.asarray(Image.open(b["path"])))
    assert read_infotext(a["path"]) == read_infotext(b["path"])
    assert read_replay_record(a["path"]) == read_replay_record(b["path"])
    assert {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}
    if extra:
        assert Image.open(b["path"]).size == (48, 48) and "Hires upscaler: Latent (bicubic)" in b["infotext"]


def test_cli_server_errors(server, tiny_model, tmp_path, cli):
    bad = cli("txt2img", "x", "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32", "-o", tmp_path,
              "--server", server["url"])  # no credentials
    assert bad.exit_code == 1 and "answered 401" in bad.stderr
    down = cli("txt2img", "x", "--server", f"http://127.0.0.1:{free_port()}", "-o", tmp_path)
    assert down.exit_code == 1 and "cannot reach" in down.stderr
    refused = cli("txt2img", "x", "-m", tmp_path, "-o", tmp_path / "o", "--server", server["auth_url"])
    assert refused.exit_code == 2 and "is not served here" in refused.stderr
    assert not list(tmp_path.rglob("*.png"))


def test_cli_server_inpaint_pixels_equal_local_run(server, tiny_model, tmp_path, cli, single_thread):
    from tests.images import pixels, write_inputs

    image, mask = write_inputs(tmp_path)
    common = ("inpaint", "a cat", "-i", image, "--mask", mask, "-m", tiny_model, "--steps", "3", "--seed", "4",
              "--mask-blur", "2", "--json")
    local = cli(*common, "-o", tmp_path / "local")
    remote = cli(*common, "-o", tmp_path / "remote", "--server", server["auth_url"])
    assert local.exit_code == 0 and remote.exit_code == 0, local.stderr + remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert np.array_equal(pixels(a["path"]), pixels(b["path"]))
    assert a["image"] == b["image"] == str(image) and a["mask"] == b["mask"] == str(mask)
    assert read_replay_record(a["path"]) == read_replay_record(b["path"])
