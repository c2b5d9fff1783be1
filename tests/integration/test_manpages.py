#!/usr/bin/env python3
"""Checks the manual pages in man/ against the programs and the shipped
configuration:

  mandoc_lint               `mandoc -Tlint -W warning` is silent on every page
  coechod_flags             the OPTIONS of coechod.8 are the flags of
                            `coechod --help`, paired as --help pairs them
  coecho_load_flags         the same for coecho-load.1 and `coecho-load --help`
  files_name_the_built_in_path
                            the FILES of coechod.8 and coechod.yaml.5 name the
                            default configuration file `coechod --help` names
  conf_keys_documented      every key of conf/coechod.yaml (commented-out
                            example keys too) is in the KEYS of coechod.yaml.5
  documented_keys_exist     every key in the KEYS of coechod.yaml.5 is known to
                            the parser (`coechod -t` says no "unknown key")
  parser_keys_documented    every key the parser knows (it lists them when it
                            rejects an unknown key) is in the KEYS
  config_examples_valid     the configurations in the EXAMPLES of
                            coechod.yaml.5 pass `coechod -t --no-host-check`

    test_manpages.py              run every test
    test_manpages.py NAME...      run only the named tests
    test_manpages.py --list       list the test names

Keys are named by path as coechod's error messages name them, with list
entries as []: limits.backlog, listen[].port. The KEYS section of
coechod.yaml.5 has one `.It Ic PATH ...` line per key; the OPTIONS section of
each page has one `.It Fl x , Fl \\-long ...` line per option.

Environment: BUILDDIR (the binaries; default: the top of the source tree),
SRCDIR (man/ and conf/; default: two levels above this script), COECHOD and
COECHO_LOAD (the binaries themselves), MANDOC (default: mandoc on PATH).
Exit status: 0 if every test passed, 1 if any failed, 77 (automake SKIP) if
mandoc or a binary is missing, 2 on a usage error.

Python 3 standard library only. The runner comes from harness.py next to
this file.
"""

import os
import re
import shutil
import subprocess
import sys

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
import harness  # noqa: E402
from harness import check  # noqa: E402

TOP = os.path.abspath(os.path.join(SCRIPT_DIR, os.pardir, os.pardir))
SRCDIR = os.path.abspath(os.environ.get("SRCDIR") or TOP)
BUILDDIR = os.path.abspath(os.environ.get("BUILDDIR") or TOP)
COECHOD = os.path.abspath(os.environ.get("COECHOD")
                          or os.path.join(BUILDDIR, "src", "server", "coechod"))
COECHO_LOAD = os.path.abspath(os.environ.get("COECHO_LOAD")
                              or os.path.join(BUILDDIR, "src", "load", "coecho-load"))
MANDOC = os.environ.get("MANDOC") or shutil.which("mandoc")



def page_path(name):
    """coechod.8 and coechod.yaml.5 are made by make in BUILDDIR/man from
    templates (.in) in SRCDIR/man; coecho-load.1 is only in SRCDIR/man."""
    built = os.path.join(BUILDDIR, "man", name)
    return built if os.path.isfile(built) else os.path.join(SRCDIR, "man", name)
CONF = os.path.join(SRCDIR, "conf", "coechod.yaml")
PAGES = ("coechod.8", "coechod.yaml.5", "coecho-load.1")

# A key no schema has, too long for a did-you-mean, so that coechod answers
# "unknown key; expected one of KEY, KEY, ...".
BOGUS = "no_such_key_" + "z" * 30

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# helpers

def run(args, timeout=10.0):
    """Runs a command to completion; returns (exit status, stdout, stderr)."""
    try:
        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=harness.daemon_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise harness.TestFailure("%s did not exit within %.0f s" % (" ".join(args), timeout))
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def read_page(name):
    path = page_path(name)
    check(os.path.isfile(path), "%s does not exist (BUILDDIR=%s, SRCDIR=%s)"
          % (path, BUILDDIR, SRCDIR))
    with open(path, encoding="utf-8") as f:
        return f.read()


def section(page_text, name, page):
    """The source lines of section .Sh NAME, up to the next .Sh."""
    lines, inside, found = [], False, False
    for line in page_text.splitlines():
        if line.startswith(".Sh "):
            inside = line[4:].strip().strip('"') == name
            found = found or inside
            continue
        if inside:
            lines.append(line)
    check(found, "%s has no .Sh %s section" % (page, name))
    return lines


# ---- flags -------------------------------------------------------------------

FLAG_RE = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*|-[A-Za-z])(?![\w-])")


def help_flags(binary):
    """(every flag in the --help text, the flag groups of its option lines)."""
    rc, out, err = run([binary, "--help"])
    check(rc == 0, "%s --help: exit %s, stderr %r" % (binary, rc, err.strip()[:200]))
    groups = []
    for line in out.splitlines():
        if re.match(r"\s+-", line):
            # "  -c, --config FILE   text": the flags before the description
            head = re.split(r"\s{2,}", line.strip())[0]
            flags = FLAG_RE.findall(head)
            if flags:
                groups.append(frozenset(flags))
    return set(FLAG_RE.findall(out)), groups


MACRO_RE = re.compile(r"^[A-Z][a-z][a-z]?$")  # Ar, Fl, Ns, Op, ...


def page_flags(page):
    """The flag groups of the .It lines in the page's OPTIONS section."""
    groups = []
    for line in section(read_page(page), "OPTIONS", page):
        if not line.startswith(".It "):
            continue
        words, flags, in_fl = line.split()[1:], [], False
        for w in words:
            if MACRO_RE.match(w):
                in_fl = w == "Fl"
            elif in_fl and w not in (",", "|", ";", "(", ")", "[", "]"):
                flags.append("-" + w.replace("\\&", "").replace("\\-", "-"))
        if flags:
            groups.append(frozenset(flags))
    check(groups, "%s: no .It Fl lines in OPTIONS" % page)
    return groups


def show(groups):
    return ", ".join(sorted(" ".join(sorted(g, key=len)) for g in groups))


def compare_flags(binary, page):
    all_help, help_groups = help_flags(binary)
    check(help_groups, "%s --help lists no options" % binary)
    groups = page_flags(page)
    documented = set().union(*groups)
    prog = os.path.basename(binary)
    problems = []
    missing = sorted(all_help - documented)
    if missing:
        problems.append("%s --help has %s, not in the OPTIONS of %s"
                        % (prog, " ".join(missing), page))
    extra = sorted(documented - all_help)
    if extra:
        problems.append("the OPTIONS of %s have %s, not in %s --help"
                        % (page, " ".join(extra), prog))
    if not problems and set(help_groups) != set(groups):
        problems.append("the short and long forms are paired differently: %s --help "
                        "lists %s; %s lists %s" % (prog, show(set(help_groups) - set(groups)),
                                                   page, show(set(groups) - set(help_groups))))
    check(not problems, "\n".join(problems))


# ---- configuration keys --------------------------------------------------------

def strip_comment(line):
    """line without a trailing " # comment" (outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


KEY_RE = re.compile(r"([A-Za-z_][\w-]*)\s*:(?:\s+(.*))?$")
FLOW_KEY_RE = re.compile(r"[{,]\s*([A-Za-z_][\w-]*)\s*:")
# A commented-out key: "# key: value" with one word, a quoted string or a
# flow collection as its value (or none). Prose such as "# Default: 1024;
# 1-65535." or "# note: this is ..." is not.
COMMENTED_KEY_RE = re.compile(
    r"(- )?[a-z][a-z0-9_]*:(\s*|\s+(\S+|\"[^\"]*\"|'[^']*'|\{.*\}|\[.*\]))$")


def conf_keys(text):
    """Key paths of a YAML configuration written the way conf/coechod.yaml
    is: block mappings, block lists of flow or block mappings, flow
    mappings as values; commented-out keys count as keys."""
    keys = set()
    stack = []  # (indentation, path): the open containers

    def add(parent, name):
        path = parent + "." + name if parent else name
        keys.add(path)
        return path

    for raw in text.splitlines():
        m = re.match(r"^(\s*)#\s?(.*)$", raw)
        if m:  # a comment: keep it only if it is a commented-out key
            body = strip_comment(m.group(2))
            if not COMMENTED_KEY_RE.match(body.strip()):
                continue
            raw = m.group(1) + body
        line = strip_comment(raw)
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        m = re.match(r"^(\s*)(-\s+)?(.*)$", line)
        indent, dash, content = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        if dash:  # an entry of the list that parent is
            parent += "[]"
            stack.append((indent, parent))
            indent += len(dash)
        if content.startswith("{"):
            for name in FLOW_KEY_RE.findall(content):
                add(parent, name)
            continue
        km = KEY_RE.match(content)
        if not km:
            continue
        path = add(parent, km.group(1))
        value = (km.group(2) or "").strip()
        if value.startswith("{"):
            for name in FLOW_KEY_RE.findall(value):
                add(path, name)
        elif not value:
            stack.append((indent, path))
    return keys


def page_keys():
    """Key paths of the .It Ic lines in the KEYS section of coechod.yaml.5."""
    keys = []
    for line in section(read_page("coechod.yaml.5"), "KEYS", "coechod.yaml.5"):
        m = re.match(r"\.It\s+Ic\s+(\S+)", line)
        if m:
            keys.append(m.group(1).replace("\\&", ""))
    check(keys, "coechod.yaml.5: no .It Ic KEY lines in KEYS")
    return keys


def yaml_at(path, value):
    """A configuration that sets key path (a.b, a[].b) to value."""
    lines, indent, dash = [], 0, False
    parts = path.split(".")
    for i, part in enumerate(parts):
        is_list = part.endswith("[]")
        name = part[:-2] if is_list else part
        lead = " " * indent + ("- " if dash else "")
        if dash:
            indent += 2
            dash = False
        if i == len(parts) - 1:
            lines.append("%s%s: %s" % (lead, name, value))
        else:
            lines.append("%s%s:" % (lead, name))
            indent += 2
            dash = is_list
    return "\n".join(lines) + "\n"


def check_config(ctx, text, name="probe.yaml", flags=()):
    """coechod -t on text: (exit status, stdout, stderr)."""
    return run([COECHOD, "-t"] + list(flags) + ["-c", ctx.write_config(text, name)])


def unknown_key(ctx, path):
    """coechod's "unknown key" line for path set to null, or None."""
    rc, _, err = check_config(ctx, yaml_at(path, "~"))
    return next((l for l in err.splitlines() if "unknown key" in l), None)


def known_under(ctx, container):
    """The keys coechod lists as valid in container (a path, "" for the top
    level, a[] for the entries of list a), or None if it is no mapping."""
    line = unknown_key(ctx, container + "." + BOGUS if container else BOGUS)
    m = re.search(r"unknown key; expected one of (.*)$", line or "")
    return [k.strip() for k in m.group(1).split(",")] if m else None


def parser_keys(ctx):
    """Every key path the parser knows, found by asking it."""
    keys, todo = set(), [""]
    while todo:
        container = todo.pop()
        for name in known_under(ctx, container) or []:
            path = container + "." + name if container else name
            keys.add(path)
            for sub in (path, path + "[]"):
                if sub.count(".") < 4 and known_under(ctx, sub) is not None:
                    todo.append(sub)
    return keys


# ---------------------------------------------------------------------------
# tests

@test
def mandoc_lint(ctx):
    """mandoc -Tlint -W warning prints nothing and exits 0 for each page."""
    problems = []
    for page in PAGES:
        path = page_path(page)
        if not os.path.isfile(path):
            problems.append("%s does not exist" % path)
            continue
        rc, out, err = run([MANDOC, "-Tlint", "-W", "warning", path])
        if rc != 0 or out.strip() or err.strip():
            problems.append("mandoc -Tlint -W warning %s: exit %d\n%s"
                            % (page, rc, (out + err).strip()))
    check(not problems, "\n".join(problems))


@test
def coechod_flags(ctx):
    """coechod --help and the OPTIONS of coechod.8 list the same flags."""
    compare_flags(COECHOD, "coechod.8")


@test
def files_name_the_built_in_path(ctx):
    """The FILES of coechod.8 and coechod.yaml.5 name the default
    configuration file that `coechod --help` prints: the one of the
    directories this tree was configured with, not a fixed one."""
    rc, out, err = run([COECHOD, "--help"])
    check(rc == 0, "coechod --help: exit %d: %s" % (rc, err.strip()))
    m = re.search(r"\(default (/\S+)", out)
    check(m, "coechod --help names no default configuration file:\n%s" % out)
    default = m.group(1)
    ctx.note("coechod --help: default %s" % default)
    for page in ("coechod.8", "coechod.yaml.5"):
        files = "\n".join(section(read_page(page), "FILES", page))
        named = re.findall(r"^\.It Pa (/\S+coechod\.yaml)$", files, re.M)
        check(named == [default], "FILES of %s names %s, coechod --help says %s"
              % (page, named or "no configuration file", default))


@test
def coecho_load_flags(ctx):
    """coecho-load --help and the OPTIONS of coecho-load.1 list the same
    flags."""
    compare_flags(COECHO_LOAD, "coecho-load.1")


@test
def conf_keys_documented(ctx):
    """Every key of conf/coechod.yaml is in the KEYS of coechod.yaml.5."""
    check(os.path.isfile(CONF), "%s does not exist (SRCDIR=%s)" % (CONF, SRCDIR))
    with open(CONF, encoding="utf-8") as f:
        keys = conf_keys(f.read())
    check(any("." in k for k in keys),
          "found no nested key in %s (keys: %s): the reader here is broken"
          % (CONF, " ".join(sorted(keys))))
    ctx.note("%s: %s" % (CONF, " ".join(sorted(keys))))
    missing = sorted(keys - set(page_keys()))
    check(not missing, "keys of conf/coechod.yaml missing from the KEYS of "
          "coechod.yaml.5: %s" % " ".join(missing))


@test
def documented_keys_exist(ctx):
    """Every key in the KEYS of coechod.yaml.5 is one the parser knows."""
    for bogus in (BOGUS, "limits." + BOGUS, "listen[]." + BOGUS):
        check(unknown_key(ctx, bogus),
              "coechod -t does not call %s an unknown key; this check cannot work:\n%s"
              % (bogus, yaml_at(bogus, "~")))
    unknown = []
    for key in page_keys():
        line = unknown_key(ctx, key)
        if line:
            unknown.append("%s (%s)" % (key, line.split(": ", 1)[-1]))
    check(not unknown, "coechod.yaml.5 documents keys the parser does not know:\n"
          + "\n".join(unknown))


@test
def parser_keys_documented(ctx):
    """Every key the parser knows is in the KEYS of coechod.yaml.5."""
    keys = parser_keys(ctx)
    check(any("." in k for k in keys),
          "found no nested key by asking coechod -t (keys: %s): this check cannot work"
          % " ".join(sorted(keys)))
    ctx.note("parser: %s" % " ".join(sorted(keys)))
    missing = sorted(keys - set(page_keys()))
    check(not missing, "keys the parser knows, missing from the KEYS of coechod.yaml.5: %s"
          % " ".join(missing))


@test
def config_examples_valid(ctx):
    """The configurations in the EXAMPLES of coechod.yaml.5 pass coechod -t
    --no-host-check."""
    blocks, block = [], None
    for line in section(read_page("coechod.yaml.5"), "EXAMPLES", "coechod.yaml.5"):
        if line.startswith(".Bd"):
            block = []
        elif line.startswith(".Ed"):
            blocks.append("\n".join(block) + "\n")
            block = None
        elif block is not None:
            block.append(line.replace("\\e", "\\").replace("\\&", ""))
    check(blocks, "coechod.yaml.5: no .Bd blocks in EXAMPLES")
    problems = []
    for i, text in enumerate(blocks):
        # Examples for other machines: their users, addresses, directories.
        rc, _, err = check_config(ctx, text, "example%d.yaml" % (i + 1), ["--no-host-check"])
        if rc != 0:
            problems.append("example %d: coechod -t: exit %d\n%s" % (i + 1, rc, err.strip()))
    check(not problems, "\n".join(problems))


# ---------------------------------------------------------------------------
# runner

def main(argv):
    if argv[1:2] not in (["-h"], ["--help"], ["--list"]) and not (
            MANDOC and os.access(MANDOC, os.X_OK)):
        print("manpages: SKIP: no mandoc (install mandoc, or set MANDOC)")
        return 77
    return harness.run_suite(argv, TESTS, "manpages",
                        [("daemon", COECHOD, "COECHOD"), ("client", COECHO_LOAD, "COECHO_LOAD")],
                        __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
