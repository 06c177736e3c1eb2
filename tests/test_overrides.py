"""The command line and the config: nested --config keys, typed values, complete config files."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slm.overrides import OverrideError, apply_command_line, set_nested, typed

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
DEFAULT = REPO / "config" / "config.yaml"


def _default() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def _dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """A real `snakemake -n -p` of this checkout's workflow in ``workdir``, whose config/config.yaml is the default."""
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(DEFAULT.read_text())
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    return subprocess.run([*command, "-n", "-p", "--cores", "1", *args], capture_output=True, text=True)


def _shell_commands(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith("Shell command:"))


def test_typed_reads_numbers_booleans_and_null_inside_lists_and_mappings():
    given = {"lr": "1e-4", "steps": "20", "on": "true", "off": "False", "limit": "null", "tasks": ["a", "2"], "x": 3}
    assert typed(given) == {"lr": 1e-4, "steps": 20, "on": True, "off": False, "limit": None, "tasks": ["a", 2], "x": 3}


def test_nested_keys_follow_the_schema():
    config = _default()
    set_nested(config, "training__lr", 1e-4, SCHEMA)
    set_nested(config, "runs__slm__ratio", 0.5, SCHEMA)
    set_nested(config, "runs__slm-0.4__method", "slm", SCHEMA)  # a new run (runs take any name)
    set_nested(config, "data__corpus__path", "open-web-math/open-web-math", SCHEMA)  # through oneOf / $ref
    set_nested(config, "tracking__wandb__project", "rho1", SCHEMA)  # a section the config lacks
    assert config["training"]["lr"] == 1e-4 and config["runs"]["slm"] == {
        "method": "slm",
        "ratio": 0.5,
        "unit": "batch",
    }
    assert config["runs"]["slm-0.4"] == {"method": "slm"} and config["tracking"] == {"wandb": {"project": "rho1"}}
    assert config["data"]["corpus"] == {"source": "generated", "path": "open-web-math/open-web-math"}


@pytest.mark.parametrize(
    "flag, message",
    [
        ("training__lrr", "--config training__lrr: training has no key 'lrr' (keys: batch_size, beta1,"),
        ("runs__slm__ration", "runs.slm has no key 'ration'"),
        ("trainig__lr", "the config has no key 'trainig'"),
        ("seed__value", "'seed' is not a mapping"),
    ],
)
def test_a_path_that_does_not_exist_is_named(flag, message):
    with pytest.raises(OverrideError) as err:
        set_nested(_default(), flag, 1, SCHEMA)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_complete_config_file_replaces_the_default_and_a_partial_one_extends_it():
    paper = REPO / "config" / "paper" / "math-1b.yaml"
    merged = _default()  # what Snakemake hands the Snakefile: the default, then the file, merged
    config = yaml.safe_load(paper.read_text())
    for key, value in config.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    assert apply_command_line(merged, SCHEMA, configfiles=[paper], cli_config={}) == [paper]
    assert merged == config
    suite = REPO / "config" / "miniature-suite.yaml"
    extended = _default()
    assert apply_command_line(extended, SCHEMA, configfiles=[suite], cli_config={}) == []
    assert extended == _default()
    # --replace-workflow-config: Snakemake has already left the default out
    assert apply_command_line(config, SCHEMA, configfiles=[paper], cli_config={}, replaced=True) == []


def test_config_overrides_reach_the_training_job(tmp_path):
    out = _dry_run(
        tmp_path,
        "--config",
        "training__lr=1e-4",
        "runs__slm__ratio=0.5",
        "training__checkpoints=[300000]",
        "--",
        "results/models/slm/final",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    train = next(line for line in _shell_commands(out.stdout) if '"out_dir": "results/models/slm/final"' in line)
    assert '"lr": 0.0001' in train and '"ratio": 0.5' in train and '"checkpoints": [300000]' in train
    # Snakemake's own nested form, whose values it leaves as strings: typed here too
    out = _dry_run(tmp_path, "--config", "training={lr: 1e-4, checkpoints: [300000]}", "--", "results/models/slm/final")
    assert out.returncode == 0, out.stderr[-3000:]
    train = next(line for line in _shell_commands(out.stdout) if '"out_dir": "results/models/slm/final"' in line)
    assert '"lr": 0.0001' in train and '"checkpoints": [300000]' in train and '"batch_size": 16' in train


def test_a_bad_override_stops_with_one_line(tmp_path):
    out = _dry_run(tmp_path, "--config", "training__lrr=1e-4")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "--config training__lrr: training has no key 'lrr' (keys: batch_size," in text
    assert "Failed validating" not in text and not (tmp_path / "results").exists()


def test_a_paper_config_from_the_command_line_plans_as_with_replace(tmp_path):
    paper = str(REPO / "config" / "paper" / "math-1b.yaml")
    plain = _dry_run(tmp_path, "--configfile", paper)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert f"Config: {paper} is complete; config/config.yaml is not merged in." in plain.stdout + plain.stderr
    replaced = _dry_run(tmp_path, "--configfile", paper, "--replace-workflow-config")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert _shell_commands(plain.stdout) == _shell_commands(replaced.stdout)
    paper_base = yaml.safe_load(Path(paper).read_text())["base_model"]["path"]
    assert "rule generate_data" not in plain.stdout and f'"init_model": "{paper_base}"' in plain.stdout
