import json
import os

import pytest

from sdcli.batch import manifest
from sdcli.core.output import remove_stale_temps
from sdcli.errors import UsageError


def item(n, status="done", **extra):
    return {"type": "item", "item": n, "status": status, **extra}


def test_torn_last_line_is_skipped_and_the_next_record_starts_a_new_line(tmp_path):
    path = tmp_path / manifest.MANIFEST
    path.write_text(json.dumps(item(0)) + "\n" + '{"type": "item", "it')
    with manifest.ManifestWriter(path) as writer:
        writer.append(item(1))
    assert [r["item"] for r in manifest.read_records(path)] == [0, 1]


def test_parts_are_read_and_merged_in_item_order(tmp_path):
    header = {"type": "batch", "digest": "d", "base_seed": 1}
    manifest.start(tmp_path, header, resume=False)
    for process, items in ((0, [0, 2]), (1, [1, 3])):
        with manifest.ManifestWriter(manifest.part_path(tmp_path, process)) as writer:
            for n in items:
                writer.append(item(n, path=str(tmp_path / f"{n}.png")))
            writer.append({"type": "end", "process": process})
    assert [e["process"] for e in manifest.wait_for_parts(tmp_path, 2)] == [0, 1]
    assert sorted(r["item"] for r in manifest.load(tmp_path)[1]) == [0, 1, 2, 3]
    manifest.merge_parts(tmp_path)
    records = manifest.read_records(tmp_path / manifest.MANIFEST)
    assert records[0] == header and [r["item"] for r in records[1:]] == [0, 1, 2, 3]
    assert manifest.part_paths(tmp_path) == []
    (tmp_path / "2.png").write_bytes(b"x")
    assert list(manifest.done_items(manifest.load(tmp_path)[1])) == [2]  # done = recorded and on disk


def test_start_refuses_another_batch_or_a_changed_plan(tmp_path):
    manifest.start(tmp_path, {"type": "batch", "digest": "a", "base_seed": 1}, resume=False)
    with pytest.raises(UsageError, match="already holds a batch"):
        manifest.start(tmp_path, {"type": "batch", "digest": "a", "base_seed": 1}, resume=False)
    with pytest.raises(UsageError, match="differ from the batch recorded"):
        manifest.start(tmp_path, {"type": "batch", "digest": "b", "base_seed": 1}, resume=True)
    kept = manifest.start(tmp_path, {"type": "batch", "digest": "a", "base_seed": 9}, resume=True)
    assert kept["base_seed"] == 1  # no --seed given: the recorded base seed stays


def test_only_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".sdcli-4194999-x.tmp"
    alive = tmp_path / f".sdcli-{os.getpid()}-y.tmp"
    other = tmp_path / "00000-1.png"
    for path in (dead, alive, other):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 1
    assert not dead.exists() and alive.exists() and other.exists()
