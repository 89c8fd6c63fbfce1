import { describe, expect, it } from "vitest";

import { applySgr, color256, ConsoleBuilder, lineText, PLAIN } from "../src/lib/ansi";

function build(...chunks: [stream: "stdout" | "stderr", text: string][]): ConsoleBuilder {
  const builder = new ConsoleBuilder();
  for (const [stream, text] of chunks) builder.write(stream, text);
  return builder;
}

describe("applySgr", () => {
  it("sets and resets colors and styles", () => {
    const red = applySgr(PLAIN, [1, 31]);
    expect(red).toMatchObject({ fg: "#cd3131", bold: true });
    expect(applySgr(red, [0])).toEqual(PLAIN);
    expect(applySgr(red, [39]).fg).toBeNull();
    expect(applySgr(red, [22]).bold).toBe(false);
  });

  it("reads bright, palette and true colors", () => {
    expect(applySgr(PLAIN, [92]).fg).toBe("#23d18b");
    expect(applySgr(PLAIN, [38, 5, 196]).fg).toBe("rgb(255, 0, 0)");
    expect(applySgr(PLAIN, [48, 2, 1, 2, 3]).bg).toBe("rgb(1, 2, 3)");
    // The parameters after a palette color are read as their own codes.
    expect(applySgr(PLAIN, [38, 5, 21, 4])).toMatchObject({ fg: "rgb(0, 0, 255)", underline: true });
  });

  it("maps the gray ramp", () => {
    expect(color256(232)).toBe("rgb(8, 8, 8)");
    expect(color256(255)).toBe("rgb(238, 238, 238)");
  });
});

describe("ConsoleBuilder", () => {
  it("splits lines and styles segments", () => {
    const { lines } = build(["stdout", "plain \x1b[31mred\x1b[0m done\nnext\n"]);
    expect(lines.map(lineText)).toEqual(["plain red done", "next"]);
    expect(lines[0]!.segments.map((segment) => segment.style.fg)).toEqual([null, "#cd3131", null]);
  });

  it("keeps a style across chunks", () => {
    const { lines } = build(["stdout", "\x1b[32mgreen"], ["stdout", " still green\x1b[0m\n"]);
    expect(lines[0]!.segments.map((segment) => segment.style.fg)).toEqual(["#0dbc79", "#0dbc79"]);
  });

  it("joins an escape split across chunks", () => {
    const { lines } = build(["stdout", "a\x1b[3"], ["stdout", "1mb\n"]);
    expect(lineText(lines[0]!)).toBe("ab");
    expect(lines[0]!.segments[1]!.style.fg).toBe("#cd3131");
  });

  it("drops other escape sequences", () => {
    const { lines } = build(["stdout", "\x1b[2K\x1b]0;title\x07clean\x1b[1A\n"]);
    expect(lines.map(lineText)).toEqual(["clean"]);
  });

  it("redraws a line after a carriage return", () => {
    const { lines } = build(["stderr", "10%\r"], ["stderr", "50%\r"], ["stderr", "100%\n"], ["stderr", "after\r\n"]);
    expect(lines.map(lineText)).toEqual(["100%", "after"]);
  });

  it("keeps empty lines", () => {
    expect(build(["stdout", "a\n\nb"]).lines.map(lineText)).toEqual(["a", "", "b"]);
  });

  it("keeps streams apart", () => {
    const { lines } = build(["stdout", "out "], ["stderr", "err\n"], ["stdout", "more\n"]);
    expect(lines.map((line) => [line.stream, lineText(line)])).toEqual([
      ["stdout", "out more"],
      ["stderr", "err"],
    ]);
  });
});
