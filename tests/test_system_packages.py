"""The one list of Debian/Ubuntu packages, and everything that quotes or reads it.

``packaging/debian-packages.txt`` is the only place a package name is written down: the README
shows each section word for word (checked here), ``.ci/run`` and the build workflow install
from ``dev.py deps``, and the app names the ``[app]`` section when Qt cannot load a platform
plugin.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_chat import system_packages
from tests.helpers import T

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = system_packages.read_sections(system_packages.LIST_FILE.read_text(encoding="utf-8"))


def readme_apt_lines() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    prefix = "sudo apt-get install --no-install-recommends "
    return [
        line.strip().removeprefix(prefix).split()
        for line in text.splitlines()
        if line.strip().startswith("sudo apt-get install")
    ]


def dev_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), *args],
        capture_output=True,
        text=True,
        timeout=T(30.0),
        cwd=ROOT,
    )


def test_the_list_has_a_section_per_purpose() -> None:
    assert list(SECTIONS) == ["app", "test", "bundle"]
    assert "python3-venv" in SECTIONS["app"]
    assert {"chromium", "libatomic1"} <= set(SECTIONS["test"])
    every = [name for names in SECTIONS.values() for name in names]
    assert len(every) == len(set(every)), "a package is listed twice"


def test_the_readme_quotes_each_section_word_for_word() -> None:
    assert readme_apt_lines() == [SECTIONS["app"], SECTIONS["test"], SECTIONS["bundle"]]


def test_ci_and_the_workflow_install_from_the_list_and_repeat_no_name() -> None:
    def code(path: Path) -> str:  # without the comments, which may name packages
        lines = path.read_text(encoding="utf-8").splitlines()
        return "\n".join(line for line in lines if not line.lstrip().startswith("#"))

    ci = code(ROOT / ".ci" / "run")
    workflow = code(ROOT / ".github" / "workflows" / "build.yml")
    assert "$(python3 dev.py deps test bundle)" in ci
    assert ci.rstrip().endswith("\npython3 dev.py test")  # exactly the README's test command
    assert "$(python dev.py deps test bundle --except " in workflow
    for name in (name for names in SECTIONS.values() for name in names):
        assert not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", ci), name
        # The workflow may name a package only to leave it out (--except NAME).
        mentions = re.findall(rf"(--except )?(?<![\w.-]){re.escape(name)}(?![\w.-])", workflow)
        assert all(mentions), f"{name} is written into the workflow"


def test_dev_py_deps_prints_the_app_section_and_the_purposes_asked_for() -> None:
    result = dev_py("deps", "test", "bundle")
    assert result.returncode == 0, result.stderr
    assert result.stdout == " ".join(SECTIONS["app"] + SECTIONS["test"] + SECTIONS["bundle"]) + "\n"
    result = dev_py("deps", "app", "bundle", "--except", "libpython3.11")
    assert result.stdout.split() == SECTIONS["app"] + ["binutils"]


def test_dev_py_deps_refuses_what_is_not_in_the_list() -> None:
    result = dev_py("deps", "games")
    assert result.returncode == 1
    assert "no [games] section" in result.stderr
    result = dev_py("deps", "app", "--except", "libfoo1")
    assert result.returncode == 1
    assert "libfoo1" in result.stderr


def test_a_malformed_list_is_refused_with_its_line_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        system_packages.read_sections("[app]\nlibgl1 libegl1\n")
    with pytest.raises(ValueError, match="line 1"):
        system_packages.read_sections("libgl1\n")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="asks apt (Debian/Ubuntu)")
def test_missing_asks_apt_and_says_nothing_for_what_is_there() -> None:
    assert system_packages.missing(["dpkg"]) == []
    # A name apt does not know: cannot be told (Ubuntu has no "chromium" package).
    assert system_packages.missing(["no-such-package-desktop-chat"]) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's Linux platform plugins")
def test_a_platform_plugin_that_cannot_load_names_every_package_the_app_needs(
    tmp_path: Path,
) -> None:
    platforms = tmp_path / "platforms"
    platforms.mkdir()
    (platforms / "libqxcb.so").write_bytes(b"not a shared library")
    problem = system_packages.platform_plugin_problem({"DISPLAY": ":0"}, plugins=tmp_path)
    assert problem is not None
    first, second = problem.splitlines()
    assert first.startswith("desktop-chat: Qt cannot load its xcb platform plugin: ")
    assert str(platforms / "libqxcb.so") in first
    assert second.endswith(system_packages.apt_command(SECTIONS["app"]))
    # Qt tries wayland first in a Wayland session, then xcb: both are reported.
    (platforms / "libqwayland.so").write_bytes(b"")
    problem = system_packages.platform_plugin_problem(
        {"XDG_SESSION_TYPE": "wayland"}, plugins=tmp_path
    )
    assert problem is not None
    assert [line.split(":")[1] for line in problem.splitlines()] == [
        " Qt cannot load its wayland platform plugin",
        " Qt cannot load its xcb platform plugin",
        " on Debian/Ubuntu, install what the app needs",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's Linux platform plugins")
def test_the_real_plugins_load_here_and_other_platforms_are_left_to_qt(tmp_path: Path) -> None:
    assert system_packages.platform_plugin_problem({"QT_QPA_PLATFORM": "xcb"}) is None
    assert system_packages.platform_plugin_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    # A plugin file that is not there is Qt's to report (it lists the plugins it has).
    assert system_packages.platform_plugin_problem({}, plugins=tmp_path) is None
