"""Resource subscriptions: a client subscribed to a run is told when new data lands, and every
listener when runs appear or vanish, in both protocol eras (fastmcp 4.1.2 does not do this).

A watcher polls the root about once a second with a few ``stat`` calls per run: a new shard or a
rewritten run.json changes a directory's or the file's mtime. Changes are published on the SDK's
subscription bus (``subscriptions/listen``, 2026-07-28) and sent to the sessions that called
``resources/subscribe`` (handshake era).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as t
from fastmcp import FastMCP
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourcesListChanged, ResourceUpdated

from trainatlas.server.state import RootState, Signature, scan

log = logging.getLogger(__name__)
POLL_S = 1.0
RUNS_URI = "trainatlas://runs"


def run_uris(run_id: str) -> list[str]:
    return [f"{RUNS_URI}/{run_id}", f"{RUNS_URI}/{run_id}/diagnostics"]


class Subscriptions:
    """The subscription handlers of both protocol eras and the watcher that feeds them."""

    def __init__(self, state: RootState, poll_s: float = POLL_S) -> None:
        self.state = state
        self.poll_s = poll_s
        self.bus = InMemorySubscriptionBus()
        self.legacy: dict[str, set[Any]] = {}  # uri -> sessions subscribed with resources/subscribe
        self.legacy_sessions: set[Any] = set()

    def install(self, mcp: FastMCP) -> None:
        low = mcp._mcp_server  # fastmcp 4.1.2 has no public hook for these handlers
        low.add_request_handler("subscriptions/listen", t.SubscriptionsListenRequestParams, ListenHandler(self.bus))
        low.add_request_handler("resources/subscribe", t.SubscribeRequestParams, self._subscribe)
        low.add_request_handler("resources/unsubscribe", t.UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(self, ctx: Any, params: t.SubscribeRequestParams) -> t.EmptyResult:
        self.legacy.setdefault(str(params.uri), set()).add(ctx.session)
        self.legacy_sessions.add(ctx.session)
        return t.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: t.UnsubscribeRequestParams) -> t.EmptyResult:
        self.legacy.get(str(params.uri), set()).discard(ctx.session)
        return t.EmptyResult()

    async def publish_updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self.legacy.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # noqa: BLE001 - a gone client must not stop the others
                self._forget(session)

    async def publish_list_changed(self) -> None:
        await self.bus.publish(ResourcesListChanged())
        for session in list(self.legacy_sessions):
            try:
                await session.send_resource_list_changed()
            except Exception:  # noqa: BLE001
                self._forget(session)

    def _forget(self, session: Any) -> None:
        self.legacy_sessions.discard(session)
        for sessions in self.legacy.values():
            sessions.discard(session)

    async def watch(self) -> None:
        """Poll the root until cancelled; publish what changed."""
        before = await anyio.to_thread.run_sync(scan, self.state.root)
        while True:
            await anyio.sleep(self.poll_s)
            try:
                now = await anyio.to_thread.run_sync(scan, self.state.root)
                await self._publish_changes(before, now)
                before = now
            except Exception:  # the watcher must outlive any one bad scan (logged)
                log.exception("trainatlas: watching the root failed; retrying")

    async def _publish_changes(self, before: dict[str, Signature], now: dict[str, Signature]) -> None:
        changed = [run_id for run_id, sig in now.items() if before.get(run_id) != sig]
        listing_changed = before.keys() != now.keys()
        if not changed and not listing_changed:
            return
        self.state.mark_changed()
        if listing_changed:
            await self.publish_list_changed()
        await self.publish_updated(RUNS_URI)
        for run_id in changed:
            for uri in run_uris(run_id):
                await self.publish_updated(uri)
