"""request.vocabulary: the one declaration of each choice table, and the code that runs each choice."""

import pytest

from sdcli.request import vocabulary as v


def test_every_resize_and_fill_choice_has_its_implementation():
    from sdcli.io.images import FILLERS, RESIZERS

    assert tuple(RESIZERS) == v.RESIZE_MODES
    assert tuple(FILLERS) == v.OUTPAINT_FILLS
    assert set(v.RESIZE_CODES.values()) == set(v.RESIZE_MODES)
    assert set(v.MASKED_CONTENT_CODES.values()) == set(v.MASKED_CONTENTS)
    assert set(v.INPAINT_AREA_CODES.values()) == set(v.INPAINT_AREAS)


@pytest.mark.parametrize("source", v.RNG_SOURCES)
def test_every_rng_source_makes_noise(source):
    from sdcli.sampling.rng import draw, make_generator

    generator = make_generator(source, 1, "cpu")
    assert tuple(draw(source, generator, (1, 4, 2, 2), "cpu").shape) == (1, 4, 2, 2)


def test_one_table_each():
    import sdcli.conditioning.encoding as encoding
    import sdcli.models.loader as loader
    import sdcli.request.generation as generation
    import sdcli.sampling.rng as rng

    assert loader.PREDICTION_TYPES is v.PREDICTION_TYPES
    assert not hasattr(rng, "RNG_SOURCES") and not hasattr(encoding, "EMPHASES")
    assert generation.choice_key is v.choice_key
    assert v.choice_key("No_Norm") == "no norm" and v.choice_key(" NV ") == "nv"
