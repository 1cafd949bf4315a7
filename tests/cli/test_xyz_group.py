"""`sdcli xyz --group`: cells that differ only in a Seed or Prompt S/R axis run as one batched call."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext
from sdcli.job import generate

pytestmark = pytest.mark.usefixtures("single_thread")


def test_seed_and_prompt_cells_group_and_equal_one_by_one(cli, tiny_model, tmp_path, monkeypatch):
    sizes, real = [], generate.run

    def spy(request, *args, **kwargs):
        sizes.append(len(kwargs.get("group") or [request]))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", spy)
    plot = ("xyz", "a red fox", "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32", "--seed", "5", "--json",
            "--x", "Seed: 5, 6, 9", "--y", "Prompt S/R: red, blue", "--z", "Steps: 2, 3")
    cells = {}
    for name, extra in (("grouped", ()), ("single", ("--group", "1"))):
        result = cli(*plot, *extra, "-o", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        records = [r for r in map(json.loads, result.stdout.splitlines()) if r["type"] == "item"]
        cells[name] = {r["item"]: (np.asarray(Image.open(r["path"]), dtype=np.int16), read_infotext(r["path"]),
                                   Path(r["path"]).name) for r in records}
    assert sizes == [6, 6] + [1] * 12  # a Steps value changes the loop: a new call
    grouped, single = cells["grouped"], cells["single"]
    assert sorted(grouped) == sorted(single) == list(range(12))
    assert [grouped[i][1:] for i in range(12)] == [single[i][1:] for i in range(12)]  # infotext, file name
    assert all(np.abs(grouped[i][0] - single[i][0]).max() <= 1 for i in range(12))
