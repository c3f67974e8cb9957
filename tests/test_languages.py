"""Every text a learner reads exists in English and in Japanese.

What is checked, and how far the check can see:

* labs/steps.toml: every step has a title and hints in ``en`` and ``ja``, none empty,
  as many hints in each, and the Japanese ones contain Japanese (kana or kanji). Exact.
* Every lab module (labs/test_step*.py and each module steps.toml names) exists and
  its docstring has English prose and Japanese text. Exact for "has both"; whether
  they say the same thing is left to the reviewer.
* Every ``assert`` in a lab module has a message ``say(en, ja)`` whose two arguments
  are non-empty string literals or f-strings, the second with Japanese in it. Exact.
* Every ``pytest.fail(...)`` in labs/harness/**/*.py gets a bilingual message, where a
  message is one of: a ``say(en, ja)`` call (each argument a string, f-string, or a
  ``+`` / ``if-else`` of them, with literal text, the second Japanese); a message
  plus something (``say(...) + log``); ``a if c else b`` of messages; a variable
  whose every assignment in the function is a message; a parameter that every call
  of the function, anywhere in labs/, fills with a message; ``self.x`` whose every
  assignment in the class is a message or None; a call of a function of the same
  module whose every return is a message or None; ``str(error)`` for
  ``except SomeError as error`` where every ``raise SomeError(...)`` in
  labs/harness passes a message. The check reads the source, so a message built
  any other way (read from a file, passed through a container, an exception from
  a library) cannot be followed: it is reported, and must be rewritten into one of
  these forms.
"""
import ast
import re
from pathlib import Path

import pytest

from labs.harness.lesson import advice
from labs.harness.paths import ROOT
from labs.harness.services.causes import Cause
from labs.harness.steps import load_steps

JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")  # hiragana, katakana, kanji
KANA = re.compile(r"[\u3040-\u30ff]")  # kanji alone could be Chinese
ENGLISH = re.compile(r"[A-Za-z]+(?:[ ,.'()-]+[A-Za-z]+){5,}")  # six Latin words in a row
LAB_MODULES = sorted({*ROOT.glob("labs/test_step*.py"), *(ROOT / step.module for step in load_steps())})
HARNESS_MODULES = sorted((ROOT / "labs" / "harness").rglob("*.py"))


# -- steps.toml and docstrings ------------------------------------------------------
@pytest.mark.parametrize("step", load_steps(), ids=lambda step: f"step{step.number}")
def test_every_step_has_title_and_hints_in_both_languages(step):
    for table, name in ((step.titles, "title"), (step.hints, "hints")):
        assert set(table) >= {"en", "ja"}, f"step {step.number}: {name} needs both en and ja, has {sorted(table)}"
    assert step.titles["en"].strip() and JAPANESE.search(step.titles["ja"]), f"step {step.number}: titles"
    en, ja = step.hints["en"], step.hints["ja"]
    assert en and len(en) == len(ja), f"step {step.number}: {len(en)} English hints, {len(ja)} Japanese"
    assert all(hint.strip() for hint in en), f"step {step.number}: an empty English hint"
    assert all(JAPANESE.search(hint) for hint in ja), f"step {step.number}: a ja hint without Japanese"


@pytest.mark.parametrize("path", LAB_MODULES, ids=lambda path: path.name)
def test_every_lab_module_docstring_is_in_both_languages(path):
    assert path.exists(), f"{path.relative_to(ROOT)} is named in steps.toml but missing"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert ENGLISH.search(doc), f"{path.name}: the docstring has no English prose"
    assert KANA.search(doc), f"{path.name}: the docstring has no Japanese"


# -- messages in the source ---------------------------------------------------------
def _literal(node):
    """The literal text of a string, f-string, or a + / if-else of them; None if it is not one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value for part in node.values if isinstance(part, ast.Constant))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [_literal(node.left), _literal(node.right)]
        return None if parts == [None, None] else "".join(part or "" for part in parts)
    if isinstance(node, ast.IfExp):
        parts = [_literal(node.body), _literal(node.orelse)]
        return None if None in parts else "".join(parts)
    return None


def _is_say(node):
    return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "say"


def _say_problem(call, strict):
    """Why ``call`` is not a proper say(en, ja), or None. strict: literals and f-strings only."""
    if len(call.args) != 2 or call.keywords:
        return "say() takes two arguments: the English text, then the Japanese"
    if strict and not all(isinstance(arg, (ast.Constant, ast.JoinedStr)) for arg in call.args):
        return "say()'s arguments must be string literals or f-strings"
    en, ja = (_literal(arg) for arg in call.args)
    if not (en or "").strip():
        return "say()'s first argument is not a non-empty English text"
    if not JAPANESE.search(ja or ""):
        return "say()'s second argument has no Japanese text"
    return None


class _Source:
    """The parsed labs/ modules, with each node's parent, to follow where a message comes from."""

    def __init__(self, paths):
        self.trees = {path: ast.parse(path.read_text()) for path in paths}
        self.parent = {}
        for tree in self.trees.values():
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node

    def enclosing(self, node, kind):
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, kind):
                return node
        return None

    def everywhere(self, kind, paths=None):
        for path, tree in self.trees.items():
            if paths is None or path in paths:
                yield from ((path, node) for node in ast.walk(tree) if isinstance(node, kind))

    def problem(self, node, depth=0, none_ok=False):
        """Why ``node`` is not a bilingual message (see the module docstring), or None."""
        if depth > 4:
            return "a message passed through too many hands to follow"
        if none_ok and isinstance(node, ast.Constant) and node.value is None:
            return None
        if _is_say(node):
            return _say_problem(node, strict=False)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.problem(node.left, depth + 1)
        if isinstance(node, ast.IfExp):
            return self.problem(node.body, depth + 1, none_ok) or self.problem(node.orelse, depth + 1, none_ok)
        function = self.enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if isinstance(node, ast.Name) and function is not None:
            return self._variable(node.id, function, depth)
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "self":
            owner = self.enclosing(node, ast.ClassDef)
            values = [n.value for n in ast.walk(owner) if isinstance(n, ast.Assign) for target in n.targets
                      if isinstance(target, ast.Attribute) and target.attr == node.attr
                      and getattr(target.value, "id", None) == "self"]
            return self._all(values, depth, none_ok=True, what=f"self.{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "str" and len(node.args) == 1:
            return self._exception(node.args[0], depth)
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            module = next(tree for tree in self.trees.values() if node in set(ast.walk(tree)))
            defined = [n for n in ast.walk(module) if isinstance(n, ast.FunctionDef) and n.name == name]
            if defined:
                returns = [n.value for d in defined for n in ast.walk(d) if isinstance(n, ast.Return)]
                return self._all([r or ast.Constant(None) for r in returns], depth, none_ok=True,
                                 what=f"{name}()'s return value")
        return "not say(en, ja), nor a value the check can follow back to one"

    def _all(self, values, depth, none_ok, what):
        if not values:
            return f"{what} is never assigned a message"
        return next(filter(None, (self.problem(value, depth + 1, none_ok) for value in values)), None)

    def _variable(self, name, function, depth):
        params = [arg.arg for arg in function.args.args]
        if name in params:
            return self._parameter(function, params.index(name), name, depth)
        assigned = [n.value for n in ast.walk(function) if isinstance(n, ast.Assign)
                    for target in n.targets if isinstance(target, ast.Name) and target.id == name]
        return self._all(assigned, depth, none_ok=False, what=name)

    def _parameter(self, function, index, name, depth):
        """A parameter: every call of the function must pass it a message."""
        offset = 1 if index and self.enclosing(function, ast.ClassDef) else 0  # self
        problems = []
        for path, call in self.everywhere(ast.Call):
            if getattr(call.func, "id", getattr(call.func, "attr", None)) != function.name:
                continue
            given = [kw.value for kw in call.keywords if kw.arg == name]
            if len(call.args) > index - offset:
                given.append(call.args[index - offset])
            for value in given:
                why = self.problem(value, depth + 1)
                if why:
                    problems.append(f"{path.name}:{call.lineno} passes {function.name}({name}=...): {why}")
        return "\n    ".join(sorted(problems)) or None

    def _exception(self, node, depth):
        """str(error) of ``except SomeError as error``: every raise SomeError(...) in the harness."""
        handler = self.enclosing(node, ast.ExceptHandler)
        if not (isinstance(node, ast.Name) and handler is not None and handler.name == node.id):
            return "str() of something other than the exception being handled"
        cls = getattr(handler.type, "id", None)
        raises = [(path, n) for path, n in self.everywhere(ast.Raise, HARNESS_MODULES)
                  if isinstance(n.exc, ast.Call) and getattr(n.exc.func, "id", None) == cls]
        if not raises:
            return f"{cls} is not raised in labs/harness: its text cannot be checked"
        problems = [f"{path.name}:{n.lineno} raise {cls}(...): {why}" for path, n in raises
                    if (why := self.problem(n.exc.args[0], depth + 1) if n.exc.args else "no message")]
        return "\n    ".join(sorted(problems)) or None


def test_every_assert_in_the_labs_says_it_in_both_languages():
    problems = []
    for path in LAB_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assert):
                why = _say_problem(node.msg, strict=True) if _is_say(node.msg) else "no say(en, ja) message"
                if why:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {why}")
    assert not problems, "\n".join(problems)


def test_every_pytest_fail_in_the_harness_says_it_in_both_languages():
    source = _Source([*HARNESS_MODULES, *[path for path in LAB_MODULES if path.exists()]])
    problems = []
    for path, call in source.everywhere(ast.Call, HARNESS_MODULES):
        if ast.unparse(call.func) != "pytest.fail":
            continue
        message = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "reason"), None)
        why = source.problem(message) if message is not None else "no message"
        if why:
            problems.append(f"{path.relative_to(ROOT)}:{call.lineno}:\n    {why}")
    assert not problems, "\n".join(problems)


def test_the_message_check_catches_what_it_should():
    """The checker itself, on small samples: one good and one bad form of each rule."""
    def check(code):
        path = Path("/sample.py")
        source = _Source([])
        source.trees = {path: ast.parse(code)}
        source.parent = {child: node for node in ast.walk(source.trees[path])
                         for child in ast.iter_child_nodes(node)}
        calls = [n for n in ast.walk(source.trees[path]) if isinstance(n, ast.Call)
                 and ast.unparse(n.func) == "pytest.fail"]
        return [source.problem(call.args[0]) for call in calls]

    good = 'say("It broke.", "壊れました。")'
    assert check(f"def f():\n    pytest.fail({good})\n") == [None]
    assert check('def f():\n    pytest.fail(say("It broke.", "It broke."))\n') != [None]
    assert check('def f():\n    pytest.fail("It broke.")\n') != [None]
    assert check(f"def f():\n    m = {good} + log\n    pytest.fail(m)\n") == [None]
    assert check('def f():\n    m = "x"\n    pytest.fail(m)\n') != [None]
    assert check(f"def req(c, m):\n    pytest.fail(m)\n\ndef g():\n    req(1, {good})\n") == [None]
    assert check('def req(c, m):\n    pytest.fail(m)\n\ndef g():\n    req(1, "x")\n') != [None]
    assert check(f"class S:\n    def a(self):\n        self.p = None\n    def b(self):\n"
                 f"        self.p = {good}\n    def c(self):\n        pytest.fail(self.p)\n") == [None]
    assert check("class S:\n    def b(self):\n        self.p = 'x'\n    def c(self):\n"
                 "        pytest.fail(self.p)\n") != [None]
    assert check("def f():\n    try:\n        pass\n    except ValueError as e:\n"
                 "        pytest.fail(str(e))\n") != [None]  # ValueError is not raised in labs/harness


# -- the advice for every cause a service reports ----------------------------------------
SAMPLE_DETAIL = {"expected": "redis://127.0.0.1:1/1", "transport": "redis://127.0.0.1:2/1", "seconds": 30,
                 "headline": "", "method": "GET", "path": "/handson", "error": "refused", "status": 500,
                 "body": "", "seen": ("default_amqp", ""), "limit": 8 << 20, "node": "default-1a2b3c@host"}


@pytest.mark.parametrize("what", sorted(advice._EXPLAIN))
@pytest.mark.parametrize("service", ["worker", "web"])
def test_every_cause_has_advice_in_both_languages(monkeypatch, what, service):
    cause = Cause(service, what, SAMPLE_DETAIL, log="the log")
    monkeypatch.setenv("HANDSON_LANG", "en")
    english = advice.explain(cause)
    monkeypatch.setenv("HANDSON_LANG", "ja")
    japanese = advice.explain(cause)
    assert english.strip() and not KANA.search(english), english
    assert KANA.search(japanese), japanese
