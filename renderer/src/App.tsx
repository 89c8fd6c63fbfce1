import { ConfirmDialog } from "./components/ConfirmDialog";
import { Notices } from "./components/Notices";
import { TopBar } from "./components/TopBar";
import { GpusScreen } from "./screens/gpus/GpusScreen";
import { PlaygroundScreen } from "./screens/playground/PlaygroundScreen";
import { RegistryScreen } from "./screens/registry/RegistryScreen";
import { RunsScreen } from "./screens/runs/RunsScreen";
import { WorkbenchScreen } from "./screens/workbench/WorkbenchScreen";
import { useUi } from "./stores/ui";

export function App() {
  const screen = useUi((state) => state.screen);
  return (
    <div className="app">
      <TopBar />
      <main className="screen" data-testid={`screen-${screen}`}>
        {/* The workbench stays mounted so that the editor keeps its undo history and scroll position. */}
        <div className="screen-page" hidden={screen !== "workbench"}>
          <WorkbenchScreen />
        </div>
        {screen === "gpus" && <GpusScreen />}
        {screen === "runs" && <RunsScreen />}
        {screen === "registry" && <RegistryScreen />}
        {screen === "playground" && <PlaygroundScreen />}
      </main>
      <Notices />
      <ConfirmDialog />
    </div>
  );
}
