"""W&B public API responses for tests without a W&B server.

wandb 0.31's public API (wandb.apis.public: Runs, Run, HistoryScan) sends every request
through a `ServiceApi` to the wandb-core process, which talks to the server. `ReplayService`
stands in for that ServiceApi and answers from recorded responses in the server's format:
the Runs GraphQL query's `data` (run fragments with `config` as a JSON string of
{key: {"value": ...}} and `summaryMetrics` as a JSON string), the history-keys query, and
the history-scan protobuf messages. wandb's own classes then parse them as they would a live
project's. `responses_from_offline` builds those responses from a real run's offline .wandb
records, i.e. what the server returns once the run is synced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from wandb.proto import wandb_api_pb2 as pb


def responses_from_offline(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    """(run fragment attrs, history rows) of one offline run, in the server's format."""
    header = next(record["run"] for record in records if record["type"] == "run")
    config = (header.get("config") or {}).get("update") or {}
    summary: dict[str, Any] = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"]["update"])
    history = [record["history"]["item"] for record in records if record["type"] == "history"]
    exited = any(record["type"] == "exit" for record in records)
    attrs = {
        "id": f"storage-{header['run_id']}",
        "name": header["run_id"],
        "displayName": header.get("display_name"),
        "state": "finished" if exited else "crashed",
        "group": header.get("run_group"),
        "tags": header.get("tags", []),
        "config": json.dumps(
            {key: {"desc": None, "value": value} for key, value in config.items()}
        ),
        "summaryMetrics": json.dumps(summary),
        "systemMetrics": "{}",
        "historyKeys": {"lastStep": max(row["_step"] for row in history)},
        "historyLineCount": len(history),
        "user": {"name": "researcher", "username": "researcher"},
    }
    return attrs, history


class ReplayService:
    """The ServiceApi calls that listing runs and scanning their history make."""

    def __init__(self, runs: list[tuple[dict[str, Any], list[dict]]]) -> None:
        self.runs = runs
        self.history = {attrs["name"]: rows for attrs, rows in runs}
        self.scans: dict[int, str] = {}
        self.queries: list[str] = []

    def execute_graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, **_: Any
    ) -> dict[str, Any]:
        variables = variables or {}
        if "query Runs(" in query:
            self.queries.append("Runs")
            edges = [
                {"node": dict(attrs), "cursor": str(i)} for i, (attrs, _) in enumerate(self.runs)
            ]
            page = {"hasNextPage": False, "endCursor": str(len(edges) - 1)}
            runs = {"edges": edges, "pageInfo": page}
            return {"project": {"internalId": "p", "runCount": len(edges), "runs": runs}}
        if "RunHistoryKeys" in query:
            self.queries.append("RunHistoryKeys")
            rows = self.history[variables["name"]]
            return {"project": {"run": {"historyKeys": {"lastStep": rows[-1]["_step"]}}}}
        raise AssertionError(f"a query the replay has no response for: {query[:120]}")

    def send_api_request(
        self, request: pb.ApiRequest, timeout: float | None = None
    ) -> pb.ApiResponse:
        history_request = request.read_run_history_request
        response = pb.ApiResponse()
        kind = history_request.WhichOneof("request")
        if kind == "scan_run_history_init":
            scan_id = len(self.scans) + 1
            self.scans[scan_id] = history_request.scan_run_history_init.run_id
            response.read_run_history_response.scan_run_history_init.request_id = scan_id
        elif kind == "scan_run_history":
            scan = history_request.scan_run_history
            rows = self.history[self.scans[scan.request_id]]
            page = response.read_run_history_response.run_history
            for row in rows:
                if scan.min_step <= row["_step"] < scan.max_step:
                    items = page.history_rows.add().history_items
                    for key, value in row.items():
                        items.add(key=key, value_json=json.dumps(value))
        else:
            raise AssertionError(f"a request the replay has no response for: {kind}")
        return response

    def finalize(self, obj: object, cleanup: pb.ApiRequest) -> Callable[[], None]:
        return lambda: None
