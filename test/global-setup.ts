// Starts one real `galley serve` for the whole run: a fresh GALLEY_HOME in a temp folder, a
// known token, port 0. Its URL reaches the specs through GALLEY_E2E_URL; the returned
// function stops it. The server's output is kept in test/artifacts/serve.log.
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..");
const ARTIFACTS = path.join(ROOT, "test", "artifacts");
// First start generates the default model and starts the engine, which imports torch.
const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 20_000;

function requireBuilt(file: string): void {
  if (!fs.existsSync(path.join(ROOT, file))) {
    throw new Error(`${file} is missing; build Galley first with \`npm run build\` (or \`npm run setup\`).`);
  }
}

function waitForUrl(server: ChildProcess, log: fs.WriteStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      reject(new Error(`galley serve printed no URL within ${READY_TIMEOUT_MS / 1000} s; see ${log.path}`));
    }, READY_TIMEOUT_MS);
    const scan = (chunk: Buffer) => {
      log.write(chunk);
      output += chunk.toString("utf8");
      const match = /http:\/\/127\.0\.0\.1:\d+\/\?token=[^\s"']+/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
      }
    };
    server.stdout?.on("data", scan);
    server.stderr?.on("data", scan);
    server.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`galley serve exited early (code ${code}, signal ${signal}); see ${log.path}`));
    });
  });
}

function stop(server: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) return resolve();
    const timer = setTimeout(() => server.kill("SIGKILL"), STOP_TIMEOUT_MS);
    server.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    // SIGTERM lets the control plane stop runs and the engine, which ends its workers.
    server.kill("SIGTERM");
  });
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  requireBuilt("renderer/dist/index.html");
  requireBuilt("electron/dist/node/cli/main.js");
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const home = fs.mkdtempSync(path.join(os.tmpdir(), "galley-e2e-"));
  const token = crypto.randomBytes(16).toString("hex");
  const log = fs.createWriteStream(path.join(ARTIFACTS, "serve.log"));
  const server = spawn(process.execPath, [path.join(ROOT, "electron", "bin", "galley.js"), "serve", "--port", "0"], {
    cwd: ROOT,
    env: {
      ...process.env,
      GALLEY_HOME: home,
      GALLEY_TOKEN: token,
      HF_HUB_OFFLINE: "1",
      TOKENIZERS_PARALLELISM: "false",
      OMP_NUM_THREADS: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });

  let url: string;
  try {
    url = await waitForUrl(server, log);
  } catch (error) {
    await stop(server);
    throw error;
  }
  process.env.GALLEY_E2E_URL = url;
  process.env.GALLEY_E2E_TOKEN = token;
  process.env.GALLEY_E2E_HOME = home;

  return async () => {
    await stop(server);
    log.end();
    if (!process.env.GALLEY_E2E_KEEP_HOME) fs.rmSync(home, { recursive: true, force: true });
  };
}
