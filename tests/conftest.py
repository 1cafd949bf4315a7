"""Shared fixtures: tiny checkpoints built once per session with sdcli's own builder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models gain nothing from intra-op threads, and on a busy 2-core CI box torch's
# spinning worker threads made each generation ~30x slower (3 s instead of 0.08 s).
# Set before torch is imported; subprocess tests inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


SLOW_LIST = Path(__file__).with_name("slow_tests.txt")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it costs: tests/reference is `parity`; the tests listed
    in slow_tests.txt (measured) are `slow`. `make test-fast` deselects both."""
    listed = {line.strip() for line in SLOW_LIST.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")}
    for item in items:
        if item.nodeid.startswith("tests/reference/"):
            item.add_marker(pytest.mark.parity)
        if item.nodeid.split("[", 1)[0] in listed:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory):
    """Keep caches out of $HOME, stay offline, no colour codes in captured output."""
    cache = tmp_path_factory.mktemp("sdcli-cache")
    saved = dict(os.environ)
    os.environ.update({
        "SDCLI_CACHE": str(cache),
        "HF_HOME": str(cache / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    })
    os.environ.pop("SDCLI_MODEL", None)
    os.environ.pop("SDCLI_DEBUG", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD1 checkpoint folder (seed 0)."""
    from sdcli.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-sd1")


def _load_on_cpu(folder: Path):
    """A loaded model (models.loaded.LoadedModel; its diffusers pipeline is `.pipe`) on CPU in fp32."""
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    plan = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)
    return load_model(ModelRef(folder, folder.name), plan)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model: Path):
    """The tiny checkpoint loaded once, on CPU in fp32 (a LoadedModel; `.pipe` is its diffusers pipeline)."""
    return _load_on_cpu(tiny_model)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dedicated inpainting checkpoint (9-channel UNet), as `sdcli tiny --inpaint` writes."""
    from sdcli.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-sd1-inpaint", arch="sd1-inpaint")


@pytest.fixture(scope="session")
def tiny_inpaint_pipe(tiny_inpaint_model: Path):
    """The tiny inpainting checkpoint loaded once, on CPU in fp32."""
    return _load_on_cpu(tiny_inpaint_model)


@pytest.fixture
def single_thread(monkeypatch):
    """torch on one CPU thread, in this process and in the sdcli processes a test starts.

    Thread count changes float reduction order (pixels may move by one level), and
    on a busy 2-core machine a second OpenMP thread makes tiny models many times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A WebUI-style models folder around the tiny model: tiny LoRAs (kohya and diffusers format,
    one touching only the text encoder), an embedding and a VAE, built with sdcli.models.tiny_assets."""
    from sdcli.models.tiny_assets import write_tiny_embedding, write_tiny_lora, write_tiny_vae

    root = tmp_path_factory.mktemp("webui-models")
    (root / "Stable-diffusion").mkdir()
    (root / "Stable-diffusion" / "tiny").symlink_to(tiny_model, target_is_directory=True)
    write_tiny_lora(tiny_model, root / "Lora" / "detail.safetensors", fmt="kohya", seed=0)
    write_tiny_lora(tiny_model, root / "Lora" / "style" / "painterly.safetensors", fmt="diffusers", seed=1)
    write_tiny_lora(tiny_model, root / "Lora" / "textonly.safetensors", unet=False, seed=2)
    write_tiny_embedding(root / "embeddings" / "tinyemb.safetensors", vectors=2, seed=3)
    write_tiny_vae(tiny_model, root / "VAE" / "tinyvae.safetensors", seed=4)
    return root


@pytest.fixture(scope="session")
def tiny_xl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SDXL base and refiner, each as a diffusers folder and a WebUI single file (seed 0)."""
    from sdcli.models.tiny import build_tiny, build_tiny_single_file

    root = tmp_path_factory.mktemp("xl")
    return {
        "base": build_tiny(root / "tiny-xl", arch="sdxl"),
        "base_file": build_tiny_single_file(root / "tiny-xl.safetensors", arch="sdxl"),
        "refiner": build_tiny(root / "tiny-xl-refiner", arch="sdxl-refiner"),
        "refiner_file": build_tiny_single_file(root / "tiny-xl-refiner.safetensors", arch="sdxl-refiner"),
    }


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory):
    """`tiny_family(arch)`: the tiny diffusers folder of a build_tiny arch (seed 0), built once per session."""
    from tests.flow_families import FLOW_FAMILIES

    folders = {f.arch: f.folder for f in FLOW_FAMILIES.values()}
    cache: dict[str, Path] = {}

    def folder(arch: str) -> Path:
        if arch not in cache:
            from sdcli.models.tiny import build_tiny

            cache[arch] = build_tiny(tmp_path_factory.mktemp(arch) / folders.get(arch, arch), arch=arch)
        return cache[arch]

    return folder


@pytest.fixture(scope="session")
def tiny_family_pipe(tiny_family):
    """`tiny_family_pipe(arch)`: that folder loaded once per session on CPU in fp32 (a LoadedModel)."""
    cache: dict[str, object] = {}

    def pipe(arch: str):
        if arch not in cache:
            cache[arch] = _load_on_cpu(tiny_family(arch))
        return cache[arch]

    return pipe


def _family_fixture(name: str, arch: str, loaded: bool):
    """A session fixture `name`: the tiny `arch` folder, or (`loaded`) that model on CPU."""

    def fixture(tiny_family, tiny_family_pipe):
        return (tiny_family_pipe if loaded else tiny_family)(arch)

    fixture.__doc__ = f"The tiny {arch} {'model loaded on CPU in fp32' if loaded else 'diffusers folder'} (seed 0)."
    return pytest.fixture(scope="session", name=name)(fixture)


def _family_fixtures() -> dict[str, object]:
    """The named fixtures other tests use (tiny_zimage, tiny_zimage_pipe, ...), one pair per flow family."""
    from tests.flow_families import FLOW_FAMILIES

    named = {}
    for family in FLOW_FAMILIES.values():
        named[family.fixture] = _family_fixture(family.fixture, family.arch, loaded=False)
        if family.pipe_fixture:
            named[family.pipe_fixture] = _family_fixture(family.pipe_fixture, family.arch, loaded=True)
    return named


# pytest finds fixtures among this module's attributes: the table's fixture names become attributes here.
globals().update(_family_fixtures())


@pytest.fixture(scope="session")
def tiny_flux(tiny_family) -> dict[str, Path]:
    """Tiny Flux.1 dev, schnell and Fill diffusers folders (seed 0)."""
    from tests.flow_families import FLUX1_ARCHS

    return {arch: tiny_family(arch) for arch in FLUX1_ARCHS}


@pytest.fixture(scope="session")
def tiny_flux_pipe(tiny_family_pipe):
    """The tiny Flux dev folder loaded once on CPU in fp32 (a LoadedModel)."""
    return tiny_family_pipe("flux-dev")


@pytest.fixture(scope="session")
def gfpgan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight GFPGAN file spandrel loads (the real architecture: 86M parameters, fp16 on disk)."""
    from sdcli.models.tiny_assets import write_random_gfpgan

    return write_random_gfpgan(tmp_path_factory.mktemp("faces") / "GFPGANv1.4-random.safetensors")


@pytest.fixture
def face_detector(monkeypatch):
    """A test double for the face detector ONLY (facexlib cannot load on this machine): it finds one face whose
    5 landmarks are the 512 px template scaled into FACE_BOX; everything after detection is sdcli's real code.
    Returns the double's class; set `.faces = 0` for an image without faces."""
    import numpy as np

    from sdcli.models import face_align, faces

    class DetectorDouble:
        faces = 1

        @staticmethod
        def check(folders):
            return folders[0] / "detector-double"

        def __init__(self, weights, device):
            pass

        def landmarks(self, image):
            left, top, right, _ = FACE_BOX
            return [np.array(face_align.TEMPLATE) * ((right - left) / 512) + [left, top]] * DetectorDouble.faces

    monkeypatch.setattr(faces, "DETECTOR", DetectorDouble)
    return DetectorDouble


FACE_BOX = (16, 8, 48, 40)  # where face_detector's face is: the template's 512 px square scaled to 32 px
