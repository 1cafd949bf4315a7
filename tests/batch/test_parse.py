import pytest

from sdcli.batch.parse import (
    KEYS,
    MODES,
    BatchFileError,
    detect_format,
    parse_file,
    plan_digest,
    plan_units,
    resolve_base_seed,
)
from sdcli.errors import UsageError
from sdcli.request.generation import MAX_SEED, GenerationRequest


def write(tmp_path, text, name="p.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_text_lines_comments_and_blanks(tmp_path):
    path = write(tmp_path, "# a comment\n\na red fox\n   \n  a (cat:1.2) -- with dashes  \n")
    lines = parse_file(path, "text", GenerationRequest(prompt="", steps=3, negative_prompt="fog"))
    assert [(x.line, x.request.prompt) for x in lines] == [(3, "a red fox"), (5, "a (cat:1.2) -- with dashes")]
    assert all(x.request.steps == 3 and x.request.negative_prompt == "fog" for x in lines)


def test_webui_lines_override_command_line_defaults(tmp_path):
    path = write(tmp_path, 'a plain prompt\n'
                 '--prompt "a cat, oil" --negative_prompt "fog" --steps 30 --cfg_scale 6.5 '
                 '--sampler_name "Euler" --seed 5 --width 512 --height 768 --batch_size 2 --n_iter 3 '
                 '--clip_skip 2 --scheduler karras --sd_model ./m\n')
    defaults = GenerationRequest(prompt="", steps=4, cfg_scale=3.0, negative_prompt="blur")
    plain, full = parse_file(path, "auto", defaults, default_model="base")
    assert plain.request == GenerationRequest(prompt="a plain prompt", steps=4, cfg_scale=3.0, negative_prompt="blur")
    assert plain.model == "base"
    assert full.request == GenerationRequest(
        prompt="a cat, oil", negative_prompt="fog", steps=30, cfg_scale=6.5, sampler="Euler", seed=5,
        width=512, height=768, batch_size=2, count=3, clip_skip=2, schedule="karras")
    assert full.model == "./m"


def test_jsonl_uses_the_same_keys_and_aliases(tmp_path):
    path = write(tmp_path, '{"prompt": "a", "cfg_scale": 5, "n_iter": 2}\n'
                 '# comment\n{"prompt": "b", "sampler": "DDIM", "count": 1, "negative-prompt": "x", "seed": null}\n',
                 name="p.jsonl")
    a, b = parse_file(path)
    assert (a.line, a.request.cfg_scale, a.request.count) == (1, 5.0, 2)
    assert (b.line, b.request.sampler, b.request.negative_prompt, b.request.seed) == (3, "DDIM", "x", None)


def test_format_detection(tmp_path):
    assert detect_format(tmp_path / "x.jsonl", ["a"]) == "jsonl"
    assert detect_format(tmp_path / "x.txt", ["# c", "", ' {"prompt": "a"}']) == "jsonl"
    assert detect_format(tmp_path / "x.txt", ["a cat", "--prompt b"]) == "webui"
    path = write(tmp_path, "--prompt x --steps 3\n")
    assert parse_file(path, "text")[0].request.prompt == "--prompt x --steps 3"
    with pytest.raises(UsageError, match="--prompt-format: unknown format 'yaml'"):
        parse_file(path, "yaml")


def test_every_bad_line_is_reported_at_once(tmp_path):
    (tmp_path / "init.png").write_bytes(b"not really")
    path = write(tmp_path, "\n".join([
        "fine prompt",                                    # 1
        "--prompt a --steps 0",                           # 2
        "--prompt b --width 100",                         # 3
        "--prompt c --cfg_scale lots",                    # 4
        "--prompt d --stepz 3",                           # 5
        "--prompt e --styles anime",                      # 6
        '--prompt "unclosed',                             # 7
        "--prompt f --sampler_name Eular",                # 8
        "--prompt g --init_image missing.png",            # 9
        "--prompt h --init_image init.png",               # 10
        "--prompt i --mode dream",                        # 11
        "--prompt j --steps 3 --steps 4",                 # 12
        "--prompt k --seed",                              # 13
    ]) + "\n")
    with pytest.raises(BatchFileError) as info:
        parse_file(path)
    problems = info.value.problems
    assert info.value.exit_code == 2
    assert [p.split(":")[1] for p in problems] == [str(n) for n in (2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13)]
    text = "\n".join(problems)
    for expected in (
        f"{path}:2: steps: 0 is out of range; use 1 to 1000",
        f"{path}:3: width: 100 is not a multiple of 8; try 96 or 104",
        f"{path}:4: cfg_scale: 'lots' is not a number",
        f"{path}:5: unknown key 'stepz'; did you mean steps?",
        f"{path}:6: styles: this WebUI key is not supported by sdcli",
        f"{path}:7: cannot split the line: No closing quotation",
        f"{path}:8: sampler_name: unknown sampler 'Eular'",
        f"{path}:9: init_image: no such file: {tmp_path / 'missing.png'}",
        f"{path}:9: mode img2img needs init_image",
        f"{path}:10: init_image: {tmp_path / 'init.png'} is not a PNG, JPEG or WebP image",
        f"{path}:11: mode: unknown mode 'dream'",
        f"{path}:12: steps is given twice",
        f"{path}:13: --seed has no value",
    ):
        assert expected in text, expected
    assert str(info.value).startswith(f"{path}: 13 bad line(s), nothing was run:\n")


def test_command_line_values_keep_their_flag_names(tmp_path):
    with pytest.raises(BatchFileError, match=r"p.txt:1: --steps: 0 is out of range"):
        parse_file(write(tmp_path, "a\n"), defaults=GenerationRequest(prompt="", steps=0))


@pytest.mark.parametrize("text, message", [
    ('[1, 2]', "expected a JSON object"),
    ('{"prompt": ', "not valid JSON"),
    ('{"prompt": 5}', "prompt: 5 is not text"),
    ('{"prompt": "a", "steps": 2.5}', "steps: 2.5 is not a whole number"),
    ('{"prompt": "a", "steps": true}', "steps: True is not a whole number"),
    ('{"prompt": "a", "mask": "m.png", "init_image": "i.png"}', "init_image: .*i.png is not a PNG, JPEG or WebP"),
    ('{"prompt": "a", "mask_blur": 3}', "mask_blur: not used by txt2img lines"),
])
def test_jsonl_errors(tmp_path, text, message):
    (tmp_path / "m.png").write_bytes(b"x")
    (tmp_path / "i.png").write_bytes(b"x")
    with pytest.raises(BatchFileError, match=message):
        parse_file(write(tmp_path, text + "\n", "p.jsonl"))


def test_empty_or_unreadable_files(tmp_path):
    with pytest.raises(UsageError, match="has no prompts"):
        parse_file(write(tmp_path, "# nothing\n\n"))
    with pytest.raises(UsageError, match="FILE: cannot read"):
        parse_file(tmp_path / "absent.txt")


def test_tables_have_one_row_per_key_and_mode():
    spellings = [s for k in KEYS for s in (k.name, *k.aliases)]
    assert len(spellings) == len(set(spellings))
    assert {k.mode for k in KEYS if k.mode} <= set(MODES)
    from sdcli.request.generation import MODE_PARTS, PARTS

    assert list(MODES) == list(MODE_PARTS)
    parts = {k.field.split(".")[0] for k in KEYS if "." in k.field}
    assert parts == set(PARTS), "every request part can be set from a line"


def test_item_seeds_derive_from_base_seed_and_global_index(tmp_path):
    path = write(tmp_path, "a\n--prompt b --batch_size 2 --n_iter 2\n--prompt c --seed 500 --n_iter 2\nd\n")
    units = plan_units(parse_file(path), base_seed=1000)
    assert [(u.line, u.first, u.request.seed, u.request.batch_size, u.request.count) for u in units] == [
        (1, 0, 1000, 1, 1), (2, 1, 1001, 2, 1), (2, 3, 1003, 2, 1), (3, 5, 500, 1, 1), (3, 6, 501, 1, 1),
        (4, 7, 1007, 1, 1)]
    assert [s for u in units for s in u.request.seeds()] == [1000, 1001, 1002, 1003, 1004, 500, 501, 1007]
    assert [u.number for u in units] == list(range(6))


def test_variation_seeds_follow_the_line_or_derive_from_the_base_seed(tmp_path):
    path = write(tmp_path, "--prompt a --subseed 50 --subseed_strength 0.3 --n_iter 2\n"
                 "--prompt b --subseed_strength 0.5 --batch_size 2\nc\n")
    units = plan_units(parse_file(path), base_seed=10)
    assert [(u.request.seed, u.request.subseed, u.request.subseed_strength) for u in units] == [
        (10, 50, 0.3), (11, 51, 0.3), (12, 10 + 5 + 2, 0.5), (14, None, 0.0)]
    with pytest.raises(BatchFileError, match="subseed_strength: 2.0 is out of range"):
        parse_file(write(tmp_path, "--prompt a --subseed_strength 2\n", "q.txt"))


def test_base_seed_leaves_room_for_every_item(tmp_path):
    lines = parse_file(write(tmp_path, "a\nb\nc\n"))
    assert resolve_base_seed(7, lines) == 7
    assert 0 <= resolve_base_seed(None, lines) <= MAX_SEED - 2
    with pytest.raises(UsageError, match=r"--seed: 4294967294 \+ 3 images passes 4294967295; use a first seed "
                                         r"of at most 4294967293"):
        resolve_base_seed(MAX_SEED - 1, lines)


def test_digest_changes_with_the_file_or_options(tmp_path):
    one = parse_file(write(tmp_path, "a\nb\n"))
    assert plan_digest(one, "[num]") == plan_digest(parse_file(tmp_path / "p.txt"), "[num]")
    assert plan_digest(one, "[num]") != plan_digest(one, "[seed]")
    assert plan_digest(one, "[num]") != plan_digest(parse_file(write(tmp_path, "a\nB\n", "q.txt")), "[num]")
    assert plan_digest(one, "[num]") != plan_digest(
        parse_file(tmp_path / "p.txt", defaults=GenerationRequest(prompt="", steps=3)), "[num]")


@pytest.mark.parametrize("name, count", [("prompts.txt", 3), ("prompts-webui.txt", 4), ("prompts.jsonl", 3)])
def test_the_examples_parse(name, count):
    from pathlib import Path

    lines = parse_file(Path(__file__).parents[2] / "examples" / name)
    assert len(lines) == count and all(line.request.prompt for line in lines)


def test_lines_split_only_on_newlines_with_true_line_numbers(tmp_path):
    text = "a\u2028still a\r\nb\x0cstill b\n\u0085c\x1c\x1d\x1e\n--prompt d --steps 0\n"
    with pytest.raises(BatchFileError) as caught:
        parse_file(write(tmp_path, text))
    assert caught.value.problems == [f"{tmp_path / 'p.txt'}:4: steps: 0 is out of range; use 1 to 1000"]
    lines = parse_file(write(tmp_path, text.replace("--steps 0", "--steps 2"), "q.txt"))
    assert [(line.line, line.request.prompt) for line in lines] == [
        (1, "a\u2028still a"), (2, "b\x0cstill b"), (3, "\u0085c\x1c\x1d\x1e".strip()), (4, "d")]


def test_prompt_files_over_the_size_limit_or_not_utf8_are_refused_before_reading_on(tmp_path, monkeypatch):
    from sdcli.batch import source

    monkeypatch.setattr(source, "MAX_FILE_BYTES", 1024)
    big = tmp_path / "big.txt"
    big.write_text("a prompt\n" * 200)
    with pytest.raises(UsageError, match=r"FILE: .*big.txt is over 0 MiB, the prompt file limit"):
        parse_file(big)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(UsageError, match=r"FILE: .*bad.txt:3: not valid UTF-8 \(byte 0xff\)"):
        parse_file(bad)


def test_hires_lines_webui_api_names(tmp_path):
    from sdcli.request.hires import HiresSettings

    path = write(tmp_path, '--prompt a --enable_hr true --hr_scale 1.5 --hr_second_pass_steps 3 '
                 '--denoising_strength 0.4 --hr_upscaler Lanczos --hr_prompt "a, sharp" --hr_sampler_name Euler\n'
                 'plain\n')
    hires, plain = parse_file(path, "auto", GenerationRequest(prompt="", steps=4))
    [json_line] = parse_file(write(tmp_path, '{"prompt": "b", "enable_hr": true, "hr_resize_x": 96, '
                                   '"hr_resize_y": 64}\n', name="p.jsonl"))
    assert hires.request.hires == HiresSettings(scale=1.5, steps=3, denoise=0.4, upscaler="Lanczos",
                                                prompt="a, sharp", sampler="Euler")
    assert hires.request.init is None and hires.request.mode == "txt2img"
    assert json_line.request.hires == HiresSettings(width=96, height=64)
    assert plain.request.hires is None


def test_hires_keys_need_enable_hr_and_txt2img(tmp_path):
    with pytest.raises(BatchFileError) as info:
        parse_file(write(tmp_path, "--prompt a --hr_scale 2\n--prompt b --enable_hr 1 --hr_scale 20\n"))
    text = str(info.value)
    assert "hr_scale: needs enable_hr true" in text and "hr_scale: 20 is out of range" in text
