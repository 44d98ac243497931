"""The docs cannot drift from the code: every command shown in a code block of README.md and
docs/*.md is checked against the real CLI (the `kharness` argparse parser, the options pytest and
the kharness plugin register, the scripts and benchmarks on disk), every relative link and
anchor resolves, every repository path and `harness.` name the docs mention exists, every
docs/ page the code and config point to exists, and README.md stays a short first read."""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest
from _pytest.config import get_config  # pytest's own parser: the options `pytest ARGS` accepts

from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

# Lines of a code block that are commands to check, after leading VAR=value assignments.
PREFIXES = ("kharness ", "pytest ", "python -m harness.cli", "bash scripts/", "bash .ci/", ".venv/bin/",
            "scripts/")
REPO_PATH = re.compile(r"^(harness|tests|benchmarks|suite|scripts|kernels|nightly|vm-images|fstests-configs|"
                       r"docs|\.ci)/[\w./-]*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
DOCS_REF = re.compile(r"\bdocs/[a-z0-9_-]+\.md\b")  # docs/PAGE.md is a placeholder


# -- reading markdown ------------------------------------------------------------------------------

def code_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """Fenced code blocks as (line number of the first line, language, lines)."""
    blocks, cur, lang, start = [], None, "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if cur is None:
                cur, lang, start = [], line[3:].strip(), no + 1
            else:
                blocks.append((start, lang, cur))
                cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for every command line of every non-YAML/INI code block; lines ending
    in a backslash are joined with the next; leading VAR=value assignments are dropped."""
    out = []
    for start, lang, lines in code_blocks(text):
        if lang in ("yaml", "ini", "text", "json"):
            continue
        i = 0
        while i < len(lines):
            no, line = start + i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            line = re.sub(r"^(\s*[A-Z_][A-Z0-9_]*=\S+\s+)+", "", line).strip()
            if line.startswith(PREFIXES):
                out.append((no, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    infence = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            infence = not infence
        m = None if infence else re.match(r"^#{1,6} (.*)$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


# -- checking one command --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def pytest_parser():
    """pytest's own command-line parser with every plugin installed here registered (pytest's
    builtins, the kharness plugin, pytest-timeout, Hypothesis): what `pytest ARGS` would accept."""
    config = get_config()
    config.pluginmanager.load_setuptools_entrypoints("pytest11")
    return config._parser


def check_kharness(argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code:
            return "kharness rejects it: " + (err.getvalue().strip().splitlines() or ["?"])[-1]
    return None


def check_pytest(argv: list[str]) -> str | None:
    try:
        ns, unknown = pytest_parser().parse_known_and_unknown_args(argv)
    except (pytest.UsageError, SystemExit) as e:
        return f"pytest rejects it: {str(e).strip().splitlines()[-1]}"
    if unknown:
        return f"pytest has no option {unknown[0]}"
    for target in ns.file_or_dir or []:
        if not (ROOT / target.split("::")[0]).exists():
            return f"pytest path {target} does not exist"
    return None


def check_python(argv: list[str]) -> str | None:
    """`python ARGS` as the docs show it: -m pytest, -m harness.cli, -m benchmarks.NAME, or a script."""
    if argv[:2] == ["-m", "pytest"]:
        return check_pytest(argv[2:])
    if argv[:2] == ["-m", "harness.cli"]:
        return check_kharness(argv[2:])
    if len(argv) >= 2 and argv[0] == "-m" and argv[1].startswith("benchmarks."):
        module = ROOT / (argv[1].replace(".", "/") + ".py")
        return None if module.is_file() else f"no benchmark {argv[1]} ({module.relative_to(ROOT)})"
    if argv and argv[0].endswith(".py"):
        return None if (ROOT / argv[0]).is_file() else f"no script {argv[0]}"
    return f"python {' '.join(argv[:2])}: not a form the docs check (add it to tests/unit/test_docs.py)"


def check_command(line: str) -> str | None:
    """None if the command is right, else what is wrong with it."""
    try:
        argv = shlex.split(line, comments=True)
    except ValueError as e:
        return f"cannot split: {e}"
    # optional parts are shown in brackets: [--json], [--repeat 2]; check them as if given
    argv = [a[1:] if a.startswith("[") else a for a in argv]
    argv = [a[:-1] if a.endswith("]") and "[" not in a else a for a in argv]
    argv = [a for a in argv if a]
    prog, rest = argv[0], argv[1:]
    if prog in ("kharness", ".venv/bin/kharness"):
        return check_kharness(rest)
    if prog in ("pytest", ".venv/bin/pytest"):
        return check_pytest(rest)
    if prog in ("python", ".venv/bin/python"):
        return check_python(rest)
    if prog == "bash" or prog.startswith("scripts/"):
        script = rest[0] if prog == "bash" else prog
        return None if (ROOT / script).is_file() else f"no script {script}"
    if prog in (".venv/bin/pip", ".venv/bin/ruff", ".venv/bin/mypy"):
        return None
    return f"{prog}: not a command the docs check (add it to tests/unit/test_docs.py)"


def verbs_exist(span: str) -> str | None:
    """An inline `kharness VERB [SUBVERB] ...` in prose names verbs that exist (its options and
    arguments are often left out, so only the verbs are checked)."""
    parser = build_parser()
    words = [w for w in span.split()[1:] if w != "..."]
    for word in words:
        if word.startswith("-") or not re.match(r"^[a-z][a-z/-]*$", word):
            return None
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return None
        for alt in word.split("/"):          # `kharness bisect/check`
            if alt not in subs[0].choices:
                return f"kharness has no verb {alt!r} here (choose from {sorted(subs[0].choices)})"
        parser = subs[0].choices[word.split("/")[0]]
    return None


# -- the checker checks what it should -------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "kharness frobnicate",                                  # no such verb
    "kharness nightly run default --no-such-option",        # no such option
    "kharness bisect --kernel baseline --good A --bad B",   # a required option missing (--check)
    "python -m harness.cli results lst",
    "pytest --kernel=patched --no-such-option",
    "pytest --kernel=patched --quik",
    ".venv/bin/python -m pytest tests/no-such-dir",
    ".venv/bin/python -m benchmarks.no_such_benchmark",
    "bash scripts/no-such-script",
    "tox -e unit",                                          # not a form the check knows
])
def test_checker_rejects_a_broken_command(line):
    assert check_command(line) is not None


@pytest.mark.parametrize("line", [
    "kharness nightly run default --night ID  # a comment",
    "kharness --store /tmp/x.sqlite results compare RUN RUN",
    "kharness sysrq parse results/RUN/console.log [--json]",
    "pytest --kernel=patched --ray HEAD:6379 -m 'not vm' -q tests/unit",
    ".venv/bin/python -m pytest tests -v --timeout=3000 --durations=30",
    ".venv/bin/python -m benchmarks.perf_bisect --fillers-before 7",
    "bash scripts/setup",
])
def test_checker_accepts_a_right_command(line):
    assert check_command(line) is None


def test_verbs_in_prose_are_checked():
    assert verbs_exist("kharness nightly run") is None and verbs_exist("kharness bisect/check --ray") is None
    assert verbs_exist("kharness nightly sprint") is not None and verbs_exist("kharness bisect/chek") is not None


def test_commands_are_found_in_blocks_with_continuations():
    text = "x\n\n```sh\nKHARNESS_X=1 kharness doctor \\\n    --x\nls\n```\n\n```yaml\nkharness: no\n```\n"
    assert commands(text) == [(4, "kharness doctor --x")]


def test_slug_matches_github():
    assert slug("Which completions block: the patterns and the kernel's paths") == \
        "which-completions-block-the-patterns-and-the-kernels-paths"
    assert slug("Nightly plans: `nightly/NAME.yaml`") == "nightly-plans-nightlynameyaml"


# -- the docs --------------------------------------------------------------------------------------

def _rel(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def test_readme_is_a_short_first_read():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n < README_MAX_LINES, f"README.md has {n} lines; move detail into docs/ (limit {README_MAX_LINES})"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_command_in_a_code_block_is_real(doc):
    text = doc.read_text()
    bad = [f"{_rel(doc)}:{no}: {line}\n    -> {why}" for no, line in commands(text)
           if (why := check_command(line)) is not None]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_verbs_named_in_prose_exist(doc):
    bad = [f"`{span}`: {why}" for span in re.findall(r"`(kharness [^`\n]+)`", doc.read_text())
           if (why := verbs_exist(span)) is not None]
    assert not bad, f"{_rel(doc)}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_commands_are_in_fenced_blocks(doc):
    """An indented code block would escape the command check."""
    lines = doc.read_text().splitlines()
    infence = False
    bad = []
    for no, line in enumerate(lines, 1):
        if line.startswith("```"):
            infence = not infence
        elif not infence and line.startswith("    ") and line.strip().startswith(PREFIXES):
            bad.append(f"{_rel(doc)}:{no}: {line.strip()}")
    assert not bad, "commands outside fenced code blocks:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_and_anchors_resolve(doc):
    bad = []
    for m in LINK.finditer(doc.read_text()):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, frag = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{target}: no heading #{frag} in {dest.relative_to(ROOT)}")
    assert not bad, f"{_rel(doc)}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_named_paths_and_modules_exist(doc):
    """`harness/...`, `tests/...`, `benchmarks/...` paths and `harness.x.y` names in code spans."""
    bad = []
    for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
        word = span.split()[0] if span.split() else ""
        if re.search(r"[A-Z]{2,}", word):
            continue  # a placeholder: kernels/NAME.yaml
        if REPO_PATH.match(word) and not (ROOT / word.split("::")[0]).exists():
            bad.append(word)
        elif re.match(r"^harness(\.\w+)+$", word) and not _resolves(word):
            bad.append(word)
    assert not bad, f"{_rel(doc)} names what does not exist: {sorted(set(bad))}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docs_pages_that_code_and_config_point_to_exist():
    sources = [ROOT / "pyproject.toml", ROOT / "tox.ini", *sorted((ROOT / "harness").rglob("*.py")),
               *sorted((ROOT / "nightly").glob("*.yaml")), *sorted((ROOT / "vm-images").glob("*.yaml")),
               *sorted((ROOT / "benchmarks").glob("*.py")), *DOCS]
    bad = sorted({f"{f.relative_to(ROOT)}: {ref}" for f in sources for ref in DOCS_REF.findall(f.read_text())
                  if not (ROOT / ref).is_file()})
    assert not bad, "pointers to docs pages that do not exist:\n" + "\n".join(bad)


# -- what docs/testing.md and docs/benchmarks.md promise about the code layout ---------------------

def _imports(path: Path) -> list[str]:
    """Every module a file imports, relative imports resolved against its package."""
    pkg = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return out


def test_no_test_module_imports_another():
    """Shared helpers live in tests/helpers/ (or fixtures); a test module is never imported."""
    bad = sorted(f"{f.relative_to(ROOT)} imports {m}" for f in (ROOT / "tests").rglob("*.py")
                 for m in _imports(f) if re.search(r"(^|\.)test_\w+$", m) and m.startswith("tests."))
    assert not bad, "\n".join(bad)


def test_benchmarks_import_test_helpers_without_a_sys_path_edit():
    """`python -m benchmarks.NAME` from the repository root finds `tests.helpers` by itself."""
    bad = [f.name for f in sorted((ROOT / "benchmarks").glob("*.py"))
           if any(m.startswith("tests.") for m in _imports(f)) and _edits_sys_path(f)]
    assert not bad, bad


def _edits_sys_path(path: Path) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name)
               and n.value.id == "sys" for n in ast.walk(ast.parse(path.read_text())))


def test_code_points_to_docs_pages_not_readme_sections():
    """README.md is a short first read; code and config comments point to docs/PAGE.md instead."""
    files = [*sorted((ROOT / "harness").rglob("*.py")), *sorted((ROOT / "harness" / "image" / "guest").iterdir()),
             *sorted((ROOT / "nightly").glob("*.yaml"))]
    bad = [str(f.relative_to(ROOT)) for f in files if f.is_file() and "README" in f.read_text()]
    assert not bad, bad


def test_architecture_names_every_module():
    """docs/architecture.md describes the layout: a new module of harness/ gets its line there."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    spans = set(re.findall(r"`([^`\n]+)`", text))
    missing = [str(f.relative_to(ROOT)) for f in sorted((ROOT / "harness").rglob("*.py"))
               if f.name not in ("__init__.py", "__main__.py") and f.name not in spans
               and str(f.relative_to(ROOT)) not in spans]
    assert not missing, f"docs/architecture.md does not name: {missing}"
