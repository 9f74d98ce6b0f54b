"""``perfml export k8s``: one file per object, a kustomization listing them, the same bytes on
every run, values from a file, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import yaml

from perfml.cli.app import main as cli


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_export_writes_every_object_and_a_kustomization(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert cli(["export", "k8s", "-o", str(out)]) == 0
    written = files(out)
    kustomization = yaml.safe_load(written.pop("kustomization.yaml"))
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == sorted(written)
    assert kustomization["resources"][0] == "00-namespace-perfml.yaml"
    for name, text in written.items():
        obj = yaml.safe_load(text)
        assert name.endswith(f"-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml")
    assert any("seldondeployment" in name for name in written)
    assert cli(["export", "k8s", "-o", str(tmp_path / "again")]) == 0
    assert files(tmp_path / "again") == files(out)  # deterministic bytes


def test_values_from_a_file_change_the_objects_and_stale_files_go(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert cli(["export", "k8s", "-o", str(out)]) == 0
    values = tmp_path / "values.yaml"
    values.write_text("serving_engine: deployment\nnamespace: ml\nreplicas: 4\n")
    assert cli(["export", "k8s", "-o", str(out), "--values", str(values)]) == 0
    names = set(files(out))
    assert not any("seldondeployment" in name for name in names)  # the earlier export's file
    serving = next(name for name in names if name.endswith("deployment-perfml-serving.yaml"))
    deployment = yaml.safe_load((out / serving).read_text())
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["spec"]["replicas"] == 4
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(names - {"kustomization.yaml"})


def test_a_bad_values_file_and_an_inline_password_are_refused(tmp_path: Path, capsys) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("serving_engine: triton\n")
    assert cli(["export", "k8s", "-o", str(tmp_path / "a"), "--values", str(values)]) == 2
    assert "serving_engine = 'triton'" in capsys.readouterr().err
    config = tmp_path / "perfml.yaml"
    config.write_text("registry:\n  url: postgresql+psycopg://perfml:hunter2@db/perfml\n")
    assert cli(["--config", str(config), "export", "k8s", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "registry.url" in err
    assert "PGPASSWORD" in err
    assert "hunter2" not in err
    assert not (tmp_path / "b").exists()
