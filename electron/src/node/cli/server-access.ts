// Finding the control plane that `galley` commands go through: GALLEY_URL with GALLEY_TOKEN,
// else the serve.json that `galley serve` (or the app) writes into the data directory. With
// neither, commands start their own control plane and engine.
import { ApiErrorBody } from "../../common/index.js";
import { readServeFile, removeServeFile, serveFilePath } from "../server/local-access.js";
import { processExists } from "../processes.js";
import { CliError, ServerUnreachableError } from "./context.js";

export interface ServerAccess {
  /** Origin of the server's HTTP API. */
  url: string;
  token: string;
  /** Origin of the address, named in messages: "GALLEY_URL" or "galley serve (pid N)". */
  source: string;
  /** Whether the token is serve.json's local token, which may run recipes outside the workspace. */
  local: boolean;
}

const PROBE_TIMEOUT_MS = 5_000;

/** Reads GALLEY_URL and GALLEY_TOKEN (or a `?token=` in the URL); null when GALLEY_URL is unset. */
function serverFromEnvironment(env: NodeJS.ProcessEnv): ServerAccess | null {
  const raw = env.GALLEY_URL;
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`GALLEY_URL "${raw}" is not a URL; set it to the address \`galley serve\` printed, e.g. http://127.0.0.1:41761/`, 2);
  }
  const token = env.GALLEY_TOKEN || url.searchParams.get("token");
  if (!token) {
    throw new CliError(`GALLEY_URL is set to ${raw} but no token was given; set GALLEY_TOKEN, or use the URL with ?token= that \`galley serve\` printed`, 2);
  }
  return { url: url.origin, token, source: "GALLEY_URL", local: false };
}

type Probe = "live" | "gone" | { failure: string };

/** Asks the server for its engine status, which any valid token may read. */
async function probe(url: string, token: string): Promise<Probe> {
  try {
    const response = await fetch(new URL("/api/engine", url), {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    // Another server that took over the port does not know this token.
    if (response.status === 401) return "gone";
    if (!response.ok) return { failure: `it returned HTTP ${response.status}` };
    return "live";
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code === "ECONNREFUSED") return "gone";
    if ((error as Error).name === "TimeoutError") return { failure: `it did not respond within ${PROBE_TIMEOUT_MS / 1000} s` };
    return { failure: `the request failed: ${describeConnectionError(error)}` };
  }
}

/**
 * Returns the server described by `<home>/serve.json` when its process is alive and it accepts
 * the file's token. A stale file (process gone, or nothing listening) is removed.
 */
async function serverFromServeFile(home: string): Promise<ServerAccess | null> {
  const read = readServeFile(home);
  if (read.state === "missing") return null;
  if (read.state === "invalid") {
    removeServeFile(home);
    return null;
  }
  const { record } = read;
  if (!processExists(record.pid)) {
    removeServeFile(home, record.pid);
    return null;
  }
  const outcome = await probe(record.url, record.token);
  if (outcome === "gone") {
    removeServeFile(home, record.pid);
    return null;
  }
  const source = `galley serve (pid ${record.pid})`;
  if (outcome !== "live") {
    throw new CliError(
      `${source} at ${record.url} is listed in ${serveFilePath(home)}, but ${outcome.failure}; ` +
        "wait for it and retry, stop it, or pass --standalone to start an own engine",
    );
  }
  return { url: record.url, token: record.token, source, local: true };
}

/** Finds the server to use: GALLEY_URL first, then a live serve.json in `home`; null for none. */
export async function findServer(home: string, env: NodeJS.ProcessEnv = process.env): Promise<ServerAccess | null> {
  return serverFromEnvironment(env) ?? (await serverFromServeFile(home));
}

/** Thrown for an API error body; carries the code so that commands can pick an exit code. */
export class ServerError extends CliError {
  constructor(readonly body: ApiErrorBody) {
    super(body.message, 1, body.reasons ?? []);
  }
}

/**
 * Describes why a connection to the server failed, in one phrase. Node's fetch (undici) rejects
 * the ports that the Fetch standard lists as unsafe (e.g. 1, 6000, 6665-6669) with "bad port"
 * before it connects, so such a port needs its own explanation.
 */
export function describeConnectionError(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  let reason: Error;
  if (cause instanceof Error) reason = cause;
  else if (error instanceof Error) reason = error;
  else reason = new Error(String(error));
  if (reason.message === "bad port") {
    return "the port is blocked by Node's HTTP client (fetch rejects ports it considers unsafe, such as 1 and 6000); restart `galley serve` with another --port and update GALLEY_URL";
  }
  return reason.message;
}

/** Returns the error for a server that could not be reached, with the hint that fits where its address came from. */
export function serverUnreachable(server: ServerAccess, what: string, error: unknown): ServerUnreachableError {
  const hint =
    server.source === "GALLEY_URL" ? "check GALLEY_URL and that `galley serve` is running" : `check that ${server.source} is still running`;
  return new ServerUnreachableError(`${what} of ${server.source} at ${server.url} failed: ${describeConnectionError(error)}; ${hint}`);
}

/** Sends one HTTP API call and returns its JSON result; API errors become ServerError. */
export async function callServer<T>(server: ServerAccess, verb: "GET" | "POST", route: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(new URL(route, server.url), {
      method: verb,
      headers: { Authorization: `Bearer ${server.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw serverUnreachable(server, `${verb} ${route}`, error);
  }
  const value = (await response.json().catch(() => null)) as unknown;
  if (response.ok) return value as T;
  const parsed = ApiErrorBody.safeParse((value as { error?: unknown } | null)?.error);
  if (parsed.success) throw new ServerError(parsed.data);
  throw new CliError(`${verb} ${route} on ${server.source} returned HTTP ${response.status}`);
}
