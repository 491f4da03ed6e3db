"""The pages' words in Chinese (the default) and English; `?lang=en` switches for the session."""
from __future__ import annotations

import re

LANGS = ("zh", "en")

STRINGS: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "app": ("投诉流程", "complaintflow"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "wrong_pair": ("用户名或密码错误", "The username or password is wrong"),
    "inbox": ("待办", "Inbox"),
    "cases": ("案件", "Cases"),
    "definitions": ("流程定义", "Processes"),
    "audit": ("审计", "Audit"),
    "reports": ("报表", "Reports"),
    "my_tasks": ("我的任务", "My tasks"),
    "group_tasks": ("组内待领取", "Unclaimed in my groups"),
    "per_group": ("各组待办数", "Open tasks per group"),
    "process": ("流程", "Process"),
    "group": ("组", "Group"),
    "all": ("全部", "All"),
    "filter": ("筛选", "Filter"),
    "task": ("任务", "Task"),
    "case": ("案件", "Case"),
    "due": ("期限", "Due"),
    "overdue": ("已逾期", "overdue"),
    "assignee": ("处理人", "Assignee"),
    "claim": ("领取", "Claim"),
    "unclaim": ("退回组内", "Unclaim"),
    "open": ("打开", "Open"),
    "no_tasks": ("没有待办任务", "No tasks"),
    "complete": ("提交完成", "Complete"),
    "back_to_inbox": ("返回待办", "Back to inbox"),
    "required": ("必填", "required"),
    "case_data": ("案件数据", "Case data"),
    "history": ("处理记录", "History"),
    "form_errors": ("表单有误，请修改标出的字段", "The form has errors; fix the marked fields"),
    "claim_first": ("请先领取此任务再提交", "Claim this task before completing it"),
    "task_done": ("任务已完成", "Task completed"),
    "claimed": ("已领取", "Claimed"),
    "unclaimed": ("已退回组内", "Returned to the group"),
    "status": ("状态", "Status"),
    "open_tasks": ("进行中的任务", "Open tasks"),
    "deadlines": ("期限", "Deadlines"),
    "timers": ("等待中的计时器", "Waiting timers"),
    "diagram": ("流程图", "Diagram"),
    "no_diagram": ("此流程文件没有图形信息", "This file has no diagram layout"),
    "legend_active": ("进行中", "active"),
    "legend_done": ("已完成", "done"),
    "versions": ("版本", "Versions"),
    "version": ("版本", "Version"),
    "deployed_at": ("部署时间", "Deployed"),
    "deployed_by": ("部署人", "By"),
    "upload": ("上传 BPMN 文件", "Upload a BPMN file"),
    "upload_button": ("上传并部署", "Upload and deploy"),
    "deployed": ("已部署", "Deployed"),
    "unchanged": ("内容未变，未建新版本", "unchanged, no new version"),
    "problems": ("文件有问题，未部署", "The file has problems and was not deployed"),
    "file": ("文件", "File"),
    "line": ("行", "Line"),
    "message": ("说明", "Message"),
    "start_case": ("发起案件", "Start a case"),
    "start": ("发起", "Start"),
    "case_started": ("案件已发起", "Case started"),
    "may_not_start": ("你不能发起此流程", "You may not start this process"),
    "timeline": ("时间线", "Timeline"),
    "replay": ("回放", "Replay"),
    "verify": ("哈希链校验", "Hash-chain check"),
    "verify_ok": ("完好，已检查 {n} 条事件", "intact, {n} events checked"),
    "verify_broken": ("损坏：案件 {i} 第 {s} 条 — {r}", "broken: case {i} seq {s} — {r}"),
    "export": ("导出", "Export"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "export_jsonl": ("导出 JSON Lines", "Export JSON Lines"),
    "step": ("步骤", "Step"),
    "previous": ("上一步", "Previous"),
    "next": ("下一步", "Next"),
    "first": ("开始", "First"),
    "last": ("最后", "Last"),
    "replay_at": ("回放至第 {n} / {m} 条事件", "Replayed up to event {n} of {m}"),
    "matches": ("与存储状态一致", "matches the stored case"),
    "differs": ("与存储状态不一致", "differs from the stored case"),
    "event": ("事件", "Event"),
    "time": ("时间", "Time"),
    "actor": ("操作人", "Actor"),
    "element": ("环节", "Element"),
    "details": ("内容", "Details"),
    "started_by": ("发起人", "Started by"),
    "created": ("创建时间", "Created"),
    "updated": ("更新时间", "Updated"),
    "none": ("无", "none"),
    "by_status": ("按状态", "By status"),
    "by_month": ("按月份（发起）", "By month (started)"),
    "breaches": ("超期次数", "Deadlines breached"),
    "breached_cases": ("超期案件", "Cases with a breach"),
    "median_close": ("结案时间中位数（小时）", "Median time to close (hours)"),
    "total": ("合计", "Total"),
    "secondary": ("二次投诉案件", "Secondary complaints"),
    "satisfaction": ("满意度", "Satisfaction"),
    "count": ("数量", "Count"),
    "not_allowed": ("你没有权限查看此页", "You may not see this page"),
    "not_found": ("找不到", "Not found"),
    "error": ("出错了", "Something went wrong"),
    "csrf": ("表单已过期，请重试", "The form expired; try again"),
    "language": ("English", "中文"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "choose": ("请选择", "choose"),
    "all_cases": ("全部案件", "All cases"),
    "signed_in_as": ("当前用户", "Signed in as"),
}

STATUS_WORDS = {
    "running": ("进行中", "running"), "completed": ("已结案", "completed"),
    "terminated": ("已终止", "terminated"), "error": ("出错", "error"),
    "open": ("待办", "open"), "cancelled": ("已取消", "cancelled"),
}

EVENT_WORDS = {
    "instance_started": "案件发起", "instance_completed": "案件结束", "instance_terminated": "案件终止",
    "task_created": "任务生成", "task_claimed": "任务领取", "task_unclaimed": "任务退回组内",
    "task_assigned": "任务指派", "task_completed": "任务完成", "task_cancelled": "任务取消",
    "timer_fired": "计时器触发", "escalated": "超期升级", "incident": "故障",
}

_MESSAGES = [
    (r"is required", "此项必填"),
    (r"must be a whole number", "须为整数"),
    (r"must be a number", "须为数字"),
    (r"must be text", "须为文字"),
    (r"must be true or false", "须为是或否"),
    (r"must be a date \(YYYY-MM-DD\)", "须为日期（年-月-日）"),
    (r"must be at least (\S+) characters", r"至少 \1 个字"),
    (r"must be at most (\S+) characters", r"最多 \1 个字"),
    (r"must be at least (\S+)", r"不能小于 \1"),
    (r"must be at most (\S+)", r"不能大于 \1"),
    (r"must be one of: (.*)", r"须为以下之一：\1"),
    (r"is read-only", "只读，不能修改"),
    (r"is not a field of this form", "不是此表单的字段"),
    (r"no user '(.*)'", r"没有用户 \1"),
]


def text(key: str, lang: str, **values) -> str:
    pair = STRINGS.get(key)
    word = key if pair is None else pair[0 if lang == "zh" else 1]
    return word.format(**values) if values else word


def status_word(status: str, lang: str) -> str:
    pair = STATUS_WORDS.get(status)
    return status if pair is None else pair[0 if lang == "zh" else 1]


def event_word(kind: str, lang: str) -> str:
    return EVENT_WORDS.get(kind, kind) if lang == "zh" else kind.replace("_", " ")


def field_message(message: str, lang: str) -> str:
    """The engine's English validation message, in Chinese when the page is."""
    if lang != "zh":
        return message
    for pattern, replacement in _MESSAGES:
        if re.fullmatch(pattern, message):
            return re.sub(pattern, replacement, message)
    return message
