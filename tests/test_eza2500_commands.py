"""The command classes and the table agree both ways: every command of
``table.command_names()`` has exactly one plain ``class CommandGGWW(Command)`` in
drivers/eza2500/commands.py (findable by grep) with its name, group and write,
no such class lacks a table entry, and ``eza2500`` imports and lists them all;
so a new table row without a class fails here."""
import ast
import re
from pathlib import Path
from typing import Dict

import pytest

import eza2500
from eza2500 import commands, table

DRIVER = Path(__file__).resolve().parent.parent / "drivers" / "eza2500"
COMMAND_CLASS = re.compile(r"^Command\d{4}$")


def class_name(name: str) -> str:
    """"4-4" -> "Command0404"."""
    group, write = table.parse_name(name)
    return "Command%02d%02d" % (group.number, 4 if write else 1)


def source_classes() -> Dict[str, ast.ClassDef]:
    """The ``CommandGGWW`` classes written in commands.py, by class name (a second
    definition of a name fails here)."""
    tree = ast.parse((DRIVER / "commands.py").read_text(encoding="utf-8"))
    found: Dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and COMMAND_CLASS.match(node.name):
            assert node.name not in found, "class %s is defined twice" % node.name
            found[node.name] = node
    return found


def stated_name(node: ast.ClassDef) -> str:
    """The ``name = "..."`` a class body states."""
    names = [stmt.value.value for stmt in node.body
             if isinstance(stmt, ast.Assign) and [ast.unparse(t) for t in stmt.targets] == ["name"]
             and isinstance(stmt.value, ast.Constant)]
    assert len(names) == 1, "%s states no single name" % node.name
    return names[0]


SOURCE = source_classes()


@pytest.mark.parametrize("name", table.command_names())
def test_every_table_command_has_its_plain_class(name):
    node = SOURCE.get(class_name(name))
    assert node is not None, "no class %s for command %s in commands.py" % (class_name(name), name)
    assert [ast.unparse(b) for b in node.bases] == ["Command"]
    assert stated_name(node) == name
    group, write = table.parse_name(name)
    cls = getattr(commands, node.name)
    assert (cls.name, cls.group, cls.write) == (name, group, write)
    assert cls.__module__ == "eza2500.commands" and cls.__qualname__ == node.name
    assert cls.__doc__ == "EZA2500 command %s (%s %s; docs/eza2500-protocol.md, group %d)." % (
        name, "write" if write else "read", group.title, group.number)


def test_no_class_without_a_table_entry():
    assert sorted(SOURCE) == sorted(class_name(n) for n in table.command_names())
    assert sorted(stated_name(node) for node in SOURCE.values()) == sorted(table.command_names())
    runtime = sorted(n for n in vars(commands) if COMMAND_CLASS.match(n))
    assert runtime == sorted(SOURCE)


def test_commands_maps_every_name_to_its_class_in_table_order():
    assert list(commands.COMMANDS) == table.command_names()
    assert all(cls is getattr(commands, class_name(name)) for name, cls in commands.COMMANDS.items())


def test_the_package_imports_and_lists_every_class():
    wanted = {class_name(n) for n in table.command_names()}
    assert wanted <= set(eza2500.__all__) and wanted <= set(commands.__all__)
    assert {n for n in eza2500.__all__ if COMMAND_CLASS.match(n)} == wanted
    assert all(getattr(eza2500, n) is getattr(commands, n) for n in wanted)
    tree = ast.parse((DRIVER / "__init__.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                and node.module == "commands" and node.level == 1 for alias in node.names}
    assert wanted <= imported


def test_no_name_is_made_at_run_time():
    for path in DRIVER.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "globals()" not in source and "type(\"Command" not in source, path.name


def test_a_class_for_a_command_the_table_lacks_is_refused():
    with pytest.raises(TypeError, match="no EZA2500 command '17-4'"):
        type("Command1704", (commands.Command,), {"name": "17-4"})


def test_a_subclass_without_a_name_inherits_its_command():
    class Logged(commands.Command0404):
        pass

    assert (Logged.name, Logged.group, Logged.write) == ("4-4", table.group(4), True)
    assert repr(Logged(None)) == "<Logged 4-4>"
