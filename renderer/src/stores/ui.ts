// Screen navigation (with the run or model a link selected), the connection state and the
// notices shown in the corner.
import { create } from "zustand";

import { describeError } from "../api/client";
import type { ConnectionState } from "../transport/transport";

export type Screen = "workbench" | "gpus" | "runs" | "registry" | "playground";

export interface Notice {
  id: number;
  kind: "error" | "info";
  text: string;
}

interface UiState {
  screen: Screen;
  // The run the Runs screen shows and the model the Registry screen shows. Null shows the first.
  selectedRun: string | null;
  selectedModel: string | null;
  connection: ConnectionState;
  notices: Notice[];
  show(screen: Screen): void;
  selectRun(id: string | null): void;
  selectModel(key: string | null): void;
  /** Switches to the Runs screen with this run selected. */
  openRun(id: string): void;
  /** Switches to the Registry screen with this model selected. */
  openModel(key: string): void;
  setConnection(state: ConnectionState): void;
  notify(kind: Notice["kind"], text: string): void;
  /** Shows a failed action as an error notice: what was being done, then the reason. */
  reportError(action: string, error: unknown): void;
  dismiss(id: number): void;
}

let nextNoticeId = 1;

export const useUi = create<UiState>()((set) => ({
  screen: "workbench",
  selectedRun: null,
  selectedModel: null,
  connection: "connecting",
  notices: [],
  show: (screen) => set({ screen }),
  selectRun: (selectedRun) => set({ selectedRun }),
  selectModel: (selectedModel) => set({ selectedModel }),
  openRun: (id) => set({ screen: "runs", selectedRun: id }),
  openModel: (key) => set({ screen: "registry", selectedModel: key }),
  setConnection: (connection) => set({ connection }),
  notify: (kind, text) => set((state) => ({ notices: [...state.notices, { id: nextNoticeId++, kind, text }] })),
  reportError: (action, error) =>
    set((state) => ({
      notices: [...state.notices, { id: nextNoticeId++, kind: "error", text: `${action} failed: ${describeError(error)}` }],
    })),
  dismiss: (id) => set((state) => ({ notices: state.notices.filter((notice) => notice.id !== id) })),
}));
