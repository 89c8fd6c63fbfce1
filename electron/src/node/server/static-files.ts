// Serves the built renderer. No token is needed for these files: the page reads the token
// from its own URL and sends it with every API call.
import fs from "node:fs";
import type http from "node:http";
import path from "node:path";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
};

function send(response: http.ServerResponse, status: number, body: string): void {
  response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
  response.end(body);
}

export function serveStatic(request: http.IncomingMessage, response: http.ServerResponse, root: string): void {
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("Allow", "GET, HEAD");
    send(response, 405, `${request.method} is not allowed on static files\n`);
    return;
  }
  const index = path.join(root, "index.html");
  if (!fs.existsSync(index)) {
    send(
      response,
      503,
      `The workbench UI is not built (${index} is missing): run \`npm run build -w renderer\`. The API is under /api.\n`,
    );
    return;
  }

  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(request.url ?? "/", "http://localhost").pathname);
  } catch {
    send(response, 400, "malformed URL\n");
    return;
  }
  const file = path.join(root, path.normalize(pathname));
  if (file !== root && !file.startsWith(root + path.sep)) {
    send(response, 404, "not found\n");
    return;
  }

  let target = file;
  const isFile = fs.existsSync(target) && fs.statSync(target).isFile();
  if (!isFile) {
    // Client-side routes (no extension) get the app shell; missing assets get 404.
    if (path.extname(pathname) !== "") {
      send(response, 404, `${pathname} not found\n`);
      return;
    }
    target = index;
  }

  const extension = path.extname(target);
  response.writeHead(200, {
    "Content-Type": CONTENT_TYPES[extension] ?? "application/octet-stream",
    "Content-Length": fs.statSync(target).size,
    // Vite fingerprints files under assets/, so they never change; the shell must be revalidated.
    "Cache-Control": target.includes(`${path.sep}assets${path.sep}`) ? "public, max-age=31536000, immutable" : "no-cache",
    "X-Content-Type-Options": "nosniff",
    // The page URL carries the token, so it must never leave in a Referer header.
    "Referrer-Policy": "no-referrer",
  });
  if (request.method === "HEAD") {
    response.end();
    return;
  }
  fs.createReadStream(target).pipe(response);
}
