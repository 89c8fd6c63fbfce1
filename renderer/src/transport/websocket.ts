// Transport over one WebSocket to `galley serve` (/api/ws): requests and responses are
// matched by id, events are pushed on the same socket. The socket reconnects with backoff;
// requests sent while it is down wait for the next connection.
import { ServerMessage, type ApiRequest, type ApiResponse, type ServerEvent } from "@galley/common";

import type { ConnectionState, Transport } from "./transport";

const MIN_RETRY_MS = 250;
const MAX_RETRY_MS = 5000;

interface Pending {
  message: ApiRequest;
  // Sent on the current socket. A sent request whose socket closes is rejected, not resent,
  // because the server may already have acted on it (runs.start must not start twice).
  sent: boolean;
  resolve: (response: ApiResponse) => void;
  reject: (error: Error) => void;
}

export class WebSocketTransport implements Transport {
  private socket: WebSocket | null = null;
  private state: ConnectionState = "closed";
  private retryMs = MIN_RETRY_MS;
  private readonly pending = new Map<ApiRequest["id"], Pending>();
  private readonly eventHandlers = new Set<(event: ServerEvent) => void>();
  private readonly stateHandlers = new Set<(state: ConnectionState) => void>();

  /**
   * `isUnauthorized` is asked after a socket closes: a browser does not expose the HTTP status
   * of a rejected WebSocket upgrade, so the transport checks the token another way.
   */
  constructor(
    private readonly url: string,
    private readonly isUnauthorized: () => Promise<boolean> = async () => false,
  ) {
    this.connect();
  }

  request(message: ApiRequest): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const entry: Pending = { message, sent: false, resolve, reject };
      this.pending.set(message.id, entry);
      if (this.state === "open") this.send(entry);
    });
  }

  subscribe(handler: (event: ServerEvent) => void): () => void {
    this.eventHandlers.add(handler);
    return () => this.eventHandlers.delete(handler);
  }

  onConnectionChange(handler: (state: ConnectionState) => void): () => void {
    this.stateHandlers.add(handler);
    handler(this.state);
    return () => this.stateHandlers.delete(handler);
  }

  private connect(): void {
    this.setState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;

    socket.onopen = () => {
      this.retryMs = MIN_RETRY_MS;
      this.setState("open");
      // Requests made while the socket was down go out now, in the order they were made.
      for (const entry of this.pending.values()) this.send(entry);
    };
    socket.onmessage = (frame) => this.receive(frame.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.setState("closed");
      this.rejectWhere((entry) => entry.sent, "The connection to the Galley server closed before it answered. Try again.");
      void this.isUnauthorized()
        .catch(() => false)
        .then((unauthorized) => {
          if (unauthorized) {
            this.setState("unauthorized");
            this.rejectWhere(() => true, "The server rejected the access token. Open the URL that `galley serve` printed.");
            return;
          }
          window.setTimeout(() => this.connect(), this.retryMs);
          this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
        });
    };
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    const parsed = ServerMessage.safeParse(JSON.parse(data));
    if (!parsed.success) {
      console.error("Ignored an invalid message from the server", parsed.error.issues);
      return;
    }
    const message = parsed.data;
    if (message.kind === "event") {
      for (const handler of this.eventHandlers) handler(message.event);
      return;
    }
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    waiting.resolve(message);
  }

  private send(entry: Pending): void {
    this.socket?.send(JSON.stringify(entry.message));
    entry.sent = true;
  }

  private rejectWhere(predicate: (entry: Pending) => boolean, message: string): void {
    for (const [id, entry] of this.pending) {
      if (!predicate(entry)) continue;
      this.pending.delete(id);
      entry.reject(new Error(message));
    }
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    for (const handler of this.stateHandlers) handler(state);
  }
}
