// Starts one real `galley serve` for the whole run: a fresh GALLEY_HOME in a temp folder, a
// known token, port 0. Its URL reaches the specs through GALLEY_E2E_URL; the returned
// function stops it. The server's output is kept in test/artifacts/serve.log.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { ROOT, startServer } from "./server";

function requireBuilt(file: string): void {
  if (!fs.existsSync(path.join(ROOT, file))) {
    throw new Error(`${file} is missing; build Galley first with \`npm run build\` (or \`npm run setup\`).`);
  }
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  requireBuilt("renderer/dist/index.html");
  requireBuilt("electron/dist/node/cli/main.js");

  const home = fs.mkdtempSync(path.join(os.tmpdir(), "galley-e2e-"));
  const server = await startServer({ home, logName: "serve.log" });
  process.env.GALLEY_E2E_URL = server.url;
  process.env.GALLEY_E2E_TOKEN = server.token;
  process.env.GALLEY_E2E_HOME = home;

  return async () => {
    await server.stop();
    if (!process.env.GALLEY_E2E_KEEP_HOME) fs.rmSync(home, { recursive: true, force: true });
  };
}
