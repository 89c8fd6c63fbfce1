// Picks the transport for this page: the Electron bridge when the preload exposed one,
// otherwise a WebSocket back to the `galley serve` that served the page.
import { IpcTransport } from "./ipc";
import type { Transport } from "./transport";
import { WebSocketTransport } from "./websocket";

const TOKEN_KEY = "galley.token";

export class MissingTokenError extends Error {
  constructor() {
    super("This page has no access token. Open the URL that `galley serve` printed; it ends in ?token=….");
  }
}

/**
 * Takes the bearer token from the page URL's `?token=`, keeps it in sessionStorage (so a
 * reload still works) and removes it from the address bar and history.
 */
export function takeToken(location: Location, storage: Storage, history: History): string | null {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    storage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return storage.getItem(TOKEN_KEY);
}

export function webSocketUrl(pageUrl: string, token: string): string {
  const url = new URL("/api/ws", pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", token);
  return url.toString();
}

export function createTransport(): Transport {
  if (window.galley) return new IpcTransport(window.galley);

  const token = takeToken(window.location, window.sessionStorage, window.history);
  if (!token) throw new MissingTokenError();
  const isUnauthorized = async () => {
    const response = await fetch(new URL("/api/engine", window.location.href), { headers: { Authorization: `Bearer ${token}` } });
    return response.status === 401;
  };
  return new WebSocketTransport(webSocketUrl(window.location.href, token), isUnauthorized);
}
