"""Prompt styles as the WebUI's modules/styles.py: the CSV, {prompt} placeholders, order, refusals."""

import pytest

from sdcli.errors import UsageError
from sdcli.request.generation import GenerationRequest
from sdcli.request.hires import HiresSettings
from sdcli.request.styles import PromptStyle, load_styles, merge, read_styles, styled

STYLES = (PromptStyle("wrap", "masterpiece, {prompt}, 4k", "blurry, {prompt}"),
          PromptStyle("tail", "oil painting", "lowres"))


def test_merge_is_the_webuis():
    assert merge("a {prompt} b", "cat") == "a cat b"
    assert merge("style", " cat ") == "cat, style"  # appended after a comma, each side stripped
    assert merge("style", "") == "style" and merge("", "cat") == "cat"


def test_styles_apply_in_order_to_both_prompts_and_the_hires_prompts():
    request = GenerationRequest(prompt="a cat", negative_prompt="fog",
                                hires=HiresSettings(prompt="a cat, sharp", negative_prompt=None))
    out = styled(request, ["wrap", "tail"], STYLES, "--style")
    assert out.prompt == "masterpiece, a cat, 4k, oil painting"
    assert out.negative_prompt == "blurry, fog, lowres"
    assert out.hires.prompt == "masterpiece, a cat, sharp, 4k, oil painting" and out.hires.negative_prompt is None
    assert styled(request, ["tail", "wrap"], STYLES, "--style").prompt == "masterpiece, a cat, oil painting, 4k"
    assert styled(request, [], STYLES, "--style") is request


def test_unknown_style_names_the_field_and_the_styles():
    with pytest.raises(UsageError, match=r"^styles: no style named 'nope'; styles: 'wrap', 'tail'$"):
        styled(GenerationRequest(prompt="x"), ["nope"], STYLES, "styles")
    with pytest.raises(UsageError, match=r"^--style: no style named 'x'; styles: none \(give --styles FILE"):
        styled(GenerationRequest(prompt="x"), ["x"], (), "--style")


def test_reading_the_webui_csv(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\n"wrap","masterpiece, {prompt}","blurry"\nplain,red,\n',
                    encoding="utf-8-sig")
    assert read_styles(path, "--styles") == [PromptStyle("wrap", "masterpiece, {prompt}", "blurry"),
                                             PromptStyle("plain", "red", "")]
    old = tmp_path / "old.csv"
    old.write_text("name, text\nlegacy, sepia\n")  # the WebUI's old two-column file, spaces after commas
    assert read_styles(old, "--styles") == [PromptStyle("legacy", "sepia", "")]
    webui = tmp_path / "webui"
    webui.mkdir()
    (webui / "styles.csv").write_text("name,prompt,negative_prompt\nplain,blue,\nonly,x,y\n")
    merged = load_styles([str(path)], str(webui))
    assert [(s.name, s.prompt) for s in merged] == [("plain", "red"), ("only", "x"), ("wrap", "masterpiece, {prompt}")]


@pytest.mark.parametrize("text, message", [
    ("prompt,negative_prompt\nx,y\n", "no 'name' column"),
    ("name,prompt\n,x\n", "line 2: a style without a name"),
])
def test_bad_styles_files_name_the_flag_and_file(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"^--styles: {path}.*{message}"):
        read_styles(path, "--styles")
    with pytest.raises(UsageError, match="^--styles: .*missing.csv: no such file$"):
        read_styles(tmp_path / "missing.csv", "--styles")
