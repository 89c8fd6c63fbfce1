// Electron main process: one window on the built renderer, the control plane running
// in-process (the same one `galley serve` runs), and an IPC bridge that carries the
// contract's requests and events between them. Everything else lives in ../node.
import fs from "node:fs";
import path from "node:path";

import { app, BrowserWindow, dialog, ipcMain, Menu, session } from "electron";

import { type ApiResponse, ApiRequest, toValidationIssues } from "../common/index.js";
import { ControlPlane } from "../node/control-plane.js";
import { resolveDataHome, resolveLayout } from "../node/layout.js";
import { APP_ORIGIN, registerAppScheme, serveRenderer } from "./app-protocol.js";
import { EVENT_CHANNEL, REQUEST_CHANNEL } from "./channels.js";
import { ensurePythonEnvironment, PythonSetupError } from "./first-run.js";
import { buildMenu } from "./menu.js";
import { loadWindowState, trackWindowState } from "./window-state.js";

registerAppScheme();

const dataHome = resolveDataHome();
const settingsFile = path.join(dataHome, "settings.json");

let mainWindow: BrowserWindow | null = null;
// Requests wait on this while the control plane starts or restarts for another workspace.
let controlPlane: Promise<ControlPlane> | null = null;
let quitting = false;

function readWorkspaceSetting(): string | undefined {
  try {
    const settings = JSON.parse(fs.readFileSync(settingsFile, "utf8")) as { workspace?: unknown };
    return typeof settings.workspace === "string" ? settings.workspace : undefined;
  } catch {
    return undefined;
  }
}

function writeWorkspaceSetting(workspace: string): void {
  fs.mkdirSync(dataHome, { recursive: true });
  fs.writeFileSync(settingsFile, JSON.stringify({ workspace }, null, 2));
}

/** Points a packaged app at the engine/ and resources/ shipped beside its asar archive, and at its own Python. */
async function configurePackagedLayout(): Promise<void> {
  if (!app.isPackaged) return;
  process.env.GALLEY_ENGINE_DIR ??= path.join(process.resourcesPath, "engine");
  process.env.GALLEY_RESOURCES_DIR ??= path.join(process.resourcesPath, "resources");
  process.env.GALLEY_RENDERER_DIR ??= path.join(process.resourcesPath, "renderer");
  process.env.GALLEY_PYTHON ??= await ensurePythonEnvironment(process.env.GALLEY_ENGINE_DIR, dataHome);
}

async function startControlPlane(workspace: string | undefined): Promise<ControlPlane> {
  const plane = new ControlPlane({ home: dataHome, ...(workspace ? { workspace } : {}) });
  plane.dispatcher.on("event", (event) => mainWindow?.webContents.send(EVENT_CHANNEL, event));
  // The engine and the recipe runner read the registry over HTTP, so the API listens on
  // 127.0.0.1 with its token even though the window itself uses IPC.
  await plane.listen(0, "127.0.0.1");
  // `galley run` and `galley gpus` on this machine find the app through serve.json and use its engine.
  plane.advertise();
  // NOTE: on the first start this generates the default model (about ten seconds) before the
  // window opens.
  await plane.ensureDefaults();
  plane.startEngine().catch((error: unknown) => {
    // The supervisor's engine.status events report the failure to the window; the log has the details.
    plane.log.error("the engine did not start", { error: error instanceof Error ? error.message : String(error) });
  });
  return plane;
}

async function handleRequest(message: unknown): Promise<ApiResponse> {
  const parsed = ApiRequest.safeParse(message);
  if (!parsed.success) {
    return {
      kind: "response",
      id: 0,
      ok: false,
      error: { code: "invalid_request", message: "the window sent a malformed request", issues: toValidationIssues(parsed.error) },
    };
  }
  if (!controlPlane) {
    return { kind: "response", id: parsed.data.id, ok: false, error: { code: "internal", message: "the control plane has not started yet; wait for Galley to finish starting" } };
  }
  return (await controlPlane).dispatcher.handle(parsed.data);
}

async function openWorkspace(folder: string): Promise<void> {
  writeWorkspaceSetting(folder);
  const previous = controlPlane;
  controlPlane = (async () => {
    // The control plane takes its workspace at construction, so switching restarts it (and
    // the engine); runs in progress are cancelled.
    await (await previous)?.close();
    return startControlPlane(folder);
  })();
  await controlPlane;
  mainWindow?.webContents.reload();
}

function createWindow(rendererDist: string, resourcesDir: string): BrowserWindow {
  const state = loadWindowState(dataHome);
  // Packaged apps take their icon from the installer; a checkout shows this one.
  const icon = path.join(resourcesDir, "icons", "icon.png");
  const window = new BrowserWindow({
    ...state.bounds,
    ...(fs.existsSync(icon) ? { icon } : {}),
    minWidth: 900,
    minHeight: 600,
    title: "Galley",
    backgroundColor: "#17191d",
    show: false,
    webPreferences: {
      preload: path.join(__dirname, "preload.js"),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webviewTag: false,
      spellcheck: false,
    },
  });
  if (state.maximized) window.maximize();
  trackWindowState(window, dataHome);
  window.once("ready-to-show", () => window.show());
  window.on("closed", () => {
    if (mainWindow === window) mainWindow = null;
  });
  serveRenderer(rendererDist);
  void window.loadURL(`${APP_ORIGIN}/index.html`);
  return window;
}

function hardenWebContents(): void {
  session.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  app.on("web-contents-created", (_event, contents) => {
    contents.setWindowOpenHandler(() => ({ action: "deny" }));
    contents.on("will-navigate", (event, url) => {
      if (!url.startsWith(`${APP_ORIGIN}/`)) event.preventDefault();
    });
  });
}

async function start(): Promise<void> {
  hardenWebContents();
  try {
    await configurePackagedLayout();
  } catch (error) {
    const detail = error instanceof PythonSetupError ? `${error.message}\n\nLog: ${error.logPath}` : String(error);
    dialog.showErrorBox("Galley could not set up its Python engine", detail);
    app.exit(1);
    return;
  }

  ipcMain.handle(REQUEST_CHANNEL, (event, message: unknown) => {
    if (!event.senderFrame?.url.startsWith(`${APP_ORIGIN}/`)) {
      throw new Error(`rejected a request from ${event.senderFrame?.url ?? "an unknown frame"}`);
    }
    return handleRequest(message);
  });

  controlPlane = startControlPlane(readWorkspaceSetting());
  try {
    await controlPlane;
  } catch (error) {
    dialog.showErrorBox("Galley could not start", error instanceof Error ? error.message : String(error));
    app.exit(1);
    return;
  }

  const paths = (await controlPlane).paths;
  Menu.setApplicationMenu(buildMenu(() => mainWindow, { openWorkspace, dataHome: paths.home, logsDir: paths.logs }));
  const layout = resolveLayout();
  mainWindow = createWindow(layout.rendererDist, layout.resourcesDir);
  app.on("activate", () => {
    if (BrowserWindow.getAllWindows().length === 0) mainWindow = createWindow(layout.rendererDist, layout.resourcesDir);
  });
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on("second-instance", () => {
    if (!mainWindow) return;
    if (mainWindow.isMinimized()) mainWindow.restore();
    mainWindow.focus();
  });
  app.on("window-all-closed", () => {
    if (process.platform !== "darwin") app.quit();
  });
  // Stop runs and the engine before exiting, so no Python process outlives the app.
  app.on("before-quit", (event) => {
    if (quitting || !controlPlane) return;
    event.preventDefault();
    quitting = true;
    void controlPlane
      .then((plane) => plane.close())
      .catch((error: unknown) => console.error("stopping the control plane failed", error))
      .finally(() => app.quit());
  });
  app.whenReady().then(start, (error: unknown) => {
    console.error(error);
    app.exit(1);
  });
}
