// Renders the pending confirmation from stores/dialogs: Escape or Cancel declines, Enter on
// the focused confirm button accepts.
import { useEffect, useRef } from "react";

import { useDialogs } from "../stores/dialogs";

export function ConfirmDialog() {
  const request = useDialogs((state) => state.request);
  const answer = useDialogs((state) => state.answer);
  const confirmButton = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    if (!request) return;
    confirmButton.current?.focus();
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") answer(false);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [request, answer]);

  if (!request) return null;
  return (
    <div className="dialog-backdrop" onClick={() => answer(false)}>
      <div
        className="dialog"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="confirm-title"
        data-testid="confirm-dialog"
        onClick={(event) => event.stopPropagation()}
      >
        <h3 id="confirm-title">{request.title}</h3>
        <p>{request.message}</p>
        <div className="dialog-buttons">
          <button data-testid="confirm-cancel" onClick={() => answer(false)}>
            Cancel
          </button>
          <button ref={confirmButton} className="danger" data-testid="confirm-accept" onClick={() => answer(true)}>
            {request.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
