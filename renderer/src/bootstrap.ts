// Connects the page to the control plane: sets the transport, routes pushed events to the
// stores, and loads each store's first state.
import type { ServerEvent } from "@galley/common";

import { setTransport } from "./api/client";
import { useRegistry } from "./stores/registry";
import { useRuns } from "./stores/runs";
import { useTelemetry } from "./stores/telemetry";
import { useUi } from "./stores/ui";
import { useWorkspace } from "./stores/workspace";
import type { Transport } from "./transport/transport";

function routeEvent(event: ServerEvent): void {
  switch (event.type) {
    case "run.output":
    case "run.event":
    case "run.status":
      useRuns.getState().applyEvent(event);
      break;
    case "telemetry":
    case "engine.status":
      useTelemetry.getState().applyEvent(event);
      break;
    case "workspace.changed":
      void useWorkspace
        .getState()
        .applyDiskChanges(event.paths)
        .catch((error: unknown) => useUi.getState().reportError("Reloading files changed on disk", error));
      break;
    case "registry.changed":
      void useRegistry
        .getState()
        .load()
        .catch((error: unknown) => useUi.getState().reportError("Reloading the registry", error));
      break;
  }
}

async function loadAll(): Promise<void> {
  const { reportError } = useUi.getState();
  const loads: [string, () => Promise<void>][] = [
    ["Loading the workspace", () => useWorkspace.getState().load()],
    ["Loading the registry", () => useRegistry.getState().load()],
    ["Loading the run history", () => useRuns.getState().loadList()],
    ["Loading the engine status", () => useTelemetry.getState().load()],
  ];
  await Promise.all(loads.map(([action, load]) => load().catch((error: unknown) => reportError(action, error))));
}

export function connect(transport: Transport): void {
  setTransport(transport);
  transport.subscribe(routeEvent);

  let wasOpen = false;
  transport.onConnectionChange((state) => {
    useUi.getState().setConnection(state);
    // Load on the first connection and again after a reconnect, when events may have been missed.
    if (state === "open") {
      if (wasOpen) void loadAll();
      wasOpen = true;
    }
  });
  void loadAll();
}
