"""Per-line work outside the network in `sdcli batch`: diffusers' ModelMixin.dtype and .device walk every
submodule (6 ms each on SD1.5's UNet on this machine). sdcli asks them through models.module_state, which
walks once per model state, so a steady line walks neither (diffusers' own img2img pipeline walks the UNet
and the VAE for their device once per call)."""

import collections

import pytest
from PIL import Image

from tests.batch.test_runner import batch, items

pytestmark = pytest.mark.usefixtures("single_thread")

# (walk, class) -> most times a steady img2img line may walk. Before the VAE's guards asked once per call
# the VAE's dtype was walked 5 times a line; before models.module_state, 3 (and the UNet's dtype and device
# and the VAE's device once each).
BUDGET: dict[tuple[str, str], float] = {}


@pytest.fixture
def walks(monkeypatch):
    import weakref

    import diffusers.models.modeling_utils as modeling

    from sdcli.models import module_state

    monkeypatch.setattr(module_state, "_known", weakref.WeakKeyDictionary())  # nothing known from other tests

    counted = collections.Counter()
    for kind in ("dtype", "device"):
        real = getattr(modeling, f"get_parameter_{kind}")

        def spy(module, _real=real, _kind=kind):
            counted[_kind, type(module).__name__] += 1
            return _real(module)

        monkeypatch.setattr(modeling, f"get_parameter_{kind}", spy)
    return counted


def test_steady_img2img_lines_walk_the_modules_within_budget(tmp_path, tiny_model, tiny_pipe, walks):
    from sdcli.models import module_state

    Image.new("RGB", (32, 32), (200, 60, 40)).save(tmp_path / "in.png")
    line = f"--init_image {tmp_path / 'in.png'} --denoising_strength 0.75 --prompt"
    per_run = []
    for n in (2, 5):
        walks.clear()
        module_state._known.clear()  # each run starts as a fresh process does
        stats, _ = batch(tmp_path, tiny_model, tiny_pipe, "".join(f"{line} p{i}\n" for i in range(n)),
                         out=f"out{n}", group=1)
        assert stats.done == n and len(items(tmp_path / f"out{n}")) == n
        per_run.append(collections.Counter(walks))
    per_line = {key: (per_run[1][key] - per_run[0][key]) / 3 for key in per_run[1]}
    assert per_run[0][("device", "UNet2DConditionModel")] >= 1  # the spy sees the first line's walks
    over = {key: count for key, count in per_line.items() if count > BUDGET.get(key, 0)}
    assert not over, f"walks per line over budget: {over}"


def test_the_model_is_hashed_once_per_batch(tmp_path, tiny_model, tiny_pipe, monkeypatch):
    """Every line's infotext carries the model hash; it is worked out once, not per line (a folder walk, a
    stat of each file and a read of the hash cache file each time)."""
    from sdcli.models import resolve

    calls, real = [], resolve.model_hash
    monkeypatch.setattr(resolve, "model_hash", lambda path: calls.append(path) or real(path))
    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, "a\nb\nc\n", group=1)
    assert stats.done == 3 and len(calls) == 1
    from sdcli.io.metadata import read_infotext

    texts = [read_infotext(r["path"]) for r in items(tmp_path / "out")]
    assert len(texts) == 3 and all(f"Model hash: {real(tiny_model)}," in text for text in texts)
