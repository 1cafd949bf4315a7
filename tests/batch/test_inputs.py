from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from sdcli.batch.inputs import expand_inputs, expand_request, input_root, is_input_set, natural_key, pair_masks
from sdcli.batch.parse import BatchFileError, parse_file, plan_units
from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest, ImageInput, InpaintSettings


def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # names only: nothing here decodes an image
    return root


def keys(found) -> list[str]:
    return [f.key for f in found.files]


def test_natural_name_order_case_insensitive_digits_as_numbers(tmp_path):
    touch(tmp_path, "img10.png", "img2.PNG", "Img1.jpg", "b.webp", "a.jpeg", "img2a.png")
    found = expand_inputs(tmp_path)
    assert keys(found) == ["a", "b", "Img1", "img2", "img2a", "img10"]
    assert all(f.path.is_absolute() and f.path.parent == tmp_path for f in found.files)
    assert sorted(["x10/a", "x9/b", "x9"], key=natural_key) == ["x9", "x9/b", "x10/a"]


def test_non_images_are_skipped_and_counted_hidden_files_ignored(tmp_path):
    touch(tmp_path, "a.png", "notes.txt", "b.gif", "raw.tiff", ".hidden.png", ".cache/c.png")
    found = expand_inputs(tmp_path, recursive=True)
    assert keys(found) == ["a"] and found.skipped == 3


def test_subfolders_only_with_recursive_keys_keep_the_relative_path(tmp_path):
    touch(tmp_path, "top.png", "sub/cat.png", "sub/deeper/cat.png", "sub2/a.png")
    assert keys(expand_inputs(tmp_path)) == ["top"]
    assert keys(expand_inputs(tmp_path, recursive=True)) == ["sub/cat", "sub/deeper/cat", "sub2/a", "top"]


def test_the_output_folder_inside_the_inputs_is_left_out(tmp_path):
    touch(tmp_path, "a.png", "out/a-1.png", "out/deeper/b.png")
    assert keys(expand_inputs(tmp_path, recursive=True, exclude=(tmp_path / "out",))) == ["a"]
    assert keys(expand_inputs(str(tmp_path / "**" / "*.png"), exclude=(tmp_path / "out",))) == ["a"]


def test_globs_match_files_double_star_any_depth_root_is_the_fixed_part(tmp_path):
    touch(tmp_path, "shots/a1.png", "shots/a2.jpg", "shots/b1.png", "shots/x/a3.png", "shots/a9.txt")
    assert keys(expand_inputs(str(tmp_path / "shots" / "a*"))) == ["a1", "a2"]
    assert input_root(str(tmp_path / "shots" / "a*")) == tmp_path / "shots"
    assert expand_inputs(str(tmp_path / "shots" / "a*")).skipped == 1  # a9.txt matched, not an image
    assert keys(expand_inputs(str(tmp_path / "shots" / "**" / "a*.png"))) == ["a1", "x/a3"]


def test_is_input_set_folders_and_globs_but_an_existing_file_is_one_input(tmp_path):
    touch(tmp_path, "odd[1].png")
    assert is_input_set(tmp_path) and is_input_set(str(tmp_path / "*.png"))
    assert not is_input_set(tmp_path / "odd[1].png") and not is_input_set(tmp_path / "missing.png")


@pytest.mark.parametrize("spec, message", [
    ("{d}", "--image: {d} holds no PNG, JPEG or WebP images (2 other file(s) skipped by extension)"),
    ("{d}/*.gif", "--image: {d}/*.gif matches no PNG, JPEG or WebP images (1 other file(s) skipped by extension)"),
    ("{d}/*.png", "--image: {d}/*.png matches no PNG, JPEG or WebP images"),
])
def test_no_images_is_one_line_usage_error(tmp_path, spec, message):
    touch(tmp_path, "a.txt", "b.gif")
    with pytest.raises(UsageError) as exc:
        expand_inputs(spec.format(d=tmp_path))
    assert str(exc.value) == message.format(d=tmp_path)


def test_masks_pair_by_name_in_input_order_extras_reported(tmp_path):
    touch(tmp_path, "in/b.jpg", "in/a.png", "in/s/c.png", "m/a.webp", "m/b.png", "m/s/c.png", "m/zz.png")
    inputs = expand_inputs(tmp_path / "in", recursive=True)
    masks, unused = pair_masks(inputs, expand_inputs(tmp_path / "m", "--mask", recursive=True))
    assert masks == [tmp_path / "m" / "a.webp", tmp_path / "m" / "b.png", tmp_path / "m" / "s" / "c.png"]
    assert unused == ["zz"]


def test_a_missing_or_ambiguous_mask_names_the_file(tmp_path):
    touch(tmp_path, "in/a.png", "in/b.png", "m/a.png", "two/a.png", "two/a.jpg", "two/b.png")
    inputs = expand_inputs(tmp_path / "in")
    with pytest.raises(UsageError, match=f"^--mask: no mask for input {tmp_path / 'in' / 'b.png'}: no b.png, "):
        pair_masks(inputs, expand_inputs(tmp_path / "m", "--mask"))
    with pytest.raises(UsageError, match="^--mask: two masks for a: "):
        pair_masks(inputs, expand_inputs(tmp_path / "two", "--mask"))


def test_expand_request_one_request_per_input_with_its_mask_and_seed_plus_i(tmp_path):
    touch(tmp_path, "in/a.png", "in/b.png", "m/a.png", "m/b.png")
    template = GenerationRequest(prompt="p", mode="inpaint", init=ImageInput(str(tmp_path / "in"), 0.5),
                                 inpaint=InpaintSettings(str(tmp_path / "m")), seed=10, count=2,
                                 subseed=100, subseed_strength=0.5)
    expanded = expand_request(template)
    assert [(r.init.image, r.inpaint.mask, r.seed, r.subseed, r.seeds()) for r in expanded.requests] == [
        (str(tmp_path / "in" / "a.png"), str(tmp_path / "m" / "a.png"), 10, 100, [10, 11]),
        (str(tmp_path / "in" / "b.png"), str(tmp_path / "m" / "b.png"), 12, 102, [12, 13])]
    assert {(r.init.strength, r.prompt, r.count) for r in expanded.requests} == {(0.5, "p", 2)}
    unseeded = expand_request(replace(template, seed=None, subseed_strength=0))
    assert [r.seed for r in unseeded.requests] == [None, None]  # the batch runner's base seed + item


def test_expand_request_one_mask_file_for_all_or_a_clear_error(tmp_path):
    touch(tmp_path, "in/a.png", "in/b.png", "one.png")
    template = GenerationRequest(prompt="", mode="inpaint", init=ImageInput(str(tmp_path / "in")),
                                 inpaint=InpaintSettings(str(tmp_path / "one.png")))
    assert {r.inpaint.mask for r in expand_request(template).requests} == {str(tmp_path / "one.png")}
    with pytest.raises(UsageError, match=f"^--mask: {tmp_path / 'nope.png'}: no such file$"):
        expand_request(replace(template, inpaint=InpaintSettings(str(tmp_path / "nope.png"))))
    with pytest.raises(UsageError, match="^--seed: 4294967295 \\+ 2 images passes"):
        expand_request(replace(template, seed=2**32 - 1))


def test_prompt_file_image_key_takes_a_folder_or_glob_one_line_per_input(tmp_path):
    touch(tmp_path, "in/b.png", "in/a10.png", "in/a9.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "single.png")
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt one --image in\n--prompt two --image single.png\n"
                       "--prompt three --image 'in/a*.png' --seed 50\n")
    lines = parse_file(prompts)
    assert [(line.line, line.request.prompt, Path(line.request.init.image).name, line.request.seed)
            for line in lines] == [
        (1, "one", "a9.png", None), (1, "one", "a10.png", None), (1, "one", "b.png", None),
        (2, "two", "single.png", None), (3, "three", "a9.png", 50), (3, "three", "a10.png", 51)]
    assert [u.request.seed for u in plan_units(lines, 0)] == [0, 1, 2, 3, 50, 51]


def test_prompt_file_folder_problems_are_file_line_errors(tmp_path):
    touch(tmp_path, "empty/x.txt", "in/a.png", "masks/b.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "single.png")
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt x --image empty\n--prompt y --init_images in --mask masks\n"
                       "--prompt z --image single.png --mask masks\n")
    with pytest.raises(BatchFileError) as exc:
        parse_file(prompts)
    assert exc.value.problems == [
        f"{prompts}:1: image: {tmp_path / 'empty'} holds no PNG, JPEG or WebP images (1 other file(s) skipped "
        "by extension)",
        f"{prompts}:2: mask: no mask for input {tmp_path / 'in' / 'a.png'}: no a.png, .jpg, .jpeg or .webp in "
        f"{tmp_path / 'masks'}",
        f"{prompts}:3: mask: a folder or glob of masks needs a folder or glob of input images"]
