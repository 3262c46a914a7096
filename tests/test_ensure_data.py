"""scripts/ensure-data.sh (`make demo`'s data step) against stub id/sudo/apt-get: what it would run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lrf_optuna.data import FILES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ensure-data.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

# Each stub logs its command line; the fake apt-get "installs" the package where Debian puts it.
STUBS = {
    "id": 'echo "$FAKE_UID"',
    "sudo": (
        'echo "sudo $*" >> "$STUB_LOG"\n[ "$FAKE_SUDO" = nopasswd ] || exit 1\n'
        '[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"'
    ),
    "apt-cache": '[ -e "$STUB_DIR/lists" ] || [ "$FAKE_KNOWN" = 1 ]',
    "apt-get": (
        'echo "apt-get $* (DEBIAN_FRONTEND=$DEBIAN_FRONTEND)" >> "$STUB_LOG"\n'
        'case "$1" in update) : > "$STUB_DIR/lists" ;; install) [ "$FAKE_INSTALL" = ok ] || exit 100\n'
        '  dir="$LRF_OPTUNA_DATA_ROOT/usr/share/datasets/fashion-mnist"; /bin/mkdir -p "$dir"\n'
        "  for f in " + " ".join(FILES.values()) + '; do : > "$dir/$f"; done ;; esac'
    ),
}
INSTALL = (
    "apt-get install -y -qq --no-install-recommends dataset-fashion-mnist (DEBIAN_FRONTEND=noninteractive)"
)
UPDATE = "apt-get update -qq (DEBIAN_FRONTEND=noninteractive)"


@pytest.fixture
def machine(tmp_path):
    """A PATH of stubs only, an empty system root and home; ``run`` gives (code, stderr, log lines)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!{BASH}\n{body}\n")
        (stubs / name).chmod(0o755)
    (stubs / "env").symlink_to(shutil.which("env"))
    log = tmp_path / "log"

    def run(*, uid=1000, sudo="nopasswd", known=True, install="ok", without=(), **env):
        for name in without:
            (stubs / name).unlink()
        base = {"PATH": str(stubs), "HOME": str(tmp_path / "home"), "STUB_LOG": str(log)}
        base |= {"STUB_DIR": str(tmp_path), "LRF_OPTUNA_DATA_ROOT": str(tmp_path / "root")}
        base |= {
            "FAKE_UID": str(uid),
            "FAKE_SUDO": sudo,
            "FAKE_KNOWN": str(int(known)),
            "FAKE_INSTALL": install,
        }
        done = subprocess.run([BASH, str(SCRIPT)], env=base | env, capture_output=True, text=True, timeout=60)
        lines = log.read_text().splitlines() if log.exists() else []
        return done.returncode, done.stderr, lines

    return run


def _data_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in FILES.values():
        (path / name).touch()
    return path


def test_nothing_runs_when_the_files_are_there(machine, tmp_path):
    _data_dir(tmp_path / "root" / "usr" / "share" / "datasets" / "fashion-mnist")
    assert machine(uid=0) == (0, "", [])


@pytest.mark.parametrize("place", ["env", "keras"])
def test_nothing_runs_when_the_files_are_where_the_library_also_looks(machine, tmp_path, place):
    if place == "env":
        env = {"LRF_OPTUNA_FASHION_MNIST": str(_data_dir(tmp_path / "mine"))}
    else:
        _data_dir(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist")
        env = {}
    assert machine(uid=0, **env) == (0, "", [])


def test_root_installs_the_package(machine, tmp_path):
    code, err, log = machine(uid=0)
    assert (code, log) == (0, [INSTALL])  # no sudo, no update: the package is known
    assert "Installing Fashion-MNIST: apt-get install -y dataset-fashion-mnist" in err
    assert all(
        (tmp_path / "root/usr/share/datasets/fashion-mnist" / name).is_file() for name in FILES.values()
    )


def test_root_fetches_the_package_lists_first_when_the_package_is_unknown(machine):
    code, _, log = machine(uid=0, known=False)
    assert (code, log) == (0, [UPDATE, INSTALL])


def test_passwordless_sudo_installs_through_sudo(machine):
    code, _, log = machine(uid=1000, sudo="nopasswd")
    assert code == 0
    assert log == [
        "sudo -n true",
        f"sudo -n env DEBIAN_FRONTEND=noninteractive {INSTALL.split(' (')[0]}",
        INSTALL,
    ]


def test_sudo_with_a_password_stops_with_the_command_to_run(machine):
    code, err, log = machine(uid=1000, sudo="password", known=False)
    assert code == 1
    assert log == ["sudo -n true"]  # asked nothing, installed nothing
    assert "Run:  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist\n" in err
    assert "or set LRF_OPTUNA_FASHION_MNIST=/dir holding train-images-idx3-ubyte.gz" in err


def test_no_root_and_no_sudo_stops_with_the_command_to_run_as_root(machine):
    code, err, log = machine(uid=1000, without=["sudo"])
    assert (code, log) == (1, [])
    assert "there is no sudo" in err and "Run:  apt-get install -y dataset-fashion-mnist   (as root)" in err


def test_a_failed_install_stops_with_the_command(machine):
    code, err, log = machine(uid=0, install="fails")
    assert (code, log) == (1, [INSTALL])
    assert "apt-get install dataset-fashion-mnist failed" in err and "Run:  apt-get install -y" in err


def test_no_apt_get_says_where_the_files_come_from(machine):
    code, err, _ = machine(uid=0, without=["apt-get"])
    assert code == 1
    assert "no apt-get here" in err and "set LRF_OPTUNA_FASHION_MNIST=/that/dir" in err


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_runs_the_data_step_and_make_test_does_not():
    def planned(target: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        done = subprocess.run(["make", "-n", target], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "scripts/ensure-data.sh" in planned("demo")
    assert "ensure-data" not in planned("test")
