"""``[gateway]`` is declared in one place: each part contributes its settings, and says which
of them the gateway reads only at start."""

import re
from pathlib import Path

import oemgateway
from gateway.spool import SPOOL_SPEC
from gateway.config import GATEWAY_SPEC, spec_keys
from gateway.settings import restart_keys, spec_of

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_each_setting_is_declared_by_one_part_and_the_loader_reads_them_all():
    keys = [key for part in oemgateway.GATEWAY_PARTS for key in spec_keys(part.spec)]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(spec_keys(GATEWAY_SPEC + SPOOL_SPEC)) == sorted(spec_keys(spec_of(oemgateway.GATEWAY_PARTS)))


def test_a_part_needs_a_restart_only_for_its_own_settings():
    for part in oemgateway.GATEWAY_PARTS:
        assert set(part.restart) <= set(spec_keys(part.spec)), part.restart


def test_the_readme_names_the_settings_that_need_a_restart():
    sentence = README.split("### `[gateway]`", 1)[1].split("\n### ", 1)[0].split("take effect at the next start", 1)[0]
    named = re.findall(r"`(\w+)`", sentence.rsplit("\n\n", 1)[-1])
    assert sorted(named) == sorted(restart_keys(oemgateway.GATEWAY_PARTS))
