"""Experiment files: validation errors that name the field, the run order, resume and the layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specwise.errors import SpecwiseError
from specwise.experiment import (cell_complete, cell_dir, cell_seed, control_workload, parse_config,
                                 quick_config, schedule)
from specwise.experiment.layout import prepare

GOOD = """
name: ab
servers:
  - {name: base, role: baseline, url: "http://127.0.0.1:8000"}
  - {name: spec, url: "http://127.0.0.1:8001", k: 4}
workloads:
  - {name: code, dataset: structured, temperatures: "0"}
  - {name: chat, dataset: mixed, temperatures: "0.1:60,1.0:40"}
loads: {concurrency: [4, 1]}
repetitions: 2
requests: 16
slo: {p99_tpot_ms: 80}
"""


def test_a_good_file() -> None:
    config = parse_config(GOOD)
    assert config.baseline.name == "base" and [c.name for c in config.candidates] == ["spec"]
    assert config.loads.unit == "concurrency" and config.loads.levels == [1.0, 4.0]
    assert config.slo.as_limits() == {"p99_tpot": 80.0}
    assert config.workload("chat").mix == ((0.1, 0.6), (1.0, 0.4))


@pytest.mark.parametrize(("edit", "field"), [
    (("loads: {concurrency: [4, 1]}", "loads: {concurrency: [4, 1], rate: [1]}"), "loads"),
    (("loads: {concurrency: [4, 1]}", "loads: {concurrency: [0]}"), "loads.concurrency[0]"),
    (('temperatures: "0.1:60,1.0:40"', 'temperatures: "hot"'), "workloads[1].temperatures"),
    (("dataset: mixed", "dataset: nosuchset"), "workloads[1].dataset"),
    (("requests: 16", "requests: 2"), "requests"),
    (("repetitions: 2", "repetitions: 0"), "repetitions"),
    (("role: baseline, ", ""), "experiment"),
    (('{name: spec, url: "http://127.0.0.1:8001", k: 4}', "{name: spec, k: 4}"), "servers[1]"),
    (("{name: spec,", "{name: base,"), "experiment"),
    (("slo: {p99_tpot_ms: 80}", "slo: {p99_tpot_ms: -1}"), "slo.p99_tpot_ms"),
    (("slo: {p99_tpot_ms: 80}", "slo: {p99_tpotms: 80}"), "slo.p99_tpotms"),
    (("name: ab", "name: 'a b'"), "name"),
    (('temperatures: "0.1:60,1.0:40"', 'temperatures: "0.1:60,1.0:40", production_temperatures: "warm"'),
     "workloads[1].production_temperatures"),
])
def test_bad_fields_are_named(edit: tuple[str, str], field: str) -> None:
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(SpecwiseError) as err:
        parse_config(text)
    assert err.value.field == field, err.value.line()


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(SpecwiseError, match="not valid YAML at line"):
        parse_config("servers: [\n")
    with pytest.raises(SpecwiseError, match="must be a YAML mapping"):
        parse_config("- a\n- b\n")


def test_order_alternates_and_seeds_are_shared() -> None:
    config = parse_config(GOOD)
    assert [(rep, s.name) for rep, s in schedule(config)] == [(0, "base"), (0, "spec"), (1, "spec"), (1, "base")]
    # The same prompts and seeds for A and B; different across repetitions and cells.
    assert cell_seed(config, "code", 1, 0) == cell_seed(config, "code", 1, 0)
    assert len({cell_seed(config, w, lv, r) for w in ("code", "chat") for lv in (1, 4) for r in (0, 1)}) == 8


def test_control_is_the_lowest_temperature() -> None:
    control = control_workload(parse_config(GOOD).workload("chat"))
    assert (control.name, control.dataset, control.temperatures) == ("chat-control", "mixed", "0.1")


def test_resume_needs_the_same_experiment(tmp_path: Path) -> None:
    config = parse_config(GOOD)
    prepare(config, tmp_path)
    prepare(config, tmp_path)  # the same: resumes
    with pytest.raises(SpecwiseError, match="holds a different experiment") as err:
        prepare(config.model_copy(update={"requests": 99}), tmp_path)
    assert err.value.field == "--out"
    directory = cell_dir(tmp_path, "code", "concurrency", 1.0, "base", 0)
    assert not cell_complete(directory)
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"complete": False}))
    assert not cell_complete(directory)


def test_quick_config_is_valid() -> None:
    config = quick_config()
    assert {s.launch.mode for s in config.servers if s.launch} == {"baseline", "draft", "ngram"}
    assert {w.temperatures for w in config.workloads} == {"0", "0:1,0.5:1,1.0:1"}


def test_cli_bad_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace("requests: 16", "requests: -3"))
    out = subprocess.run([sys.executable, "-m", "specwise", "run", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "requests" in out.stderr
    missing = subprocess.run([sys.executable, "-m", "specwise", "run", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_cli_unreachable_server_is_one_line_naming_it(tmp_path: Path) -> None:
    from specwise.engine.server import free_port

    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace("8000", str(free_port())).replace("8001", str(free_port())))
    out = subprocess.run([sys.executable, "-m", "specwise", "run", str(path), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().count("\n") == 0 and "servers.base" in out.stderr and "cannot reach" in out.stderr


def test_production_temperatures_are_read() -> None:
    config = parse_config(GOOD.replace('temperatures: "0.1:60,1.0:40"',
                                       'temperatures: "0.1:60,1.0:40", production_temperatures: "0.1:1,0.9:1"'))
    assert config.workloads[1].production_mix == ((0.1, 0.5), (0.9, 0.5))
    assert config.workloads[0].production_mix == ()


def test_a_workload_can_have_its_own_requests_per_cell() -> None:
    """A mix is decided class by class: the quick experiment gives its mixed workload 9 requests per class."""
    quick = quick_config()
    by_name = {w.name: w for w in quick.workloads}
    assert by_name["mixed"].requests == 27 and by_name["structured-t0"].requests is None
    with pytest.raises(SpecwiseError, match=r"workloads\[0\]\.requests"):
        parse_config(yaml.safe_dump({**quick.model_dump(mode="json", exclude_none=True),
                                     "workloads": [{"name": "w", "requests": 2}]}), "exp.yaml")
