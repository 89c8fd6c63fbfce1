// The one confirmation dialog of the page: `confirmAction` opens it and resolves with the
// person's choice, so destructive actions (delete a file, release a spawn) read as one await.
import { create } from "zustand";

export interface ConfirmRequest {
  title: string;
  message: string;
  confirmLabel: string;
}

interface DialogState {
  request: ConfirmRequest | null;
  resolve: ((confirmed: boolean) => void) | null;
  answer(confirmed: boolean): void;
}

export const useDialogs = create<DialogState>()((set, get) => ({
  request: null,
  resolve: null,
  answer(confirmed) {
    get().resolve?.(confirmed);
    set({ request: null, resolve: null });
  },
}));

/** Asks the person to confirm. A request made while another is open cancels the first. */
export function confirmAction(request: ConfirmRequest): Promise<boolean> {
  useDialogs.getState().resolve?.(false);
  return new Promise((resolve) => useDialogs.setState({ request, resolve }));
}
