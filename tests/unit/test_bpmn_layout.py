"""Diagram interchange (BPMNDI) checks for every BPMN file in workflows/bpmn/.

The files are drawn by hand for Camunda Modeler / bpmn.io; these tests make sure
every element is drawn, shapes do not sit on top of each other, edges have a
path, user tasks have someone to work them and the process keys are the fixed ones.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from lxml import etree

REPO_ROOT = Path(__file__).resolve().parents[2]
BPMN_DIR = REPO_ROOT / "workflows" / "bpmn"
BPMN_FILES = sorted(BPMN_DIR.glob("*.bpmn"))

EXPECTED_KEYS = {"property_complaint", "customer_return_8d", "lab_appeal", "complaint_travel"}

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
}
BPMN = "{%s}" % NS["bpmn"]

FLOW_NODE_TAGS = {
    BPMN + tag
    for tag in (
        "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
        "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
        "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
        "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
    )
}
SUBPROCESS_TAGS = {BPMN + "subProcess", BPMN + "transaction", BPMN + "adHocSubProcess"}


def _parse(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.parse(str(path), parser)


def _flow_nodes(tree) -> dict[str, etree._Element]:
    return {el.get("id"): el for el in tree.iter() if el.tag in FLOW_NODE_TAGS}


def _sequence_flows(tree) -> dict[str, etree._Element]:
    return {el.get("id"): el for el in tree.iter(BPMN + "sequenceFlow")}


def _shapes_by_plane(tree) -> list[dict[str, tuple[float, float, float, float]]]:
    planes = []
    for plane in tree.iter("{%s}BPMNPlane" % NS["bpmndi"]):
        shapes = {}
        for shape in plane.findall("bpmndi:BPMNShape", NS):
            bounds = shape.find("dc:Bounds", NS)
            assert bounds is not None, f"shape {shape.get('id')} has no dc:Bounds"
            shapes[shape.get("bpmnElement")] = tuple(
                float(bounds.get(k)) for k in ("x", "y", "width", "height"))
        planes.append(shapes)
    return planes


def _all_shapes(tree) -> dict[str, tuple[float, float, float, float]]:
    merged: dict[str, tuple[float, float, float, float]] = {}
    for shapes in _shapes_by_plane(tree):
        merged.update(shapes)
    return merged


def _edges(tree) -> dict[str, etree._Element]:
    return {e.get("bpmnElement"): e for e in tree.iter("{%s}BPMNEdge" % NS["bpmndi"])}


def _subprocess_ancestors(el) -> set[str]:
    ids = set()
    parent = el.getparent()
    while parent is not None:
        if parent.tag in SUBPROCESS_TAGS:
            ids.add(parent.get("id"))
        parent = parent.getparent()
    return ids


def _overlap(a, b) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _exempt(a_id: str, b_id: str, nodes: dict[str, etree._Element]) -> bool:
    a, b = nodes[a_id], nodes[b_id]
    # a boundary event sits on the border of the activity it is attached to
    if a.tag == BPMN + "boundaryEvent" and a.get("attachedToRef") == b_id:
        return True
    if b.tag == BPMN + "boundaryEvent" and b.get("attachedToRef") == a_id:
        return True
    # nodes inside an expanded sub-process are drawn inside its shape
    if b_id in _subprocess_ancestors(a) or a_id in _subprocess_ancestors(b):
        return True
    # a boundary event on a sub-process vs. that sub-process's children
    for x, y in ((a, b), (b, a)):
        if x.tag == BPMN + "boundaryEvent" and x.get("attachedToRef") in _subprocess_ancestors(y):
            return True
    return False


params = pytest.mark.parametrize("path", BPMN_FILES, ids=[p.name for p in BPMN_FILES])


def test_bpmn_files_exist():
    assert BPMN_FILES, f"no .bpmn files in {BPMN_DIR}"


@params
def test_every_flow_node_has_a_shape(path):
    tree = _parse(path)
    shapes = _all_shapes(tree)
    missing = sorted(set(_flow_nodes(tree)) - set(shapes))
    assert not missing, f"flow nodes without BPMNShape: {missing}"


@params
def test_every_sequence_flow_has_an_edge(path):
    tree = _parse(path)
    edges = _edges(tree)
    missing = sorted(set(_sequence_flows(tree)) - set(edges))
    assert not missing, f"sequence flows without BPMNEdge: {missing}"


@params
def test_every_edge_has_at_least_two_waypoints(path):
    tree = _parse(path)
    short = [eid for eid, edge in _edges(tree).items() if len(edge.findall("di:waypoint", NS)) < 2]
    assert not short, f"edges with fewer than 2 waypoints: {short}"


@params
def test_flow_node_shapes_do_not_overlap(path):
    tree = _parse(path)
    nodes = _flow_nodes(tree)
    overlaps = []
    for shapes in _shapes_by_plane(tree):
        drawn = sorted(i for i in shapes if i in nodes)
        for a_id, b_id in combinations(drawn, 2):
            if _overlap(shapes[a_id], shapes[b_id]) and not _exempt(a_id, b_id, nodes):
                overlaps.append((a_id, b_id))
    assert not overlaps, f"overlapping shapes: {overlaps}"


@params
def test_every_user_task_has_candidate_groups_or_lane(path):
    tree = _parse(path)
    in_lane = {ref.text.strip() for ref in tree.iter(BPMN + "flowNodeRef") if ref.text}
    unassigned = [
        t.get("id") for t in tree.iter(BPMN + "userTask")
        if not t.get("{%s}candidateGroups" % NS["camunda"]) and t.get("id") not in in_lane
    ]
    assert not unassigned, f"user tasks with neither camunda:candidateGroups nor a lane: {unassigned}"


@params
def test_process_ids_are_the_expected_keys(path):
    tree = _parse(path)
    processes = [p for p in tree.iter(BPMN + "process") if p.get("isExecutable") == "true"]
    assert processes, "no executable process"
    ids = [p.get("id") for p in processes]
    if path.stem in EXPECTED_KEYS:
        assert path.stem in ids, f"{path.name} must define the process {path.stem!r}, found {ids}"
    for pid in ids:
        # a fixed key, or an auxiliary process named after one (e.g. property_complaint_monthly_report)
        assert pid in EXPECTED_KEYS or any(pid.startswith(key + "_") for key in EXPECTED_KEYS), (
            f"unexpected process id {pid!r}; expected one of {sorted(EXPECTED_KEYS)}")
