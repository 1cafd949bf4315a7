import pytest

from sdcli.errors import UsageError
from sdcli.sampling.samplers import SAMPLERS, resolve_sampler, sampler_names


@pytest.mark.parametrize("spelling", ["DPM++ 2M Karras", "dpm++ 2m karras", "dpmpp-2m-karras",
                                      "k_dpmpp_2m_ka", "DPMPP_2M_KARRAS"])
def test_joined_names_and_aliases_resolve_to_one_choice(spelling):
    choice = resolve_sampler(spelling)
    assert (choice.sampler.name, choice.schedule) == ("DPM++ 2M", "karras")
    assert choice.scheduler_config == {"use_karras_sigmas": True}


def test_split_name_with_explicit_schedule_equals_joined_name():
    assert resolve_sampler("DPM++ 2M", "karras") == resolve_sampler("DPM++ 2M Karras")
    assert resolve_sampler("DPM++ 2M", "uniform").scheduler_config == {"timestep_spacing": "linspace"}


def test_automatic_resolves_to_the_samplers_default():
    assert resolve_sampler("DPM++ 2M").schedule == "karras"
    assert resolve_sampler("DPM++ 2M SDE").schedule == "exponential"
    assert resolve_sampler("Euler a").schedule == "uniform"
    assert resolve_sampler("DPM++ 2M SDE").scheduler_config == {
        "algorithm_type": "sde-dpmsolver++", "use_exponential_sigmas": True}


@pytest.mark.parametrize("spelling", ["Euler a", "euler-a", "k_euler_a", "EULER_A"])
def test_euler_ancestral_spellings(spelling):
    assert resolve_sampler(spelling).sampler.scheduler == "EulerAncestralDiscreteScheduler"


def test_every_joined_name_round_trips():
    for name in sampler_names():
        choice = resolve_sampler(name)
        assert name.startswith(choice.sampler.name)


def test_unknown_sampler_names_flag_and_suggests():
    with pytest.raises(UsageError, match=r"--sampler: unknown sampler 'Eular a'.*did you mean 'Euler a'"):
        resolve_sampler("Eular a")


@pytest.mark.parametrize("name", ["DDIM CFG++", "ddim cfg++", "ddim_cfgpp"])
def test_ddim_cfgpp_is_its_own_timestep_sampler(name):
    choice = resolve_sampler(name)
    assert (choice.sampler.name, choice.sampler.function, choice.schedule) == ("DDIM CFG++", "sample_ddim_cfgpp",
                                                                              "uniform")
    assert resolve_sampler("DDIM").sampler.name == "DDIM"


@pytest.mark.parametrize("name, schedule", [("DPM++ 3M SDE Karras", "karras"), ("DPM++ 2M SDE Heun", "exponential"),
                                            ("Euler a Align Your Steps", "align your steps"),
                                            ("k_dpm_2_a", "karras")])
def test_webui_samplers_and_schedules_once_refused_resolve(name, schedule):
    assert resolve_sampler(name).schedule == schedule


def test_diffusers_path_refuses_schedules_diffusers_lacks():
    with pytest.raises(UsageError, match="--schedule: KL Optimal needs sdcli's own sampler loop"):
        _ = resolve_sampler("Euler", "kl optimal").scheduler_config


def test_schedule_conflicts_and_unsupported_schedules():
    with pytest.raises(UsageError, match="--schedule: 'exponential' conflicts"):
        resolve_sampler("DPM++ 2M Karras", "exponential")
    # The WebUI takes every schedule type with its timestep samplers and runs them on their own timesteps.
    for name in ("DDIM", "PLMS", "UniPC", "DDIM CFG++"):
        choice = resolve_sampler(name, "karras")
        assert (choice.schedule, choice.written_label) == ("uniform", "Karras") and "no effect" in \
            choice.unused_schedule_note
    assert resolve_sampler("DDIM").unused_schedule_note == "" and resolve_sampler("DDIM").written_label == "Uniform"
    assert resolve_sampler("Euler", "karras").asked is None  # a sigma sampler uses it
    with pytest.raises(UsageError, match="--schedule: unknown schedule type 'fast'"):
        resolve_sampler("Euler", "fast")


def test_table_rows_are_unique():
    names = [s.name for s in SAMPLERS]
    assert len(names) == len(set(names))
