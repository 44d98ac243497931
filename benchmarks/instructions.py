"""Guest instructions per fio write under TCG, counted by a QEMU TCG plugin (issue #20, item 2).

Is it feasible here? Debian's QEMU 7.2 loads plugins, but no package ships the plugin API header
(``qemu-plugin.h``). The QEMU source package matching the installed one has it: this builds
``benchmarks/insn_plugin/insncount.c`` against the header taken from ``apt-get source qemu=VERSION``
(downloaded with private apt lists under the cache, nothing of the system's apt changed), then
boots the given kernels alternately with the plugin loaded and reads the count around each fio
run. The plugin is not a harness option yet: this benchmark adds it to the QEMU command line by
wrapping ``harness.vm.machine.qemu_argv``, and reads the count where ``harness.run.fio`` samples
the host's load.

Per run it prints instructions per write (the whole fio command: prep, layout and the measured
job, over the job's writes), IOPS (slowed by the instrumentation) and the host's free share; per
kernel the medians and CVs. docs/vms.md, "Guest instruction counts", has the figures.

    .venv/bin/python -m benchmarks.instructions [--kernels baseline,patched] [--boots 2] [--runs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import tempfile
from pathlib import Path

import harness.run.fio as run_fio
import harness.vm.machine as machine
from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.paths import cache_dir
from harness.run.plan import fio_cell, fio_spec
from harness.run.testbed import Testbed
from harness.util import run

SOURCE = Path(__file__).resolve().parent / "insn_plugin" / "insncount.c"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def qemu_version() -> str:
    """The installed qemu-system-x86 package's version, e.g. 1:7.2+dfsg-7+deb12u18+b3."""
    return run(["dpkg-query", "-W", "-f=${Version}", "qemu-system-x86"], timeout=30).stdout.strip()


def api_header() -> Path:
    """qemu-plugin.h of the QEMU source package matching the installed QEMU (cached)."""
    version = qemu_version().split("+b")[0]       # a binNMU (+bN) has its source's version
    out = cache_dir("qemu-plugin-api", version.replace(":", "_")) / "qemu-plugin.h"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="kharness-qemu-src-") as td:
        t = Path(td)
        (t / "lists" / "partial").mkdir(parents=True)
        (t / "sources.list").write_text(
            f"deb-src [signed-by={KEYRING}] http://deb.debian.org/debian bookworm main\n"
            f"deb-src [signed-by={KEYRING}] http://deb.debian.org/debian-security bookworm-security main\n")
        apt = ["apt-get", "-o", f"Dir::Etc::sourcelist={t / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
               "-o", f"Dir::State::Lists={t / 'lists'}", "-o", "APT::Get::List-Cleanup=0"]
        run([*apt, "update"], cwd=t, timeout=600)
        run([*apt, "source", "--download-only", f"qemu={version}"], cwd=t, timeout=1800)
        (orig,) = t.glob("qemu_*.orig.tar.*")
        run(["tar", "-xf", orig, "--wildcards", "--no-anchored", "include/qemu/qemu-plugin.h"], cwd=t, timeout=600)
        (header,) = t.glob("*/include/qemu/qemu-plugin.h")
        out.write_bytes(header.read_bytes())
    return out


def plugin() -> Path:
    """The plugin, compiled (cached by the hash of its source and the header)."""
    header = api_header()
    key = hashlib.sha256(SOURCE.read_bytes() + header.read_bytes()).hexdigest()[:16]
    lib = cache_dir("qemu-plugins", key) / "libinsncount.so"
    if not lib.exists():
        run(["cc", "-O2", "-shared", "-fPIC", "-Wall", f"-I{header.parent}", "-o", lib, SOURCE, "-lpthread"],
            timeout=300)
    return lib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default="baseline,patched")
    ap.add_argument("--boots", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="runs of the cell in each boot")
    args = ap.parse_args()
    lib = plugin()
    counter: dict[str, Path] = {}
    samples: list[int | None] = []
    wrapped_argv, wrapped_sample = machine.qemu_argv, run_fio.hostload.sample

    def qemu_argv(cfg, overlay, scratch, port, qmp, console, *a, **k):  # type: ignore[no-untyped-def]
        counter["path"] = Path(console).parent / "insn.count"
        return [*wrapped_argv(cfg, overlay, scratch, port, qmp, console, *a, **k),
                "-plugin", f"{lib},out={counter['path']}"]

    def sample(pid: int):  # type: ignore[no-untyped-def]
        try:
            samples.append(int(counter["path"].read_text()))
        except (KeyError, OSError, ValueError):
            samples.append(None)
        return wrapped_sample(pid)

    machine.qemu_argv = qemu_argv              # type: ignore[assignment]
    run_fio.hostload.sample = sample           # type: ignore[assignment]
    kernels = args.kernels.split(",")
    bed = Testbed(kernels).prepare()
    cell = fio_cell("ext4", "nvme", "unwritten-convert", "libaio", iodepth=32, size="32m", runtime=3, runs=args.runs)
    per: dict[str, list[tuple[float, float]]] = {k: [] for k in kernels}
    with tempfile.TemporaryDirectory() as tmp:
        for b in range(args.boots):
            for k in kernels:           # alternately, so the host's drift falls on both
                samples.clear()
                spec = fio_spec(bed, k, [cell], disk_size="2G", label=f"insn-{k}-{b}")
                (rec,) = execute([spec], RunContext(Path(tmp)))
                for m, before, after in zip(rec.measurements, samples[0::2], samples[1::2]):
                    writes = (m.counters or {}).get("fio_writes") or 0
                    if before is None or after is None or not writes or m.iops is None:
                        continue
                    per[k].append(((after - before) / writes, m.iops))
                    print(f"{k} boot {b} run {m.run_index}: {(after - before) / writes:.0f} instructions/write, "
                          f"{m.iops:.0f} IOPS, host free {m.host_free}", flush=True)

    def cv(xs: list[float]) -> float:
        return statistics.stdev(xs) / statistics.mean(xs) * 100 if len(xs) > 1 else 0.0

    for k, v in per.items():
        ipw, iops = [x[0] for x in v], [x[1] for x in v]
        if v:
            print(f"{k}: {len(v)} runs; instructions/write median {statistics.median(ipw):.0f} (CV {cv(ipw):.1f}%); "
                  f"IOPS median {statistics.median(iops):.0f} (CV {cv(iops):.1f}%)")


if __name__ == "__main__":
    try:
        main()
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"timed out: {e}") from None
