"""`make parity`: sdcli vs the WebUI reference (tests/reference), every sampler x schedule type.

Builds tiny SD1, SD2 and SDXL checkpoints (sdcli's own builder), runs each sampler with
each schedule type it takes through sdcli's core and through the independent
re-implementation of the WebUI's pipeline, and prints the largest pixel difference
(levels of 255) per sampler and schedule. Writes bench-out/webui_parity.json.
The goal (issue 12) is at most 2 everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", "Should have", UserWarning)  # torchsde, in the reference as in the WebUI
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--arch", nargs="+", default=["sd1", "sd2", "sdxl"])
    parser.add_argument("--sampler", nargs="+", help="only these samplers (default: all)")
    args = parser.parse_args()

    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime
    from sdcli.models.tiny import build_tiny
    from sdcli.sampling.samplers import SCHEDULE_LABELS
    from tests.reference.parity import max_difference
    from tests.reference.pipeline_ref import SAMPLERS, TIMESTEP_SAMPLERS

    plan = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)
    results: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            folder = build_tiny(Path(tmp) / arch, arch=arch)
            pipe = load_model(ModelRef(folder, arch), plan)
            cases = [(s, label) for s in SAMPLERS for label in ["Automatic", *SCHEDULE_LABELS.values()]]
            cases += [(s, "Automatic") for s in TIMESTEP_SAMPLERS]
            for sampler, schedule in cases:
                if args.sampler and sampler not in args.sampler:
                    continue
                worst = max(max_difference(pipe, "a (red:1.2) cat, [dog] BREAK sunset", negative="blurry",
                                           sampler=sampler, scheduler=schedule, steps=steps, width=args.size,
                                           height=args.size, cfg=9.0) for steps in args.steps)
                results.setdefault(f"{arch} {sampler}", {})[schedule] = worst
            print(f"{arch}: done", file=sys.stderr)
    columns = ["Automatic", *SCHEDULE_LABELS.values()]
    width = max(len(k) for k in results) + 2
    print("largest difference (levels of 255), sdcli vs WebUI reference, steps " + ", ".join(map(str, args.steps)))
    print("".ljust(width) + " ".join(c[:6].rjust(6) for c in columns))
    for name, row in results.items():
        print(name.ljust(width) + " ".join(str(row.get(c, "-")).rjust(6) for c in columns))
    worst = max(v for row in results.values() for v in row.values())
    print(f"worst: {worst} (goal: at most 2)")
    args.out.mkdir(exist_ok=True)
    (args.out / "webui_parity.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0 if worst <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
