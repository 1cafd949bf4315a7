import pytest

from sdcli.conditioning.prompts import parse_prompt, plain_text


def frags(text):
    parsed = parse_prompt(text)
    return [[(t, round(w, 4)) for t, w in seg] for seg in parsed.segments]


@pytest.mark.parametrize("text, expected", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat)", [("a ", 1.0), ("cat", 1.1)]),
    ("a ((cat))", [("a ", 1.0), ("cat", 1.21)]),
    ("a [cat]", [("a ", 1.0), ("cat", round(1 / 1.1, 4))]),
    ("a (cat:1.5) b", [("a ", 1.0), ("cat", 1.5), (" b", 1.0)]),
    ("(cat:1)", [("cat", 1.0)]),
    (r"a \(cat\)", [("a (cat)", 1.0)]),
    ("(a (b:2))", [("a ", 1.1), ("b", 2.2)]),
])
def test_attention_syntax(text, expected):
    assert frags(text) == [expected]


def test_break_splits_segments():
    assert frags("a cat BREAK a dog") == [[("a cat ", 1.0)], [(" a dog", 1.0)]]
    assert frags("BREAKFAST") == [[("BREAKFAST", 1.0)]]


def test_malformed_brackets_follow_a_rule_and_warn():
    parsed = parse_prompt("a cat) and (dog")
    assert parsed.segments == [[("a cat) and ", 1.0), ("dog", 1.1)]]
    assert any("unmatched ')'" in w for w in parsed.warnings)
    assert any("unclosed '('" in w for w in parsed.warnings)


def test_plain_text_strips_syntax():
    assert plain_text("a (cat:1.3) [on] mat BREAK night") == "a cat on mat night"


def test_lora_tags_no_longer_warn():
    assert parse_prompt("a cat <lora:detail:0.8>").warnings == []


@pytest.mark.parametrize("text", ["a [cat:dog:0.5] sat", "a cat AND a dog", "[a|b]"])
def test_prompt_editing_and_and_are_supported_without_warnings(text):
    assert parse_prompt(text).warnings == []


def test_no_false_alarms():
    assert parse_prompt("a (cat:1.2), ANDROID, [dog], \\[x:y\\]").warnings == []


@pytest.mark.parametrize("text,expected", [
    ("a (red:1.3) fox", [("a ", 1.0), ("red", 1.3), (" fox", 1.0)]),
    ("((a:1.2)) b", [("a", 1.2), (" b", 1.0)]),  # an explicit weight replaces the outer 1.1 (WebUI: 1.32)
    ("((a))", [("a", 1.1 * 1.1)]),
    ("(a) [b] c BREAK d", [("a", 1.1), (" [b] c BREAK d", 1.0)]),  # [ ] and BREAK are text to ComfyUI
    ("x \\(y\\) (z:abc)", [("x (y) ", 1.0), ("z:abc", 1.1)]),  # escapes; a weight that is no number is text
    ("a ) (b) (c", [("a ) (b) (c", 1.0)]),  # a stray ")" makes the rest text
    ("", []),
])
def test_comfyui_weight_grammar(text, expected):
    from sdcli.conditioning.prompts import comfy_weights

    assert comfy_weights(text) == expected
