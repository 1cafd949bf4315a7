"""The tiny-real-size bench row: every arch once a round in alternating order, 1024 px 30-step commands,
the refiner as img2img, and verdicts against 15 s that follow the spread."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import real_size  # noqa: E402


def test_rounds_alternate_and_commands_are_real_size(tmp_path, monkeypatch):
    import sdcli.models.tiny as tiny

    built = []

    def fake_build(out, arch="sd1", seed=0):
        built.append(arch)
        Path(out).mkdir(parents=True)
        (Path(out) / "model_index.json").write_text("{}")
        return Path(out)

    monkeypatch.setattr(tiny, "build_tiny", fake_build)
    seen: list[list[str]] = []
    times = iter([10.0, 20.0, 21.0, 11.0, 12.0, 22.0])

    def run(cmd):
        seen.append(cmd)
        return next(times), 1.0

    result = real_size.tiny_real_size(run, tmp_path, 3, arches=("sd1", "sdxl-refiner"))
    assert built == ["sd1", "sdxl-refiner"]
    order = [Path(c[c.index("--steps") - 1]).name for c in seen]  # the -m folder
    assert order == ["sd1", "sdxl-refiner", "sdxl-refiner", "sd1", "sd1", "sdxl-refiner"]
    for cmd in seen:
        assert cmd[cmd.index("--steps") + 1] == "30" and cmd[cmd.index("-W") + 1] == cmd[cmd.index("-H") + 1] == "1024"
    assert seen[1][3:7] == ["img2img", "-i", str(tmp_path / "real-size-inputs" / "in.png"), "--strength"]
    assert seen[0][3] == "txt2img"
    assert (result["sd1"]["median"], result["sd1"]["spread"], result["sd1"]["target_verdict"]) == (11.0, 1.0, "met")
    assert (result["sdxl-refiner"]["median"], result["sdxl-refiner"]["target_verdict"]) == (21.0, "not met")
    assert real_size._row([10.0, 14.0, 20.0], [1.0] * 3, [0.5] * 3)["target_verdict"] == "inconclusive"
