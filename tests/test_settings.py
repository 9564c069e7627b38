"""The settings schema is the one source: its defaults pass its own checks, every group_data file only
sets known keys with good values, and the README's table is the schema's."""

import dataclasses
import ipaddress
import os
import runpy

import pytest

from zimbra_firewall import settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP_DATA = sorted(f for f in os.listdir(os.path.join(REPO, "group_data")) if f.endswith(".py"))


def test_the_readme_table_is_the_schemas():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    table = readme.split(settings.TABLE_START + "\n", 1)[1].split(settings.TABLE_END, 1)[0]
    assert table == settings.render_table(), "run: python -m zimbra_firewall.settings, and paste it in the README"


def test_every_default_passes_its_own_check_and_is_not_shared():
    checked = settings.read_settings({})
    assert [f.name for f in dataclasses.fields(checked)] == [s.name for s in settings.SETTINGS]
    first = settings.defaults()
    first["management_subnets"].append("10.0.0.0/8")
    assert settings.defaults()["management_subnets"] == []


def test_checked_settings_are_frozen_and_in_the_form_the_code_uses():
    checked = settings.read_settings(
        {"management_subnets": ["10.0.0.0/24", "2001:db8::/64"], "profile_names": {"public": "Mail"}}
    )
    assert checked.management_subnets == (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8::/64"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.rollback_seconds = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        checked.profile_names["public"] = "Everything"  # type: ignore[index]


@pytest.mark.parametrize("name", GROUP_DATA)
def test_every_group_data_file_sets_known_keys_with_good_values(name):
    data = {k: v for k, v in runpy.run_path(os.path.join(REPO, "group_data", name)).items() if not k.startswith("__")}
    unknown = [k for k in data if k not in settings.BY_NAME and not settings.FOREIGN_KEY.match(k)]
    assert unknown == []
    settings.read_settings(data)


def test_a_wrong_type_is_refused_naming_the_key():
    for key, value, words in [
        ("rollback_seconds", "120", "number of seconds (5 to 3600)"),
        ("xtables_lock_wait", 0, "(1 to 3600)"),
        ("profile_mode", "both", "use split or seed"),
        ("zimbra_nodes", "10.0.0.0/8", "must be a list"),
        ("exposure_overrides", [["public", "80/tcp"]], "must be a mapping"),
        ("optional_groups", ["Chat!"], "not a group name"),
        ("extra_allows", {"port": "7306/tcp"}, "must be a list"),
        ("extra_allows", [{"port": "7306/tcp", "from": ["10.0.0.14/32"], "to": "x"}], "write each as"),
        ("extra_allows", [{"port": "7306/tcp", "from": []}], "`from` lists no source"),
        ("extra_allows", [{"port": "7306/tcp", "from": ["0.0.0.0/0"]}], "is everyone"),
        ("extra_allows", [{"port": "7306/tcp", "from": ["10.0.0.14"]}], "needs a prefix length"),
        ("extra_allows", [{"port": "73066", "from": ["10.0.0.14/32"]}], "outside 1-65535"),
        ("extra_allows", [{"port": "7306/tcp", "from": ["10.0.0.14/32"], "on": ["mail box"]}], "a Zimbra service"),
    ]:
        with pytest.raises(settings.PolicyError) as error:
            settings.read_settings({key: value})
        assert error.value.key == key and words in str(error.value), (key, str(error.value))
