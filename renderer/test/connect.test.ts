import { describe, expect, it } from "vitest";

import { takeToken, webSocketUrl } from "../src/transport/connect";

class MemoryStorage {
  private readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

function fakeHistory() {
  const replaced: string[] = [];
  return { replaced, history: { state: null, replaceState: (_state: unknown, _title: string, url: string) => replaced.push(url) } };
}

describe("takeToken", () => {
  it("moves the token from the URL into session storage", () => {
    const storage = new MemoryStorage();
    const { replaced, history } = fakeHistory();
    const location = { href: "http://127.0.0.1:4000/?token=abc&x=1#runs" };

    const token = takeToken(location as Location, storage as unknown as Storage, history as unknown as History);

    expect(token).toBe("abc");
    expect(storage.getItem("galley.token")).toBe("abc");
    expect(replaced).toEqual(["/?x=1#runs"]);
  });

  it("falls back to the stored token after a reload", () => {
    const storage = new MemoryStorage();
    storage.setItem("galley.token", "kept");
    const { replaced, history } = fakeHistory();

    const token = takeToken({ href: "http://127.0.0.1:4000/" } as Location, storage as unknown as Storage, history as unknown as History);

    expect(token).toBe("kept");
    expect(replaced).toEqual([]);
  });

  it("returns null without any token", () => {
    const { history } = fakeHistory();
    expect(takeToken({ href: "http://127.0.0.1:4000/" } as Location, new MemoryStorage() as unknown as Storage, history as unknown as History)).toBeNull();
  });
});

describe("webSocketUrl", () => {
  it("points at /api/ws on the page's host with the token", () => {
    expect(webSocketUrl("http://127.0.0.1:4000/some/page?x=1", "t k")).toBe("ws://127.0.0.1:4000/api/ws?token=t+k");
  });
});
