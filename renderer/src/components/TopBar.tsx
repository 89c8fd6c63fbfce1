import { useTelemetry } from "../stores/telemetry";
import { useUi, type Screen } from "../stores/ui";

const SCREENS: { id: Screen; label: string }[] = [
  { id: "workbench", label: "Workbench" },
  { id: "gpus", label: "GPUs" },
  { id: "runs", label: "Runs" },
  { id: "registry", label: "Registry" },
  { id: "playground", label: "Playground" },
];

export function TopBar() {
  const screen = useUi((state) => state.screen);
  const show = useUi((state) => state.show);
  const connection = useUi((state) => state.connection);
  const engine = useTelemetry((state) => state.engine);

  let connectionLabel: string = connection;
  if (connection === "open") connectionLabel = "connected";
  if (connection === "unauthorized") connectionLabel = "invalid token";

  const engineTitle = engine?.last_error ? `${engine.last_error}\nLog: ${engine.log_path}` : (engine?.url ?? undefined);
  return (
    <header className="top-bar">
      <span className="brand">Galley</span>
      <nav className="nav">
        {SCREENS.map(({ id, label }) => (
          <button
            key={id}
            className={id === screen ? "nav-item active" : "nav-item"}
            data-testid={`nav-${id}`}
            onClick={() => show(id)}
          >
            {label}
          </button>
        ))}
      </nav>
      <span className="spacer" />
      <span className={`pill engine-${engine?.state ?? "unknown"}`} data-testid="engine-state" title={engineTitle}>
        engine: {engine?.state ?? "…"}
      </span>
      <span
        className={`pill connection-${connection}`}
        data-testid="connection-state"
        title={connection === "unauthorized" ? "The server rejected this page's token. Open the URL that `galley serve` printed." : undefined}
      >
        {connectionLabel}
      </span>
    </header>
  );
}
