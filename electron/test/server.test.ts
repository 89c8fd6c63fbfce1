import fs from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";

import type { ServerMessage } from "../src/common/index.js";
import type { ControlPlane } from "../src/node/control-plane.js";
import { layout, openPlane, tempDir, writeSmallModel } from "./helpers.js";

const TOKEN = "test-token-0123456789";
let plane: ControlPlane;
let base: string;
let rendererDir: string;

beforeAll(async () => {
  rendererDir = tempDir("renderer");
  fs.mkdirSync(path.join(rendererDir, "assets"));
  fs.writeFileSync(path.join(rendererDir, "index.html"), "<!doctype html><title>Galley</title>");
  fs.writeFileSync(path.join(rendererDir, "assets", "app-123.js"), "console.log('app')");
  plane = openPlane({ token: TOKEN, layout: { ...layout, rendererDist: rendererDir } });
  base = (await plane.listen(0)).url;
});

afterAll(async () => {
  await plane.close();
});

function call(method: string, route: string, body?: unknown, token: string | null = TOKEN): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  return fetch(`${base}${route}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }) });
}

function connect(query = `?token=${TOKEN}`, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${base.replace("http", "ws")}/api/ws${query}`, { headers });
    socket.once("open", () => resolve(socket));
    socket.once("unexpected-response", (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    socket.once("error", reject);
  });
}

function nextMessage(socket: WebSocket, accept: (message: ServerMessage) => boolean): Promise<ServerMessage> {
  return new Promise((resolve) => {
    const listener = (data: WebSocket.RawData) => {
      const message = JSON.parse(data.toString()) as ServerMessage;
      if (!accept(message)) return;
      socket.off("message", listener);
      resolve(message);
    };
    socket.on("message", listener);
  });
}

describe("auth", () => {
  test("API without a token is rejected", async () => {
    const response = await call("GET", "/api/models", undefined, null);
    expect(response.status).toBe(401);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("unauthorized");
    expect(body.error.message).toMatch(/Authorization: Bearer <token>/);
  });

  test("API with a wrong token is rejected", async () => {
    expect((await call("GET", "/api/models", undefined, "wrong")).status).toBe(401);
    expect((await call("GET", "/api/internal/models", undefined, `${TOKEN}x`)).status).toBe(401);
  });

  test("API with the token answers", async () => {
    const response = await call("GET", "/api/models");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ models: [] });
  });

  test("token in the query is not accepted for HTTP", async () => {
    const response = await fetch(`${base}/api/models?token=${TOKEN}`);
    expect(response.status).toBe(401);
  });

  test("WebSocket without a token is rejected", async () => {
    await expect(connect("")).rejects.toThrow("HTTP 401");
    await expect(connect("?token=nope")).rejects.toThrow("HTTP 401");
  });

  test("WebSocket with the bearer header connects", async () => {
    const socket = await connect("", { Authorization: `Bearer ${TOKEN}` });
    socket.close();
  });
});

describe("static files", () => {
  test("shell and assets need no token", async () => {
    const shell = await fetch(`${base}/?token=${TOKEN}`);
    expect(shell.status).toBe(200);
    expect(shell.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(shell.headers.get("referrer-policy")).toBe("no-referrer");
    expect(await shell.text()).toContain("<title>Galley</title>");

    const asset = await fetch(`${base}/assets/app-123.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get("cache-control")).toContain("immutable");
  });

  test("client routes get the shell, missing assets 404", async () => {
    expect(await (await fetch(`${base}/runs/abc`)).text()).toContain("<title>Galley</title>");
    expect((await fetch(`${base}/assets/missing.js`)).status).toBe(404);
  });

  test("traversal stays inside the renderer folder", async () => {
    fs.writeFileSync(path.join(path.dirname(rendererDir), "outside.js"), "secret");
    const escaped = await fetch(`${base}/..%2foutside.js`);
    expect(escaped.status).toBe(404);
    // Without an extension the path is a client route: the shell, never the file.
    const passwd = await fetch(`${base}/..%2f..%2f..%2f..%2fetc%2fpasswd`);
    const text = await passwd.text();
    expect(text).toContain("<title>Galley</title>");
    expect(text).not.toContain("root:");
  });
});

describe("API", () => {
  test("bad payload lists every issue", async () => {
    const response = await call("PATCH", "/api/models/m/defaults", { kv_cache_len: 0, tp: "two" });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; issues: { path: string[]; message: string }[] } };
    expect(body.error.code).toBe("invalid_request");
    expect(body.error.issues.map((issue) => issue.path)).toEqual([["kv_cache_len"], ["tp"]]);
    for (const issue of body.error.issues) expect(issue.message.length).toBeGreaterThan(0);
  });

  test("body that is not JSON is rejected", async () => {
    const response = await call("POST", "/api/runs", "{recipe");
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/^request body is not valid JSON/);
  });

  test("run of a file outside the workspace is rejected", async () => {
    for (const recipe_path of ["/etc/hostname", "../outside.py"]) {
      const response = await call("POST", "/api/runs", { recipe_path, config: {} });
      expect(response.status, recipe_path).toBe(400);
      const body = (await response.json()) as { error: { message: string } };
      expect(body.error.message).toContain(recipe_path);
    }
  });

  test("unknown route and wrong verb", async () => {
    expect((await call("GET", "/api/nothing")).status).toBe(404);
    const wrongVerb = await call("PUT", "/api/models");
    expect(wrongVerb.status).toBe(405);
    expect(wrongVerb.headers.get("allow")).toBe("GET");
  });

  test("unknown model lists known keys", async () => {
    const response = await call("GET", "/api/internal/models/ghost");
    expect(response.status).toBe(404);
    const body = (await response.json()) as { error: { message: string; known_keys: string[] } };
    expect(body.error.known_keys).toEqual([]);
    expect(body.error.message).toMatch(/^unknown model key "ghost"; known keys: none/);
  });

  test("workspace paths are checked", async () => {
    const created = await call("POST", "/api/workspace/file", { path: "a.py", content: "print(1)\n" });
    expect(created.status).toBe(201);
    const read = await call("GET", "/api/workspace/file?path=a.py");
    expect(((await read.json()) as { content: string }).content).toBe("print(1)\n");

    const traversal = await call("GET", `/api/workspace/file?path=${encodeURIComponent("../galley.db")}`);
    expect(traversal.status).toBe(400);
    const absolute = await call("PUT", "/api/workspace/file", { path: "/etc/hosts", content: "" });
    expect(absolute.status).toBe(400);
  });

  test("internal register, then conflict", async () => {
    const folder = writeSmallModel(path.join(tempDir("saved"), "saved-model"));
    const body = { key: "saved-one", name: "Saved", path: folder, kind: "full", parent_key: null, run_id: "r1", recipe_hash: "abc", optim_step: 7, adapter_base_key: null };
    const created = await call("POST", "/api/internal/models", body);
    expect(created.status).toBe(201);
    const record = (await created.json()) as { key: string; kind: string; lineage: { run_id: string; optim_step: number } };
    expect(record).toMatchObject({ key: "saved-one", kind: "full", lineage: { run_id: "r1", optim_step: 7 } });

    const again = await call("POST", "/api/internal/models", body);
    expect(again.status).toBe(409);

    const fetched = await call("GET", "/api/internal/models/saved-one");
    expect(fetched.status).toBe(200);
  });

  test("engine status without an engine", async () => {
    const response = await call("GET", "/api/engine");
    expect(((await response.json()) as { state: string }).state).toBe("stopped");
    expect(await (await call("GET", "/api/telemetry")).json()).toEqual({ telemetry: null });
  });
});

describe("WebSocket", () => {
  test("request gets a response with its id", async () => {
    const socket = await connect();
    const reply = nextMessage(socket, (message) => message.kind === "response");
    socket.send(JSON.stringify({ kind: "request", id: 7, method: "workspace.info", params: {} }));
    expect(await reply).toEqual({ kind: "response", id: 7, ok: true, result: { root: plane.workspace.root } });
    socket.close();
  });

  test("invalid message gets the issues", async () => {
    const socket = await connect();
    const reply = nextMessage(socket, (message) => message.kind === "response");
    socket.send(JSON.stringify({ id: 3, method: 12 }));
    const message = await reply;
    expect(message).toMatchObject({ kind: "response", id: 3, ok: false, error: { code: "invalid_request" } });
    socket.close();
  });

  test("invalid params over the socket", async () => {
    const socket = await connect();
    const reply = nextMessage(socket, (message) => message.kind === "response");
    socket.send(JSON.stringify({ kind: "request", id: "x1", method: "runs.start", params: { config: {} } }));
    const message = await reply;
    expect(message).toMatchObject({ id: "x1", ok: false, error: { code: "invalid_request", issues: [{ path: ["recipe_path"] }] } });
    socket.close();
  });

  test("registry changes are pushed", async () => {
    const socket = await connect();
    const pushed = nextMessage(socket, (message) => message.kind === "event" && message.event.type === "registry.changed");
    const response = await call("POST", "/api/models/import", { dir: writeSmallModel(tempDir("m")), key: "pushed" });
    expect(response.status).toBe(201);
    expect(await pushed).toEqual({ kind: "event", event: { type: "registry.changed", key: "pushed" } });
    socket.close();
  });
});
