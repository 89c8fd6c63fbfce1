// Serves the built renderer from app://galley/ with a strict Content-Security-Policy. A custom
// standard scheme, unlike file://, gives the page a real origin, so 'self' in the policy and
// Monaco's module workers work.
import path from "node:path";
import { pathToFileURL } from "node:url";

import { net, protocol } from "electron";

export const APP_SCHEME = "app";
export const APP_ORIGIN = "app://galley";

// The renderer talks to the control plane only through the preload bridge, so it needs no
// network access at all: connect-src 'self' only lets Monaco fetch its own assets.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // Monaco sets inline styles on its elements and injects <style> tags.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "worker-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join("; ");

/** Must run before the app's `ready` event. */
export function registerAppScheme(): void {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } },
  ]);
}

export function serveRenderer(rendererDist: string): void {
  const root = path.resolve(rendererDist);
  protocol.handle(APP_SCHEME, async (request) => {
    const url = new URL(request.url);
    const relative = decodeURIComponent(url.pathname).replace(/^\/+/, "") || "index.html";
    const file = path.resolve(root, relative);
    if (url.host !== "galley" || (file !== root && !file.startsWith(root + path.sep))) {
      return new Response("not found", { status: 404 });
    }
    const response = await net.fetch(pathToFileURL(file).toString());
    const headers = new Headers(response.headers);
    headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY);
    headers.set("X-Content-Type-Options", "nosniff");
    return new Response(response.body, { status: response.status, headers });
  });
}
