"""`kharness bisect` and `kharness check`: find the culprit commit on real VMs, or judge one kernel
(exit 0 good, 1 bad, 125 cannot test: what `git bisect run` expects)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..errors import HarnessError
from ..image.xfstests import HOW_TO, XfstestsSourceError, configured_source, resolve
from .common import console, open_store, out, results_root_from_args, say


def _settings(args: argparse.Namespace):
    from ..drivers.checks import FioSettings  # heavy (checks, testbed, executors, scipy): loaded only for this verb
    return FioSettings(runtime=args.runtime, size=args.size, runs=args.runs, max_rounds=args.max_rounds)


def _tests_source(check):
    if check.kind != "xfstests":
        return None
    where = configured_source(None, None)
    if where is None:
        raise XfstestsSourceError(f"an xfstests check needs an xfstests source: {HOW_TO}")
    return resolve(*where).tree


def _bisect(args: argparse.Namespace) -> int:
    # heavy (checks, testbed, executors, scipy): loaded only for this verb
    from ..drivers.bisect import Bisect
    from ..drivers.bisect_flaky import FlakyBisect
    from ..drivers.bisect_perf import DEFAULT_BUDGET, DEFAULT_CONFIDENCE, PerfBisect
    from ..drivers.checks import parse_check
    from ..executors.choose import executor_for
    check = parse_check(args.check)
    with open_store(args) as store, executor_for(args.ray) as executor:
        common = dict(repeat=args.repeat, sink=store, say=say, fio=_settings(args), accel=args.accel,
                      tests_source=_tests_source(check), executor=executor)
        root = results_root_from_args(args)
        where = (args.kernel, args.good, args.bad, check, root)
        if check.kind == "fio":
            b: Bisect = PerfBisect(*where, confidence=args.confidence or DEFAULT_CONFIDENCE,
                                   budget=args.max_boots or DEFAULT_BUDGET, **common)
        elif args.confidence is None:
            b = Bisect(*where, **common)
        else:
            b = FlakyBisect(*where, confidence=args.confidence, budget=args.max_boots or 60, **common)
        result = b.run()
    out.print(escape(result.report))
    return 0 if result.culprit and result.confirmed else 1


def _check(args: argparse.Namespace) -> int:
    # heavy (checks, testbed, executors, scipy): loaded only for this verb
    from ..drivers.checks import EXIT_CODES, Checker, CheckError, parse_check
    from ..executors.choose import executor_for
    from ..run.testbed import Testbed
    # Usage errors (exit 2) are found before anything slow; after that, whatever stops the check
    # from giving a verdict (a build error, a harness failure) is exit 125: "cannot test".
    check = parse_check(args.check)
    if check.kind == "fio" and not args.reference:
        raise CheckError("a fio check compares against a reference kernel: give --reference NAME[@REF]")
    refs = [args.kernel] + ([args.reference] if args.reference else [])
    bed = Testbed(refs, image=check.image, accel=args.accel, say=say)
    with open_store(args) as store, executor_for(args.ray) as executor:
        try:
            bed.prepare()
            checker = Checker(bed, check, results_root_from_args(args), sink=store, say=say, fio=_settings(args),
                              tests_source=_tests_source(check), executor=executor)
            if check.kind == "fio":
                verdict = checker.performance(args.reference, args.kernel)
            else:
                verdict = checker.repeated(args.kernel, args.repeat)
        except HarnessError as e:
            console.print(f"[yellow]cannot test (exit 125):[/yellow] {escape(str(e))}")
            return 125
    out.print(escape(f"{args.kernel}: {verdict.outcome}: {verdict.reason}"))
    out.print(escape("runs: " + ", ".join(verdict.run_ids)))
    return EXIT_CODES[verdict.outcome]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", required=True,
                   help="boot | guest:COMMAND | xfstests:TEST[,TEST][@SECTION] | fio:FS/DISK/PATTERN/ENGINE[:MIN%%]"
                        " | counter:FS/DISK/PATTERN/ENGINE:METRIC[:MIN%%]")
    p.add_argument("--repeat", type=int, default=1, help="repeat functional checks; disagreement is a skip")
    p.add_argument("--runtime", type=int, default=5, help="fio check: seconds per run")
    p.add_argument("--size", default="32m", help="fio check: file size")
    p.add_argument("--runs", type=int, default=3, help="fio check: runs per boot")
    p.add_argument("--max-rounds", type=int, default=4,
                   help="fio check: alternating rounds (a boot of the reference, then of the kernel) at most")
    p.add_argument("--accel", choices=["kvm", "tcg"])
    p.add_argument("--results-dir", help="where run directories (and the bisect's directory) go")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the boots on a Ray cluster (auto, HOST:6379, ray://HOST:10001): a step's repeats "
                        "and fio rounds run in parallel, one boot per vm slot; needs pip install 'kharness[ray]'")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `bisect` and `check`."""
    b = sub.add_parser("bisect", help="find the first bad commit of a kernel definition's source")
    b.add_argument("--kernel", required=True, help="a kernel definition (its source holds the history)")
    b.add_argument("--good", required=True, help="a commit, tag or branch that passes the check")
    b.add_argument("--bad", required=True, help="a descendant of --good that fails it")
    b.add_argument("--confidence", type=float, metavar="P",
                   help="a flaky boot, guest: or xfstests: check: bisect probabilistically until one commit is the "
                        "first bad one with probability P (e.g. 0.95), spending runs where they tell most; a fio "
                        "check is always bisected so (default 0.99)")
    b.add_argument("--max-boots", type=int, metavar="N",
                   help="a probabilistic bisect stops after N boots, sure or not (default 60; a fio check: 160 "
                        "after its endpoints)")
    _common(b)
    b.set_defaults(func=_bisect)
    c = sub.add_parser("check", help="judge one kernel: exit 0 good, 1 bad, 125 cannot test (git bisect run)")
    c.add_argument("--kernel", required=True, help="NAME or NAME@REF")
    c.add_argument("--reference", help="fio checks: the kernel to compare against, NAME[@REF]")
    _common(c)
    c.set_defaults(func=_check)
