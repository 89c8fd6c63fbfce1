// The typed contract between the renderer and the control plane. No DOM and no Node imports:
// the renderer, the Electron preload and the control plane all import this folder.
export * from "./api.js";
export * from "./messages.js";
export * from "./models.js";
export * from "./runs.js";
export * from "./telemetry.js";
export * from "./workspace.js";
