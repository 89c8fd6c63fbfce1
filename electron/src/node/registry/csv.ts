// A CSV reader for dataset files, following RFC 4180: fields are separated by commas and
// records by CRLF or LF, and a field in double quotes may contain commas, line breaks and
// doubled quotes (""). Blank lines, and lines of only spaces and tabs, are skipped.

/** One record and the line of the file on which it starts (1-based). */
export interface CsvRecord {
  line: number;
  fields: string[];
}

/** A syntax error at a line of the file (1-based). */
export interface CsvProblem {
  line: number;
  text: string;
}

export interface CsvParse {
  records: CsvRecord[];
  problems: CsvProblem[];
  /** Records left out of `records` because of a syntax error in them. */
  droppedRecords: number;
}

/**
 * Parses `text` into records. A syntax error is reported with the line it is on, and the
 * reader goes on from the next line, so one pass finds every problem. An unterminated quoted
 * field takes the rest of the file, so it is always the last problem.
 */
export function parseCsv(text: string): CsvParse {
  const records: CsvRecord[] = [];
  const problems: CsvProblem[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let recordLine = 1;
  let index = 0;
  // Whether the record has a character other than spaces and tabs (a blank line has none),
  // and whether a syntax error drops it.
  let started = false;
  let dropped = false;
  let droppedRecords = 0;

  const endRecord = (): void => {
    fields.push(field);
    if (started && !dropped) records.push({ line: recordLine, fields });
    if (started && dropped) droppedRecords++;
    fields = [];
    field = "";
    started = false;
    dropped = false;
  };
  const dropRestOfLine = (): void => {
    while (index < text.length && text[index] !== "\n") index++;
    dropped = true;
  };

  while (index < text.length) {
    const char = text[index]!;
    const lineBreak = char === "\n" || (char === "\r" && text[index + 1] === "\n");
    if (!lineBreak && char !== " " && char !== "\t") started = true;
    if (char === '"' && field === "") {
      const quoteLine = line;
      const end = readQuoted(text, index + 1);
      line += end.lineBreaks;
      if (end.close === -1) {
        problems.push({
          line: quoteLine,
          text: 'a quoted field starts here and has no closing quote ("); close it, and write a quote inside a field as ""',
        });
        return { records, problems, droppedRecords: droppedRecords + 1 };
      }
      field = end.value;
      index = end.close + 1;
      const next = text[index];
      if (next !== undefined && next !== "," && next !== "\n" && !(next === "\r" && text[index + 1] === "\n")) {
        problems.push({
          line,
          text: `text ${JSON.stringify(next)} follows the closing quote of a quoted field; put a comma after the quote, or write a quote inside the field as ""`,
        });
        dropRestOfLine();
      }
      continue;
    }
    if (char === ",") {
      fields.push(field);
      field = "";
      index++;
    } else if (lineBreak) {
      endRecord();
      index += char === "\r" ? 2 : 1;
      line++;
      recordLine = line;
    } else {
      // NOTE: a quote inside an unquoted field (5" screen) is kept as text, as Python's csv
      // module does, although RFC 4180 does not allow it.
      field += char;
      index++;
    }
  }
  if (started) endRecord();
  return { records, problems, droppedRecords };
}

/** Reads a quoted field from `start` (after the opening quote) to its closing quote, or -1 if none. */
function readQuoted(text: string, start: number): { value: string; close: number; lineBreaks: number } {
  let value = "";
  let lineBreaks = 0;
  let index = start;
  while (index < text.length) {
    const char = text[index]!;
    if (char === '"') {
      if (text[index + 1] !== '"') return { value, close: index, lineBreaks };
      value += '"';
      index += 2;
      continue;
    }
    if (char === "\n") lineBreaks++;
    value += char;
    index++;
  }
  return { value, close: -1, lineBreaks };
}
