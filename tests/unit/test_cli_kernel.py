"""`kharness kernel list|show` print descriptions and patch subjects as text, never as markup:
`[/bold]` once crashed `kernel list`, and `[bug] [red]` in a subject was silently dropped."""

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

import harness.cli.kernel as kernel_cli
from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "closes [/bold] and opens [red]"


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "kernels", proj / "kernels")
    patch = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    patch.write_text(patch.read_text().replace("Subject: [PATCH] fs: direct-io:",
                                               "Subject: [PATCH] fs: [bug] [red] direct-io:", 1))
    (proj / "kernels/marked.yaml").write_text(f"description: '{HOSTILE}'\nbase: patched\n")
    monkeypatch.setenv("KHARNESS_ROOT", str(proj))
    buf = io.StringIO()
    monkeypatch.setattr(kernel_cli, "out", Console(file=buf, width=400, highlight=False, soft_wrap=True))
    return buf


def test_kernel_list_prints_markup_literally(project):
    assert main(["kernel", "list"]) == 0
    text = project.getvalue()
    assert "marked" in text and "[/bold]" in text and "[red]" in text


def test_kernel_show_prints_subjects_literally(project):
    assert main(["kernel", "show", "marked"]) == 0
    text = project.getvalue()
    assert HOSTILE in text
    assert "fs: [bug] [red] direct-io: complete deferred AIO writes" in text


def test_disk_full_is_an_error_naming_the_file_not_a_traceback(monkeypatch, capsys):
    import errno

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/var/cache/kharness/kernels/x/bzImage")
    monkeypatch.setattr(kernel_cli, "_kernel_list", full)
    buf = io.StringIO()
    monkeypatch.setattr("harness.cli.console", Console(file=buf, width=300))
    assert main(["kernel", "list"]) == 2
    text = buf.getvalue()
    assert "disk full writing /var/cache/kharness/kernels/x/bzImage" in text and "Traceback" not in text
