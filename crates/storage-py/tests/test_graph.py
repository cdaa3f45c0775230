"""A real LangGraph graph on StorageSaver: state survives between invocations and a fresh
saver over the same directory, interrupts resume, history is listed."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

import pytest

langgraph_graph = pytest.importorskip("langgraph.graph", reason="langgraph is not installed")
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from agent_storage.langgraph import StorageSaver  # noqa: E402

from .conftest import make_storage  # noqa: E402


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    count: int


def build(checkpointer, *, ask: bool = False):
    def step(state: State) -> dict:
        return {"log": [f"step{state.get('count', 0)}"], "count": state.get("count", 0) + 1}

    def review(state: State) -> dict:
        answer = interrupt("approve?") if ask else "auto"
        return {"log": [f"review:{answer}"]}

    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_node("review", review)
    graph.add_edge(START, "step")
    graph.add_edge("step", "review")
    graph.add_edge("review", END)
    return graph.compile(checkpointer=checkpointer)


async def test_state_persists_across_runs_and_restarts(tmp_path):
    thread = {"configurable": {"thread_id": "chat-1"}}
    storage = make_storage("object", tmp_path)
    await storage.initialize()
    graph = build(StorageSaver(storage))
    first = await graph.ainvoke({"log": ["start"], "count": 0}, thread)
    assert first == {"log": ["start", "step0", "review:auto"], "count": 1}
    second = graph.invoke({"log": ["again"]}, thread)  # the sync path
    assert second["log"] == ["start", "step0", "review:auto", "again", "step1", "review:auto"]
    await storage.close()

    reopened = make_storage("object", tmp_path)
    await reopened.initialize()
    graph = build(StorageSaver(reopened))
    state = await graph.aget_state(thread)
    assert state.values["count"] == 2
    history = [s async for s in graph.aget_state_history(thread)]
    assert len(history) == 8  # input + 3 steps per run, newest first
    assert history[0].config["configurable"]["checkpoint_id"] == state.config[
        "configurable"]["checkpoint_id"]
    await reopened.close()


async def test_interrupt_and_resume(storage):
    graph = build(StorageSaver(storage), ask=True)
    thread = {"configurable": {"thread_id": "review-1"}}
    paused = await graph.ainvoke({"log": [], "count": 0}, thread)
    assert paused["__interrupt__"][0].value == "approve?"
    assert (await graph.aget_state(thread)).next == ("review",)
    done = await graph.ainvoke(Command(resume="yes"), thread)
    assert done["log"] == ["step0", "review:yes"]
