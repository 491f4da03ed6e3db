"""Files from other teams: each runs to its end or is refused with line-numbered reasons."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from api.cli import main
from engine.errors import InvalidBpmn
from storage.models import Definition, HumanTask, Instance
from tests.conftest import EXTERNAL_BPMN, OWNER, actor

# file -> the reasons it is refused (a fragment of each message), or None when it runs.
EXPECTED = {
    "camunda/loanApproval-generated-forms.bpmn": None,
    "camunda/camunda-testing-job-announcement.bpmn": ["service tasks are not run", "camunda:in mappings"],
    "camunda/camunda-testing-job-announcement-publication.bpmn": ["service tasks are not run",
                                                                 "camunda:expression on a task"],
    "operaton/leave-request.bpmn": ["service tasks are not run", "send tasks are not supported"],
    "operaton/reviewInvoice.bpmn": ["has no group"],
    "operaton/sla-escalation.bpmn": ["has no group"],
    "spiffworkflow/Approvals.bpmn": ["has no group"],
    "spiffworkflow/timer-non-interrupt-boundary.bpmn": ["has no group"],
}

pytestmark = pytest.mark.skipif(not EXTERNAL_BPMN.is_dir(), reason="../shared/external-bpmn is not beside the checkout")


def test_every_shared_file_is_listed():
    present = {str(p.relative_to(EXTERNAL_BPMN)) for p in EXTERNAL_BPMN.glob("*/*.bpmn")}
    assert present == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, why in EXPECTED.items() if why))
def test_refused_with_lines_and_nothing_deployed(name, engine, db, capsys):
    path = EXTERNAL_BPMN / name
    with pytest.raises(InvalidBpmn) as raised:
        engine.deploy([(path.name, path.read_bytes())], OWNER)
    problems = raised.value.problems
    for reason in EXPECTED[name]:
        assert any(reason in p.message for p in problems), [str(p) for p in problems]
    assert all(isinstance(p.line, int) and p.line > 0 for p in problems)
    with db.unit_of_work(write=False) as uow:
        assert uow.session.scalars(select(Definition)).first() is None
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert all(line.startswith(f"{path}:") for line in out.strip().splitlines())


def test_loan_approval_runs_its_user_tasks_to_the_end(engine, db):
    path = EXTERNAL_BPMN / "camunda/loanApproval-generated-forms.bpmn"
    [result] = engine.deploy([(path.name, path.read_bytes())], OWNER)
    applicant = actor("applicant", roles=("staff",))
    start = {"firstname": "Li", "lastname": "Lei", "netIncome": 9000, "loanAmount": 20000, "loanType": "mortage"}
    case = engine.start_case(result.key, start, applicant)
    with db.unit_of_work(write=False) as uow:
        task = uow.session.scalars(select(HumanTask).where(HumanTask.status == "open")).one()
    assert (task.element_id, task.assignee) == ("UserTask_1", "demo")
    engine.complete_task(task.id, {"approved": True, "loanAmount": 20000}, actor("demo"))
    with db.unit_of_work(write=False) as uow:
        instance = uow.session.get(Instance, case.instance_id)
    assert instance.status == "completed"
    assert instance.data["approved"] is True and instance.data["firstname"] == "Li"
