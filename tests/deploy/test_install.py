"""scripts/install into a throwaway root, then the installed unit through `systemd-analyze verify`.

What a line PC gets is checked as files: the account lines, the modes of the config and state
directories, the venv's own `lineagent`, and the unit systemd itself parses (`verify` resolves the
ExecStart binaries inside the root, so it also proves the venv is where the unit says)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from agent.codes.package import generate_keys

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _install(root: Path, *args: str) -> str:
    done = subprocess.run(["bash", str(ROOT / "scripts/install"), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    out = _install(root)
    assert "venv" in out and "lineagent 0." in out
    out = _install(root, "--instance", "L2", "--no-venv")  # a second line on the same PC, same code
    assert "user lineagent exists" in out and "lineagent@L2.service" in out
    return root


def test_user_directories_and_configs(installed: Path) -> None:
    passwd = (installed / "etc/passwd").read_text().splitlines()
    (entry,) = [line for line in passwd if line.startswith("lineagent:")]
    assert entry.endswith(":/var/lib/lineagent:/usr/sbin/nologin")
    assert re.search(r"^dialout:x:20:(.*,)?lineagent$", (installed / "etc/group").read_text(), re.M)
    for d in ("etc/lineagent", "etc/lineagent/keys", "var/lib/lineagent", "var/lib/lineagent/L2"):
        assert stat.S_IMODE((installed / d).stat().st_mode) == 0o750, d
    one = (installed / "etc/lineagent/line.yaml").read_text()
    two = (installed / "etc/lineagent/L2.yaml").read_text()
    assert "ledger: /var/lib/lineagent/ledger.db" in one
    assert "ledger: /var/lib/lineagent/L2/ledger.db" in two
    assert stat.S_IMODE((installed / "etc/lineagent/line.yaml").stat().st_mode) == 0o640


def test_the_installed_agent_checks_its_config_and_names_what_is_missing(installed: Path) -> None:
    exe = installed / "opt/lineagent/.venv/bin/lineagent"
    cfg = installed / "etc/lineagent/line.yaml"
    done = subprocess.run([str(exe), "config", "check", str(cfg)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1
    assert "security.cloud_public_key: no such file" in done.stderr
    keys = installed / "etc/lineagent/keys"
    generate_keys(keys / "gen")
    shutil.copy(keys / "gen/public.pem", keys / "example-cloud-public.pem")
    done = subprocess.run([str(exe), "config", "check", str(cfg)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_a_second_install_keeps_the_config(installed: Path) -> None:
    cfg = installed / "etc/lineagent/line.yaml"
    cfg.write_text(cfg.read_text() + "# edited by the technician\n")
    out = _install(installed, "--no-venv")
    assert "config" in out and "kept" in out
    assert cfg.read_text().endswith("# edited by the technician\n")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
                    reason="systemd-analyze is not installed (scripts/setup installs the systemd package)")
@pytest.mark.parametrize("unit", ["lineagent.service", "lineagent@L2.service"])
def test_systemd_analyze_verifies_the_installed_unit(installed: Path, unit: str) -> None:
    units = installed / "usr/lib/systemd/system"
    if not units.exists():  # verify resolves sysinit.target and friends inside the root
        shutil.copytree(SYSTEM_UNITS, units, symlinks=True)
    done = subprocess.run(["systemd-analyze", f"--root={installed}", "verify", unit],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    done = subprocess.run(["systemd-analyze", "--offline=true", f"--root={installed}", "security", unit],
                          capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout + done.stderr)
    assert m is not None, done.stdout + done.stderr
    assert float(m.group(1)) <= 3.0  # systemd calls <= 3.9 "OK"; the hardening keeps it well inside


def test_units_say_what_the_daemon_does() -> None:
    for name in ("lineagent.service", "lineagent@.service"):
        unit = (ROOT / "systemd" / name).read_text()
        for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "SupplementaryGroups=dialout",
                     "NoNewPrivileges=true", "ProtectSystem=strict", "PrivateTmp=true", "ProtectHome=true",
                     "StandardOutput=journal", "User=lineagent"):
            assert f"\n{line}\n" in unit, (name, line)
    assert "/etc/lineagent/%i.yaml" in (ROOT / "systemd/lineagent@.service").read_text()
