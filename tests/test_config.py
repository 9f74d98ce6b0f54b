"""perfml.yaml: defaults, the commented file `perfml init` writes, and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perfml.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "perfml.yaml"
    path.write_text(text)
    return path


def test_no_file_means_every_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERFML_CONFIG", raising=False)
    assert load_settings() == Settings()
    assert Settings().store_path == Path(".perfml/store")


def test_the_default_file_states_exactly_the_defaults():
    assert Settings.model_validate(yaml.safe_load(DEFAULT_CONFIG)) == Settings()
    assert DEFAULT_CONFIG.count("#") > 10  # it is commented


def test_partial_file_keeps_other_defaults_and_resolves_paths_against_it(tmp_path):
    path = write(tmp_path, "workspace: ws\nfeaturestore:\n  memory_limit: 4GB\n")
    settings = load_settings(path)
    assert settings.workspace == tmp_path / "ws"
    assert settings.featurestore.memory_limit == "4GB"
    assert settings.store_path == tmp_path / "ws" / "store"
    assert settings.sources == Settings().sources


def test_env_var_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "demo:\n  hosts: 3\n")
    monkeypatch.setenv("PERFML_CONFIG", str(path))
    assert load_settings().demo.hosts == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "featurestore:\n  memory_limt: 4GB\n",
            "unknown key featurestore.memory_limt (value '4GB')",
        ),
        ("colour: blue\n", "unknown key colour (value 'blue')"),
        ("featurestore:\n  memory_limit: lots\n", "featurestore.memory_limit = 'lots'"),
        ("demo:\n  hosts: 0\n", "demo.hosts = 0: Input should be greater than or equal to 1"),
        ("sources:\n  prometheus:\n    step: 5 minutes\n", "sources.prometheus.step = '5 minutes'"),
        ("sources:\n  prometheus:\n    url: prom:9090\n", "sources.prometheus.url = 'prom:9090'"),
        ("demo: [1, 2\n", "is not valid YAML (line 2"),
        ("- a\n- b\n", "must be a mapping of settings, not list"),
    ],
)
def test_bad_settings_name_the_file_key_and_value(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "absent.yaml")


def test_the_gate_takes_margins_floors_and_mlflow_fields_and_a_validation_share(tmp_path):
    from perfml.registry import MetricThreshold

    path = write(
        tmp_path,
        "registry:\n  gate_validation: 0.3\n  gate:\n"
        "    - {metric: event_f1, min_value: 0.6, max_drop: 0.1}\n"
        "    - {metric: nab_standard, min_relative_change: 0.02}\n",
    )
    registry = load_settings(path).registry
    assert registry.gate_validation == 0.3
    assert MetricThreshold.all_of(registry.gate) == [
        MetricThreshold("event_f1", min_value=0.6, max_drop=0.1),
        MetricThreshold("nab_standard", min_relative_change=0.02),
    ]
    with pytest.raises(ConfigError, match=r"registry.gate.0.max_drop = -0.1"):
        load_settings(write(tmp_path, "registry:\n  gate:\n    - {metric: f1, max_drop: -0.1}\n"))
    with pytest.raises(ConfigError, match=r"registry.gate_validation = 1.0"):
        load_settings(write(tmp_path, "registry:\n  gate_validation: 1.0\n"))


def test_the_default_gate_has_margins_and_floors_that_can_refuse():
    gate = {t.metric: t for t in Settings().registry.gate}
    assert (gate["nab_standard"].min_value, gate["nab_standard"].max_drop) == (50.0, 5.0)
    assert (gate["event_f1"].min_value, gate["event_f1"].max_drop) == (0.5, 0.05)
