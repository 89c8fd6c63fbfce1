// First start of a packaged app: creates the engine's Python environment from the shipped
// engine/requirements.lock, showing pip's progress in a small window. The same steps as
// scripts/setup-python.sh, without uv: `python -m venv` and `pip install -r`.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import { BrowserWindow } from "electron";

const MIN_PYTHON = [3, 11] as const;

export class PythonSetupError extends Error {
  constructor(
    message: string,
    readonly logPath: string,
  ) {
    super(message);
    this.name = "PythonSetupError";
  }
}

function venvPython(venv: string): string {
  return process.platform === "win32" ? path.join(venv, "Scripts", "python.exe") : path.join(venv, "bin", "python");
}

/** Returns the interpreter that creates the environment: GALLEY_BOOTSTRAP_PYTHON, else python3 (py -3 on Windows). */
function bootstrapPython(): { command: string; args: string[] } {
  const configured = process.env.GALLEY_BOOTSTRAP_PYTHON;
  if (configured) return { command: configured, args: [] };
  return process.platform === "win32" ? { command: "py", args: ["-3"] } : { command: "python3", args: [] };
}

function runLogged(command: string, args: string[], log: fs.WriteStream, onLine: (line: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    log.write(`$ ${command} ${args.join(" ")}\n`);
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" } });
    const forward = (chunk: Buffer) => {
      log.write(chunk);
      for (const line of chunk.toString("utf8").split(/\r?\n/)) if (line.trim()) onLine(line);
    };
    child.stdout.on("data", forward);
    child.stderr.on("data", forward);
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
}

function progressWindow(): BrowserWindow {
  const window = new BrowserWindow({
    width: 640,
    height: 360,
    title: "Setting up Galley",
    resizable: false,
    webPreferences: { sandbox: true, contextIsolation: true, nodeIntegration: false },
  });
  const page =
    "<!doctype html><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">" +
    "<body style='font:13px system-ui;background:#17191d;color:#d9dce1;margin:16px'>" +
    "<h3>Installing Galley's Python engine (PyTorch is large: this takes minutes, once)</h3>" +
    "<pre id='log' style='height:240px;overflow:auto;background:#111;padding:8px;white-space:pre-wrap'></pre></body>";
  void window.loadURL(`data:text/html;charset=utf-8,${encodeURIComponent(page)}`);
  return window;
}

/**
 * Returns the engine's Python interpreter, creating its environment first if needed. The
 * environment lives under <data dir>/python/, keyed by the lock file's hash, so an update
 * with new requirements gets a fresh one. Throws PythonSetupError with the reason and the log.
 */
export async function ensurePythonEnvironment(engineDir: string, dataHome: string): Promise<string> {
  const lock = path.join(engineDir, "requirements.lock");
  const key = crypto.createHash("sha256").update(fs.readFileSync(lock)).digest("hex").slice(0, 16);
  const venv = path.join(dataHome, "python", `engine-${key}`);
  const python = venvPython(venv);
  if (fs.existsSync(path.join(venv, ".complete"))) return python;

  fs.mkdirSync(path.join(dataHome, "logs"), { recursive: true });
  const logPath = path.join(dataHome, "logs", "python-setup.log");
  const log = fs.createWriteStream(logPath, { flags: "a" });
  const window = progressWindow();
  const show = (line: string) => {
    if (window.isDestroyed()) return;
    const script = `{const log=document.getElementById('log');log.textContent+=${JSON.stringify(line + "\n")};log.scrollTop=log.scrollHeight;}`;
    void window.webContents.executeJavaScript(script).catch(() => undefined);
  };

  try {
    const bootstrap = bootstrapPython();
    const versionCheck = `import sys; sys.exit(0 if sys.version_info >= (${MIN_PYTHON.join(", ")}) else 1)`;
    const versionCode = await runLogged(bootstrap.command, [...bootstrap.args, "-c", versionCheck], log, show).catch(() => 127);
    if (versionCode !== 0) {
      throw new PythonSetupError(
        `Galley's engine needs Python ${MIN_PYTHON.join(".")} or newer, and "${bootstrap.command}" is missing or older. ` +
          "Install Python 3.11+ (with venv) and start Galley again, or set GALLEY_BOOTSTRAP_PYTHON to its path.",
        logPath,
      );
    }

    fs.rmSync(venv, { recursive: true, force: true });
    show(`Creating ${venv}`);
    if ((await runLogged(bootstrap.command, [...bootstrap.args, "-m", "venv", venv], log, show)) !== 0) {
      throw new PythonSetupError(`"python -m venv ${venv}" failed; on Debian and Ubuntu install the python3-venv package.`, logPath);
    }
    show("Installing the engine's packages");
    if ((await runLogged(python, ["-m", "pip", "install", "--requirement", lock], log, show)) !== 0) {
      throw new PythonSetupError(`Installing the engine's packages from ${lock} failed. Check the network connection and free disk space, then start Galley again.`, logPath);
    }
    fs.writeFileSync(path.join(venv, ".complete"), new Date().toISOString());
    return python;
  } finally {
    log.end();
    if (!window.isDestroyed()) window.close();
  }
}
