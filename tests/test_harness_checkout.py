"""The harnesses run from a checkout, found explicitly; the wheel's CLI says so in one line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streams.bench.checkout import NoCheckout, checkout
from streams.cli.main import main
from tests.support import REPO


def test_the_checkout_is_found_from_a_directory_inside_it():
    assert checkout(env={}, cwd=REPO / "deploy" / "bench") == REPO
    assert checkout(env={}, cwd=REPO) == REPO


def test_rewards_checkout_names_it_explicitly(tmp_path):
    assert checkout(env={"REWARDS_CHECKOUT": str(REPO)}, cwd=tmp_path) == REPO
    with pytest.raises(NoCheckout, match=r"REWARDS_CHECKOUT=.* is not a checkout"):
        checkout(env={"REWARDS_CHECKOUT": str(tmp_path)}, cwd=REPO)


def test_no_checkout_is_one_clear_line(tmp_path):
    with pytest.raises(NoCheckout) as found:
        checkout(env={}, cwd=tmp_path)
    assert "\n" not in str(found.value)
    assert "REWARDS_CHECKOUT" in str(found.value)


@pytest.mark.parametrize(
    ("argv", "harness"),
    [(["bench"], "streams.bench.run"), (["bench", "--peers"], "streams.bench.peers"),
     (["chaos"], "streams.chaos.soak")],
)  # fmt: skip
def test_a_harness_not_installed_is_one_line_and_exit_2(monkeypatch, capsys, argv, harness):
    monkeypatch.setitem(sys.modules, harness, None)  # as in the wheel: not importable

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rewards {argv[0]}: a development harness") and "\n" not in err


def test_the_wheel_leaves_the_harnesses_out_and_the_cli_works_without_them():
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(found["packages"]["find"]["exclude"]) == {"streams.bench*", "streams.chaos*"}
    script = (
        "import importlib, pkgutil, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('streams.bench', 'streams.chaos')):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import streams.cli\n"
        "for m in pkgutil.iter_modules(streams.cli.__path__, 'streams.cli.'):\n"
        "    if m.name != 'streams.cli.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "from streams.cli.main import main\n"
        "sys.exit(main(['chaos']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path("/"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("rewards chaos: a development harness"), done.stderr
