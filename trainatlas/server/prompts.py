"""MCP prompts: the belief-state prompt texts of ``trainatlas.prompts``, with their arguments, and
completion of the run ids those prompts and the resource templates take."""

from typing import Annotated, Any

import mcp_types as t
from fastmcp import FastMCP
from fastmcp.exceptions import PromptError
from pydantic import Field

from trainatlas.prompts import PROMPTS
from trainatlas.prompts import render as render_prompt
from trainatlas.server.state import RootState

RunId = Annotated[str, Field(description="run id or run name (the newest run of that name)")]
Question = Annotated[str, Field(description="the user's question, in their words")]


def register_prompts(mcp: FastMCP, state: RootState) -> None:
    """Add diagnose_run, should_i_stop, compare_runs and postmortem to ``mcp``. Each refuses a run that is
    not under the root: a prompt about a typo would send the model hunting for a run that does not exist."""

    def render(name: str, runs: list[str], question: str) -> str:
        from trainatlas.store.catalog import UnknownRun

        catalog = state.catalog()
        for run in runs:
            try:
                catalog.resolve(run)
            except UnknownRun as exc:
                raise PromptError(exc.answer) from exc
        try:
            return render_prompt(name, runs, question)
        except ValueError as exc:
            raise PromptError(str(exc)) from exc

    @mcp.prompt(description=PROMPTS["diagnose_run"][0])
    def diagnose_run(run_id: RunId, question: Question = "What is wrong with this run and what should I do?") -> str:
        return render("diagnose_run", [run_id], question)

    @mcp.prompt(description=PROMPTS["should_i_stop"][0])
    def should_i_stop(run_id: RunId, question: Question = "Should I stop this run now?") -> str:
        return render("should_i_stop", [run_id], question)

    @mcp.prompt(description=PROMPTS["compare_runs"][0])
    def compare_runs(
        run_ids: Annotated[str, Field(description="comma-separated run ids; the first is the reference")],
        question: Question = "Which run is better, and why?",
    ) -> str:
        return render("compare_runs", [r.strip() for r in run_ids.split(",") if r.strip()], question)

    @mcp.prompt(description=PROMPTS["postmortem"][0])
    def postmortem(run_id: RunId, question: Question = "What went wrong, and what do we change next time?") -> str:
        return render("postmortem", [run_id], question)


def register_completions(mcp: FastMCP, state: RootState) -> None:
    """Complete ``run_id`` (prompts, resource templates) and the last id of ``run_ids`` (compare_runs) from
    the runs under the root, matching a run id or name prefix; other arguments get no suggestions."""
    from trainatlas.tools.runs import list_runs

    @mcp.completion
    def complete_run_ids(ref: Any, argument: t.CompletionArgument, context: Any) -> list[str] | None:
        if argument.name not in ("run_id", "run_ids"):
            return None
        done, _, typed = argument.value.rpartition(",") if argument.name == "run_ids" else ("", "", argument.value)
        before = f"{done}," if done else ""
        typed = typed.strip()
        rows = list_runs(state.catalog())
        return [before + r["run_id"] for r in rows if r["run_id"].startswith(typed) or r["name"].startswith(typed)]
