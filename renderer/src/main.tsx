import "./styles.css";

import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App";
import { connect } from "./bootstrap";
import { createTransport } from "./transport/connect";

const root = createRoot(document.getElementById("root")!);

let startError: string | null = null;
try {
  connect(createTransport());
} catch (error) {
  startError = error instanceof Error ? error.message : String(error);
}

root.render(
  <StrictMode>
    {startError ? (
      <div className="start-error" data-testid="start-error">
        {startError}
      </div>
    ) : (
      <App />
    )}
  </StrictMode>,
);
