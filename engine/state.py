"""Serialise running workflows without their specs.

SpiffWorkflow writes the whole spec into every serialized workflow by default;
here only the instance state is written, and the spec, parsed once per
definition version, is supplied again on load.
"""
from __future__ import annotations

import contextvars
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG

_specs: contextvars.ContextVar[tuple] = contextvars.ContextVar("complaintflow_specs")


class _SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct):
        spec, subprocess_specs = _specs.get()
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


_config = dict(DEFAULT_CONFIG)
_config[BpmnWorkflow] = _SpecFreeWorkflowConverter
_serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_config))


def dump(workflow: BpmnWorkflow) -> str:
    """Return the workflow's state as JSON, without its spec."""
    return _serializer.serialize_json(workflow)


def load(state: str, spec, subprocess_specs, script_engine) -> BpmnWorkflow:
    """Rebuild a workflow from `dump` output and its already parsed specs."""
    token = _specs.set((spec, subprocess_specs))
    try:
        workflow = _serializer.deserialize_json(state)
    finally:
        _specs.reset(token)
    workflow.script_engine = script_engine
    return workflow
