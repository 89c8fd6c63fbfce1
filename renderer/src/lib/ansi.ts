// Terminal output as the console shows it: ANSI SGR colors and styles become span styles,
// other escape sequences are dropped, and a carriage return rewrites its line (progress bars
// such as tqdm redraw themselves that way).

export interface AnsiStyle {
  fg: string | null;
  bg: string | null;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
}

export interface StyledText {
  text: string;
  style: AnsiStyle;
}

export interface ConsoleLine {
  stream: "stdout" | "stderr";
  segments: StyledText[];
}

export const PLAIN: AnsiStyle = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };

// The xterm palette of the 16 basic colors, normal then bright.
const BASIC = [
  "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
  "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

/** Color n of the 256-color palette: 16 basic, a 6x6x6 cube, then 24 grays. */
export function color256(n: number): string {
  if (n < 16) return BASIC[n]!;
  if (n < 232) {
    const index = n - 16;
    const level = (value: number) => (value === 0 ? 0 : 55 + value * 40);
    const [r, g, b] = [Math.floor(index / 36), Math.floor(index / 6) % 6, index % 6].map(level);
    return `rgb(${r}, ${g}, ${b})`;
  }
  const gray = 8 + (n - 232) * 10;
  return `rgb(${gray}, ${gray}, ${gray})`;
}

/** Applies the parameters of one SGR sequence (`ESC [ params m`) to a style. */
export function applySgr(style: AnsiStyle, params: number[]): AnsiStyle {
  const next = { ...style };
  const codes = params.length === 0 ? [0] : params;
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i]!;
    if (code === 0) Object.assign(next, PLAIN);
    else if (code === 1) next.bold = true;
    else if (code === 2) next.dim = true;
    else if (code === 3) next.italic = true;
    else if (code === 4) next.underline = true;
    else if (code === 22) [next.bold, next.dim] = [false, false];
    else if (code === 23) next.italic = false;
    else if (code === 24) next.underline = false;
    else if (code >= 30 && code <= 37) next.fg = BASIC[code - 30]!;
    else if (code >= 90 && code <= 97) next.fg = BASIC[code - 90 + 8]!;
    else if (code === 39) next.fg = null;
    else if (code >= 40 && code <= 47) next.bg = BASIC[code - 40]!;
    else if (code >= 100 && code <= 107) next.bg = BASIC[code - 100 + 8]!;
    else if (code === 49) next.bg = null;
    else if (code === 38 || code === 48) {
      // 38;5;n is a palette color, 38;2;r;g;b a true color; 48 sets the background the same way.
      let color: string | null = null;
      if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
        color = color256(codes[i + 2]!);
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
        color = `rgb(${codes[i + 2]}, ${codes[i + 3]}, ${codes[i + 4]})`;
        i += 4;
      }
      if (code === 38) next.fg = color;
      else next.bg = color;
    }
  }
  return next;
}

// CSI sequences (ESC [ ... final byte), OSC sequences (ESC ] ... BEL or ESC \), and other
// two-byte escapes.
const ESCAPE = /\x1b(?:\[([0-9;?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
const COMPLETE_ESCAPE = /^\x1b(?:\[[0-9;?]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/;

/** Builds console lines from output chunks, keeping each stream's style across chunks. */
export class ConsoleBuilder {
  readonly lines: ConsoleLine[] = [];
  private readonly open: Partial<Record<ConsoleLine["stream"], ConsoleLine>> = {};
  private readonly styles: Record<ConsoleLine["stream"], AnsiStyle> = { stdout: PLAIN, stderr: PLAIN };
  // An escape sequence split across two chunks waits here for the rest.
  private readonly partial: Record<ConsoleLine["stream"], string> = { stdout: "", stderr: "" };
  private readonly rewrite: Record<ConsoleLine["stream"], boolean> = { stdout: false, stderr: false };

  write(stream: ConsoleLine["stream"], chunk: string): void {
    let text = this.partial[stream] + chunk;
    this.partial[stream] = "";
    const cut = text.lastIndexOf("\x1b");
    if (cut !== -1 && !COMPLETE_ESCAPE.test(text.slice(cut))) {
      this.partial[stream] = text.slice(cut);
      text = text.slice(0, cut);
    }

    let position = 0;
    for (const match of text.matchAll(ESCAPE)) {
      this.addText(stream, text.slice(position, match.index));
      if (match[2] === "m") {
        const params = (match[1] ?? "").split(";").filter((part) => part !== "").map(Number);
        this.styles[stream] = applySgr(this.styles[stream], params);
      }
      position = match.index + match[0].length;
    }
    this.addText(stream, text.slice(position));
  }

  private addText(stream: ConsoleLine["stream"], text: string): void {
    const parts = text.split("\n");
    parts.forEach((part, index) => {
      if (index > 0) {
        this.open[stream] = undefined;
        this.rewrite[stream] = false;
      }
      part.split("\r").forEach((piece, pieceIndex) => {
        // A carriage return not followed by a newline starts the line over at its next text.
        if (pieceIndex > 0) this.rewrite[stream] = true;
        if (piece === "") return;
        const line = this.lineOf(stream);
        if (this.rewrite[stream]) {
          line.segments = [];
          this.rewrite[stream] = false;
        }
        line.segments.push({ text: piece, style: this.styles[stream] });
      });
      // An empty line between two newlines is still a line.
      if (index < parts.length - 1) this.lineOf(stream);
    });
  }

  private lineOf(stream: ConsoleLine["stream"]): ConsoleLine {
    let line = this.open[stream];
    if (!line) {
      line = { stream, segments: [] };
      this.open[stream] = line;
      this.lines.push(line);
    }
    return line;
  }
}

export function lineText(line: ConsoleLine): string {
  return line.segments.map((segment) => segment.text).join("");
}

/** Returns the inline style of a segment, or undefined for plain text. */
export function cssOf(style: AnsiStyle): Record<string, string> | undefined {
  if (style === PLAIN) return undefined;
  const css: Record<string, string> = {};
  if (style.fg) css.color = style.fg;
  if (style.bg) css.backgroundColor = style.bg;
  if (style.bold) css.fontWeight = "bold";
  if (style.dim) css.opacity = "0.7";
  if (style.italic) css.fontStyle = "italic";
  if (style.underline) css.textDecoration = "underline";
  return Object.keys(css).length > 0 ? css : undefined;
}
