"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright's Python API.

The app runs on a temporary SQLite database behind waitress in a thread. Three
stories: a staff member claims a task, sends an invalid form, sees the field's
error, fixes it and completes; a process owner uploads a broken BPMN file and
sees its line numbers; an auditor steps through a replay. Every page visited is
photographed at 1280 and 390 px into `screenshots/` (see the README), and at
390 px no page may scroll sideways.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from api import create_app, engine_of
from engine.clock import FakeClock
from engine.service import Actor
from engine.users import save_user
from storage.models import HumanTask
from tests.conftest import BPMN_DIR, FIXTURES, ROOT

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "screenshots"
PASSWORD = "correct horse battery"
WIDTHS = (1280, 390)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by `make test`")
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

BROKEN_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:process id="broken" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="nowhere"/>
    <bpmn:userTask id="t1" name="No group">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="x" label="X" type="colour"/>
      </camunda:formData></bpmn:extensionElements>
    </bpmn:userTask>
  </bpmn:process>
</bpmn:definitions>
"""
MALFORMED_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
  <bpmn:process id="broken" isExecutable="true">
    <bpmn:userTask id="t1" name="never closed">
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from waitress.server import create_server

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("browser")
    clock = FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))  # a Monday morning in Shanghai
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'web.db'}", "SECRET_KEY": "browser-tests"},
                     clock=clock)
    engine = engine_of(app)
    with engine.db.unit_of_work() as uow:
        for name, roles, groups, display in (("wang", ["staff"], ["front_desk"], "王前台"),
                                             ("olivia", ["process_owner"], [], "流程负责人"),
                                             ("audrey", ["auditor"], [], "审计员"),
                                             ("chen", ["staff"], ["customer_service"], "陈客服")):
            save_user(uow.session, name, PASSWORD, roles, groups, display, clock.now())
        uow.commit()
    owner = Actor("olivia", frozenset({"process_owner"}))
    engine.deploy([("two_step.bpmn", (FIXTURES / "two_step.bpmn").read_bytes())], owner)
    engine.deploy([(f.name, f.read_bytes()) for f in sorted(BPMN_DIR.glob("*.bpmn"))], owner)
    first = engine.start_case("two_step", {"title": "空调漏水", "amount": 120}, owner).instance_id
    clock.advance(timedelta(hours=3))  # the first case's review is now overdue
    engine.start_case("two_step", {"title": "电梯噪音", "amount": 0}, owner)
    travel = engine.start_case("complaint_travel", {}, owner).instance_id
    chen = Actor("chen", frozenset({"staff"}), frozenset({"customer_service"}))
    with engine.read() as uow:
        assess = uow.session.scalars(select(HumanTask).where(HumanTask.instance_id == travel)).one().id
    engine.claim_task(assess, chen)
    engine.complete_task(assess, {"travel_customer_name": "华东客户", "travel_complaint_content": "批次不良",
                                  "travel_severity": "serious", "travel_urgency": "urgent", "travel_needed": True},
                         chen)
    httpd = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.effective_port}", "first": first, "travel": travel}

    def stop() -> None:  # in the server's own loop: closing its sockets from here would break its select
        for channel in list(httpd._map.values()):
            channel.close()

    httpd.trigger.pull_trigger(stop)
    thread.join(10)
    httpd.task_dispatcher.shutdown()
    engine.db.dispose()


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def shoot(page, name: str) -> None:
    """Photograph the page at each width; at the narrow one nothing may stick out sideways."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)  # let bpmn-js refit the diagram
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/inbox")


def test_staff_claims_fixes_and_completes(server, page):
    base = server["url"]
    page.goto(f"{base}/inbox")
    assert "/login" in page.url
    cookie_check = page.request.post(f"{base}/logout", form={"csrf_token": "forged"})
    assert cookie_check.status == 400  # a POST without the session's token is refused
    shoot(page, "01-login")
    sign_in(page, base, "wang")
    claimable = page.locator("#claimable li.task")
    assert claimable.count() == 2
    first = page.locator(f"#claimable li.task:has-text('#{server['first']}')")
    assert first.locator(".badge.late").count() == 1  # overdue, and listed first (earliest due)
    assert "overdue" in (claimable.first.get_attribute("class") or "")
    assert page.locator(".counts .chip").inner_text().split() == ["front_desk", "2"]
    shoot(page, "02-inbox")

    first.locator("button[data-action=claim]").click()
    page.wait_for_url(f"{base}/inbox*")
    mine = page.locator("li.task:has(button[data-action=unclaim])")
    assert mine.count() == 1
    mine.locator("a.name").click()
    page.wait_for_selector("#task-form")
    assert page.locator("[data-field=decision] .req").count() == 1  # the required mark
    assert page.locator("#f-decision option").all_inner_texts()[1:] == ["同意", "退回"]
    shoot(page, "03-task")

    page.click("button[data-action=complete]")  # nothing chosen: the form comes back with the error
    error = page.locator("[data-field=decision] .field-error")
    error.wait_for()
    assert error.inner_text() == "此项必填"
    shoot(page, "04-task-invalid")

    page.select_option("#f-decision", "approve")
    page.click("button[data-action=complete]")
    page.wait_for_url(f"{base}/inbox")
    assert "任务已完成" in page.locator(".flash.ok").inner_text()
    assert page.locator("#claimable li.task").count() == 1

    page.goto(f"{base}/cases/{server['first']}")
    assert page.locator("h1 .st-completed").count() == 1
    assert "approve" in page.locator("table.kv").inner_text()
    shoot(page, "05-case-done")

    page.goto(f"{base}/inbox?lang=en")
    assert page.locator("h1").inner_text() == "Inbox"
    page.goto(f"{base}/cases")
    assert page.locator("h1").inner_text() == "Cases"


def test_process_owner_sees_line_numbers_and_starts_a_case(server, page):
    base = server["url"]
    sign_in(page, base, "olivia")
    page.goto(f"{base}/definitions")
    assert page.locator("table.list a:has-text('两步测试')").count() == 1
    shoot(page, "06-definitions")

    def upload(name: str, content: bytes) -> list[str]:
        page.set_input_files("#upload input[type=file]", files=[
            {"name": name, "mimeType": "application/xml", "buffer": content}])
        page.click("#upload button[type=submit]")
        page.wait_for_selector("#problems")
        assert name in page.locator("#problems").inner_text()
        return [line.strip() for line in page.locator("#problems td.line").all_inner_texts()]

    assert upload("malformed.bpmn", MALFORMED_BPMN) == ["5"]  # the closing tag that does not match
    assert upload("broken.bpmn", BROKEN_BPMN) == ["5", "6", "8"]  # bad target, no group, unknown type
    shoot(page, "07-upload-problems")
    assert page.locator("table.list a:has-text('broken')").count() == 0  # nothing was deployed

    page.goto(f"{base}/definitions/complaint_travel/1")
    page.wait_for_selector("#diagram[data-ready=true]")
    assert page.locator("#diagram svg .djs-element").count() > 10
    shoot(page, "08-definition-diagram")

    page.goto(f"{base}/definitions/two_step/1")
    page.click("#start-form button[type=submit]")  # the title is required
    page.locator("[data-field=title] .field-error").wait_for()
    page.fill("#f-title", "楼道灯不亮")
    page.fill("#f-amount", "5")
    page.click("#start-form button[type=submit]")
    page.wait_for_url(f"{base}/cases/*")
    assert "案件已发起" in page.locator(".flash.ok").inner_text()
    assert "楼道灯不亮" in page.locator("table.kv").inner_text()

    page.goto(f"{base}/cases/{server['travel']}")
    page.wait_for_selector("#diagram[data-ready=true]")
    assert page.locator("#diagram .djs-element.cf-active").count() >= 1
    assert page.locator("#diagram .djs-element.cf-done").count() >= 1
    shoot(page, "09-case-diagram")


def test_auditor_steps_a_replay(server, page):
    base = server["url"]
    sign_in(page, base, "audrey")
    page.goto(f"{base}/audit")
    assert page.locator("#verify.ok").count() == 1
    assert page.locator("a:has-text('CSV')").first.get_attribute("href").startswith("/audit/export")
    shoot(page, "10-audit")

    csv = page.request.get(f"{base}/audit/export?format=csv&instance_id={server['travel']}")
    assert csv.ok and csv.text().lstrip("\ufeff").startswith("seq,")

    page.goto(f"{base}/audit/cases/{server['travel']}")
    events = page.locator("ol.timeline li").count()
    assert events >= 4
    shoot(page, "11-timeline")

    page.goto(f"{base}/audit/cases/{server['travel']}/replay?upto_seq=1")
    page.wait_for_selector("#diagram[data-ready=true]")
    assert page.locator("#replay-pos").get_attribute("data-upto") == "1"
    shoot(page, "12-replay-step1")
    page.click("a[data-step=next]")
    page.wait_for_selector("#replay-pos[data-upto='2']")
    page.wait_for_selector("#diagram[data-ready=true]")
    assert page.locator("ol.steps li.now").count() == 1
    page.click("a[data-step=next]")
    page.wait_for_selector("#replay-pos[data-upto='3']")
    page.click("a[data-step=last]")
    page.wait_for_selector(f"#replay-pos[data-upto='{events}']")
    assert page.locator(".verify.ok").count() == 1  # the rebuilt case matches the stored one
    page.wait_for_selector("#diagram[data-ready=true]")
    shoot(page, "13-replay-last")

    page.goto(f"{base}/reports")
    assert page.locator("#report-two_step svg.chart").count() >= 2
    shoot(page, "14-reports")
