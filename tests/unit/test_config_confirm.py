"""The pillar keys of commit-confirmed changes: ``confirm`` (seconds) and
``allow_cut_sessions``, refused by name and value."""

import pytest
import zimbra_fw_config as cfg

MTA = {"roles": ["mta"]}


def problems(pillar):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MTA, **pillar})
    return info.value.problems


def test_confirm_and_allow_cut_sessions_default_to_off():
    config = cfg.parse_config(MTA)
    assert (config.confirm, config.allow_cut_sessions) == (None, False)


@pytest.mark.parametrize("seconds", [5, 120, 86400])
def test_confirm_takes_seconds_from_5_to_a_day(seconds):
    assert cfg.parse_config({**MTA, "confirm": seconds}).confirm == seconds


@pytest.mark.parametrize("value", [4, 0, -1, 86401, True, "120", 12.5, [120], {"seconds": 120}])
def test_confirm_out_of_range_or_not_a_number_is_refused_by_name_and_value(value):
    assert problems({"confirm": value}) == [
        f"zimbra_fw:confirm: {value!r} must be a number of seconds from 5 to 86400: how long the change may "
        "stand before it is rolled back unless zimbra_fw.confirm is called"
    ]


@pytest.mark.parametrize("value", ["yes", 1, None, []])
def test_allow_cut_sessions_must_be_true_or_false(value):
    assert problems({"allow_cut_sessions": value}) == [f"zimbra_fw:allow_cut_sessions: {value!r} must be true or false"]
