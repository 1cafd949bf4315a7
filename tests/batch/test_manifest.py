import json
import os

import pytest

from sdcli.batch import manifest
from sdcli.errors import UsageError
from sdcli.io.output import remove_stale_temps


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
    with pytest.raises(UsageError, match="changed since the batch recorded"):
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


HEADER = json.dumps({"type": "batch", "digest": "d", "base_seed": 1, "base_number": 0, "started": "2026-01-01"})


ITEM = json.dumps(item(0, seed=1, path=None))


@pytest.mark.parametrize(("content", "says"), [
    ('{"type": "batch", "dig\n' + ITEM + "\n", "manifest.jsonl:2: the first record is not the batch header"),
    ("garbage\n", "manifest.jsonl:1: not a JSON record (Expecting value)"),
    (HEADER + "\nnot json at all\n" + ITEM + "\n", "manifest.jsonl:2: not a JSON record"),
    (HEADER + '\n{"type": "item", "item": "3", "seed": 1, "status": "done", "path": null}\n',
     "manifest.jsonl:2: item record field 'item' is '3'"),
    (HEADER + "\n[1, 2]\n", "manifest.jsonl:2: not a manifest record (a JSON object)"),
    (HEADER.replace('"base_seed": 1', '"base_seed": true'), "manifest.jsonl:1: batch record field 'base_seed'"),
    (HEADER.encode() + b"\n\xff\xfe{}\n", "manifest.jsonl:2: not UTF-8 text"),
    (None, "manifest.jsonl: cannot read the manifest"),
])
def test_unreadable_manifests_stop_resume_naming_file_and_line(tmp_path, content, says):
    path = tmp_path / manifest.MANIFEST
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(manifest.ManifestError) as caught:
        manifest.start(tmp_path, {"type": "batch", "digest": "d", "base_seed": 1}, resume=True)
    assert str(caught.value).startswith(str(tmp_path / says)), str(caught.value)


def test_torn_lines_in_the_middle_and_at_the_end_are_still_skipped(tmp_path):
    path = tmp_path / manifest.MANIFEST
    record = json.dumps(item(1, seed=2, path=None, prompt="é"), ensure_ascii=False)
    path.write_bytes(HEADER.encode() + b"\n" + record.encode()[:-8] + b"\n" + json.dumps(item(2, seed=3, path=None))
                     .encode() + b"\n" + record.encode()[: record.encode().index(b"\xc3") + 1])
    header, items = manifest.load(tmp_path)
    assert header["digest"] == "d" and [r["item"] for r in items] == [2]


def test_resume_options_name_each_difference_and_fill_the_rest(tmp_path):
    recorded = {"file": "/p.txt", "steps": 20, "cfg_scale": 7.0, "model": "/m", "seed": None}
    header = json.loads(HEADER) | {"options": recorded}
    (tmp_path / manifest.MANIFEST).write_text(json.dumps(header) + "\n")
    now = {"file": None, "steps": 30, "cfg_scale": 5.0, "model": "/m", "seed": 4}
    with pytest.raises(UsageError) as caught:
        manifest.resume_options(tmp_path, {"steps": 30, "cfg_scale": 5.0, "model": "/m"}, now)
    assert str(caught.value).endswith("other options: --steps: 20 in the manifest, 30 now; --cfg-scale: 7.0 in the "
                                      "manifest, 5.0 now (leave them out to keep the recorded ones)")
    merged = manifest.resume_options(tmp_path, {"model": "/m"}, now)
    assert merged == {"file": "/p.txt", "steps": 20, "cfg_scale": 7.0, "model": "/m", "seed": None}
    with pytest.raises(UsageError, match="holds no batch to resume"):
        manifest.resume_options(tmp_path / "empty", {}, {"file": None})


def test_a_full_disk_while_writing_the_manifest_is_one_clear_error(tmp_path, monkeypatch):
    from sdcli.errors import RuntimeFailure

    with manifest.ManifestWriter(tmp_path / manifest.MANIFEST) as writer:
        def full(fd, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(RuntimeFailure, match=r"manifest.jsonl: cannot write the manifest: No space left"):
            writer.append(item(0))
        monkeypatch.undo()
