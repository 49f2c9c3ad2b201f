"""Every load-time error names the YAML path and the fix; nothing is published.

A plain Celery app with no broker: loading needs none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery import Celery
from celery.schedules import crontab, schedule

from dyrygent import DefinitionError, beat_schedule, load_definitions
from dyrygent.definitions import Chain, Group, TaskStep


def noop(*args, **kwargs):
    return None


EXAMPLES = Path(__file__).resolve().parent.parent / "integration" / "definitions"


@pytest.fixture
def app():
    app = Celery("proj", set_as_current=False)
    for name in ("EXTRACT", "TRANSFORM", "LOAD", "NUMBER", "ADD", "ECHO", "HOOK", "ITEMS"):
        app.task(name=name, shared=False)(noop)
    return app


def load(app, data, **kw):
    return load_definitions(data, app=app, **kw)


def refused(app, data, match, **kw):
    with pytest.raises(DefinitionError, match=match) as info:
        load(app, data, **kw)
    return info.value


def test_director_format_loads_into_steps(app):
    # Given director's sequence, group, queue, hooks, periodic and retention
    defs = load(
        app,
        {
            "billing.INVOICE": {
                "tasks": ["EXTRACT", {"G": {"type": "group", "tasks": ["TRANSFORM", "LOAD"]}}],
                "queue": {"default": "q1", "customs": {"LOAD": "q2"}},
                "hooks": {"success": "HOOK", "failure": "HOOK"},
                "periodic": {"interval": 60},
                "retention": {"offset": 5},
            }
        },
    )
    # Then each part is understood
    d = defs.get("billing.INVOICE")
    assert defs.names() == ["billing.INVOICE"]
    assert (d.project, d.name) == ("billing", "INVOICE")
    first, group = d.tasks.steps
    assert isinstance(first, TaskStep) and first.task == "EXTRACT"
    assert isinstance(group, Group) and [m.task for m in group.members] == ["TRANSFORM", "LOAD"]
    assert d.queues.for_task("LOAD") == "q2" and d.queues.for_task("EXTRACT") == "q1"
    assert d.hooks.success.task == "HOOK" and d.retention == 5
    assert d.periodic.spec == "every 60s"


def test_names_may_hold_more_dots(app):
    d = load(app, {"a.b.c": {"tasks": ["EXTRACT"]}}).get("a.b.c")
    assert (d.project, d.name) == ("a", "b.c")


def test_yaml_and_json_files_load_with_schemas_next_to_them(app, tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "s.json").write_text('{"type": "object"}')
    (tmp_path / "w.yml").write_text("p.A:\n  tasks: [EXTRACT]\n  schema: s\n")
    (tmp_path / "w.json").write_text(json.dumps({"p.B": {"tasks": ["LOAD"]}}))
    assert load(app, tmp_path / "w.yml").get("p.A").schema == {"type": "object"}
    assert load(app, str(tmp_path / "w.json")).names() == ["p.B"]


def test_the_path_comes_from_the_app_config(app):
    app.conf.dyrygent_definitions = str(EXAMPLES / "workflows.yml")
    for name in ("SUCCESS_HOOK", "FAILURE_HOOK", "ERROR", "SLOW"):
        app.task(name=name, shared=False)(noop)
    defs = load_definitions(app=app)
    assert "example.ETL" in defs.names()


def test_yaml_is_loaded_safely(app, tmp_path):
    (tmp_path / "w.yml").write_text("p.A: !!python/object/apply:os.system ['true']\n")
    refused(app, tmp_path / "w.yml", "not valid YAML")


@pytest.mark.parametrize(
    "data, path, match",
    [
        ({"INVOICE": {"tasks": ["EXTRACT"]}}, "INVOICE", "must be 'project.name'"),
        ({"b.I": {"tasks": ["EXTRACT"], "task": 1}}, "b.I.task", "unknown key 'task'.*tasks"),
        ({"b.I": {}}, "b.I", "needs tasks"),
        ({"b.I": {"tasks": []}}, "b.I.tasks", "non-empty list"),
        ({"b.I": {"tasks": ["NOPE"]}}, r"b.I.tasks\[0\]", "'NOPE' is not registered"),
        (
            {"b.I": {"tasks": ["EXTRACT", {"RENDER": {"type": "grup", "tasks": ["LOAD"]}}]}},
            r"b.I.tasks\[1\].RENDER.type",
            "unknown type 'grup' \\(did you mean 'group'\\?\\)",
        ),
        (
            {
                "b.I": {
                    "tasks": [
                        {"RENDER": {"type": "expand", "tasks": [{"LOAD": {"depends_on": "x"}}]}}
                    ]
                }
            },
            r"b.I.tasks\[0\].RENDER.tasks\[0\].LOAD.depends_on",
            "inside an expand runs once per item.*cannot use depends_on",
        ),
        (
            {"b.I": {"tasks": [{"G": {"tasks": ["LOAD"]}}]}},
            r"b.I.tasks\[0\].G.tasks",
            "add type: group",
        ),
        (
            {"b.I": {"tasks": [{"G": {"type": "group", "tasks": ["LOAD", "NOPE"]}}]}},
            r"b.I.tasks\[0\].G.tasks\[1\]",
            "'NOPE' is not registered",
        ),
        (
            {"b.I": {"tasks": [{"LOAD": {"queu": "q"}}]}},
            r"b.I.tasks\[0\].LOAD.queu",
            "did you mean 'queue'",
        ),
        ({"b.I": {"tasks": [{"LOAD": {"priority": 999}}]}}, "LOAD.priority", "0-255"),
        ({"b.I": {"tasks": [{"LOAD": {"countdown": -1}}]}}, "LOAD.countdown", ">= 0"),
        ({"b.I": {"tasks": [{"LOAD": {"retries": "x"}}]}}, "LOAD.retries", "retry policy"),
        (
            {"b.I": {"tasks": [{"LOAD": {"kwargs": {"payload": 1}}}]}},
            "LOAD.kwargs.payload",
            "may not set 'payload'",
        ),
        (
            {"b.I": {"tasks": [{"LOAD": {"trigger_rule": "all_sucess"}}]}},
            "LOAD.trigger_rule",
            "unknown trigger rule",
        ),
        (
            {"b.I": {"tasks": [{"LOAD": {"depends_on": ["x"]}}]}},
            "LOAD.depends_on",
            "'x', which is not an earlier step",
        ),
        (
            {"b.I": {"tasks": [{"LOAD": {"depends_on": "x"}}, {"EXTRACT": {"label": "x"}}]}},
            "LOAD.depends_on",
            "move this step after it",
        ),
        (
            {"b.I": {"tasks": ["LOAD", "LOAD", {"ECHO": {"depends_on": "LOAD"}}]}},
            "ECHO.depends_on",
            "labels 2 steps",
        ),
        (
            {"b.I": {"tasks": [{"A": {"task": "LOAD", "label": "x"}}, {"ECHO": {"label": "x"}}]}},
            "ECHO.label",
            "already used",
        ),
        ({"b.I": {"tasks": ["LOAD"], "queue": 3}}, "b.I.queue", "queue name"),
        ({"b.I": {"tasks": ["LOAD"], "queue": {"defaut": "q"}}}, "queue.defaut", "default"),
        ({"b.I": {"tasks": ["LOAD"], "hooks": {"sucess": "HOOK"}}}, "hooks.sucess", "success"),
        ({"b.I": {"tasks": ["LOAD"], "hooks": {"success": "NOPE"}}}, "hooks.success", "NOPE"),
        ({"b.I": {"tasks": ["LOAD"], "retention": {"offset": 0}}}, "retention", "N >= 1"),
        ({"b.I": {"tasks": ["LOAD"], "schema": "missing"}}, "b.I.schema", "does not exist"),
        ({"b.I": {"tasks": ["LOAD"], "periodic": {}}}, "b.I.periodic", "exactly one"),
        (
            {"b.I": {"tasks": ["LOAD"], "periodic": {"interval": 1, "crontab": "* * * * *"}}},
            "b.I.periodic",
            "found interval, crontab",
        ),
        ({"b.I": {"tasks": ["LOAD"], "periodic": {"interval": 0}}}, "periodic.interval", "> 0"),
        (
            {"b.I": {"tasks": ["LOAD"], "periodic": {"crontab": "* *  * * *"}}},
            "periodic.crontab",
            "five cron fields",
        ),
        (
            {"b.I": {"tasks": ["LOAD"], "periodic": {"crontab": "99 * * * *"}}},
            "periodic.crontab",
            "invalid cron",
        ),
        (
            {"b.I": {"tasks": ["LOAD"], "periodic": {"schedule": "0 12 9 * *"}}},
            "periodic.schedule",
            "invalid cron",
        ),
        (
            {"b.I": {"tasks": ["LOAD"], "periodic": {"interval": 5, "overlap": "no"}}},
            "periodic.overlap",
            "allow or skip",
        ),
    ],
)
def test_every_load_time_error_names_the_yaml_path(app, tmp_path, data, path, match):
    error = refused(app, data, match, schemas=tmp_path)
    assert str(error).startswith(path.replace("\\", "")) or path.replace("\\", "") in error.path


def test_a_bad_schema_file_and_an_invalid_periodic_payload_are_refused(app, tmp_path):
    (tmp_path / "bad.json").write_text('{"type": "objec"}')
    (tmp_path / "s.json").write_text('{"type": "object", "required": ["n"]}')
    refused(
        app,
        {"b.I": {"tasks": ["LOAD"], "schema": "bad"}},
        "not a valid JSON Schema",
        schemas=tmp_path,
    )
    error = refused(
        app,
        {"b.I": {"tasks": ["LOAD"], "schema": "s", "periodic": {"interval": 5}}},
        "periodic payload fails schema 's': \\$: 'n' is a required property",
        schemas=tmp_path,
    )
    assert error.path == "b.I.periodic.payload"


def test_an_unknown_definition_is_named_with_the_known_ones(app):
    defs = load(app, {"b.ONE": {"tasks": ["LOAD"]}})
    with pytest.raises(DefinitionError, match="no definition 'b.ONF' \\(did you mean 'b.ONE'"):
        defs.get("b.ONF")


def test_periodic_specs_including_directors_legacy_field_order(app):
    defs = load(
        app,
        {
            "p.I": {"tasks": ["LOAD"], "periodic": {"interval": 2.5, "payload": {"n": 1}}},
            "p.C": {"tasks": ["LOAD"], "periodic": {"crontab": "0 12 1 * *"}},
            "p.L": {"tasks": ["LOAD"], "periodic": {"schedule": "0 12 1 * *"}},
            "p.N": {"tasks": ["LOAD"], "periodic": {"schedule": 30}},
        },
    )
    i, c, leg, n = (defs.get(f"p.{k}").periodic for k in "ICLN")
    assert isinstance(i.schedule, schedule) and i.schedule.run_every.total_seconds() == 2.5
    assert i.payload == {"n": 1}
    # the standard order: day of month 1; director's legacy order: Mondays
    assert c.schedule == crontab(minute="0", hour="12", day_of_month="1")
    assert leg.schedule == crontab(minute="0", hour="12", day_of_week="1")
    assert leg.spec == "cron 0 12 * * 1"
    assert n.schedule.run_every.total_seconds() == 30


def test_beat_schedule_adds_one_entry_per_periodic_definition(app):
    defs = load(
        app,
        {
            "p.I": {"tasks": ["LOAD"], "periodic": {"interval": 1}, "queue": "q"},
            "p.X": {"tasks": ["LOAD"]},
        },
    )
    entries = beat_schedule(app, defs)
    assert list(entries) == ["dyrygent:p.I"]
    entry = app.conf.beat_schedule["dyrygent:p.I"]
    assert entry["task"] == "dyrygent.definitions.run" and entry["args"] == ("p.I",)
    assert entry["options"] == {"queue": "q"}


def test_nesting_and_options_are_understood(app):
    d = load(
        app,
        {
            "p.N": {
                "tasks": [
                    {
                        "G": {
                            "type": "group",
                            "tasks": [
                                {"C": {"type": "chain", "tasks": ["LOAD", "ECHO"]}},
                                {"R": {"task": "LOAD", "queue": "q", "retries": 3}},
                            ],
                        }
                    }
                ]
            }
        },
    ).get("p.N")
    (g,) = d.tasks.steps
    chain, task = g.members
    assert isinstance(chain, Chain) and chain.label == "C"
    assert task.label == "R" and task.options == {
        "queue": "q",
        "retry": True,
        "retry_policy": {"max_retries": 3},
    }


def test_the_readme_examples_load(tmp_path):
    # Given the YAML blocks of README's "Workflows in YAML" section and an app with their tasks
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.rst").read_text()
    section = text.split("Workflows in YAML\n=================")[1].split("\n=====")[0]
    blocks = re.findall(r"\.\. code-block:: yaml\n\n((?:    .*\n|\n)+)", section)
    assert len(blocks) == 2
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "run.json").write_text('{"type": "object"}')
    for block in blocks:
        data = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))
        app = Celery("readme", set_as_current=False)
        names = set(re.findall(r"\b(?:tasks\.\w+|[A-Z][A-Z_]+[A-Z])\b", block))
        for name in names:
            app.task(name=name, shared=False)(noop)
        # When they load; then each definition is there
        defs = load_definitions(data, schemas=tmp_path, app=app)
        assert defs.names() == sorted(data)
        for name in defs.names():
            wf = defs.build(name, payload={"full": True})
            assert wf.freeze() is not None


def test_a_per_task_timeout_is_a_node_deadline(app):
    from dyrygent.engine.spec import spec_extras

    # Given a task with timeout: 5 in a definition
    d = load(app, {"b.I": {"tasks": [{"LOAD": {"timeout": 5}}]}})
    # Then the node it builds carries that deadline (the processor fails it past it)
    graph = d.build("b.I", payload={}).freeze()

    assert [spec_extras(n.spec).get("timeout") for n in graph.nodes if n.task == "LOAD"] == [5.0]
