from pathlib import Path

import pytest

from harness.errors import DefinitionError
from harness.kernel import kconfig


def test_parse_forms():
    cfg = kconfig.parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_D=n\n'
                               '# comment\n\nCONFIG_E=0x10\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": None, "CONFIG_C": '"x y"', "CONFIG_D": None, "CONFIG_E": "0x10"}


def test_parse_rejects_junk_naming_line():
    with pytest.raises(DefinitionError) as e:
        kconfig.parse_config("CONFIG_A=y\nXFS=y\n", Path("frag.config"))
    assert e.value.key == "line 2" and "frag.config" in str(e.value)


def test_merge_later_wins_and_render_roundtrip():
    base = {"CONFIG_A": "y", "CONFIG_B": "y"}
    merged = kconfig.merge(base, [{"CONFIG_B": None, "CONFIG_C": "y"}, {"CONFIG_C": "m"}])
    assert merged == {"CONFIG_A": "y", "CONFIG_B": None, "CONFIG_C": "m"}
    assert kconfig.parse_config(kconfig.render(merged)) == merged
    assert base == {"CONFIG_A": "y", "CONFIG_B": "y"}


def test_check_reports_what_did_not_stick():
    req = {"CONFIG_XFS_FS": "y", "CONFIG_DRM": None, "CONFIG_HZ": "250"}
    final = {"CONFIG_XFS_FS": "m", "CONFIG_HZ": "250"}
    assert kconfig.check(req, final) == {"CONFIG_XFS_FS": ("y", "m")}
    assert kconfig.check({"CONFIG_DRM": None}, {"CONFIG_DRM": "y"}) == {"CONFIG_DRM": ("n", "y")}


def test_shipped_fragments_parse_and_keep_sysrq_keyboard():
    root = Path(__file__).resolve().parents[2] / "kernels/fragments"
    h = kconfig.parse_config((root / "harness.config").read_text())
    for opt in ("CONFIG_SERIO_I8042", "CONFIG_KEYBOARD_ATKBD", "CONFIG_MAGIC_SYSRQ", "CONFIG_BLK_DEV_NVME",
                "CONFIG_OCFS2_FS", "CONFIG_XFS_FS", "CONFIG_EXT4_FS", "CONFIG_AIO", "CONFIG_IO_URING",
                "CONFIG_DETECT_HUNG_TASK", "CONFIG_VIRTIO_BLK", "CONFIG_SCSI_VIRTIO", "CONFIG_9P_FS",
                "CONFIG_CONFIGFS_FS"):
        assert h[opt] == "y", opt
    t = kconfig.parse_config((root / "trim.config").read_text())
    assert not set(k for k, v in h.items() if v) & set(k for k, v in t.items() if v is None) - {
        "CONFIG_NETWORK_FILESYSTEMS", "CONFIG_QUOTA"}
