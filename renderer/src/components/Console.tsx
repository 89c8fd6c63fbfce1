// A run's stdout and stderr as they stream in: ANSI colors, stderr marked, file:line links,
// a search that keeps only the matching lines, and a follow toggle that keeps the newest
// output in view.
import type { RunEvent } from "@galley/common";
import { useEffect, useMemo, useRef, useState } from "react";

import { ConsoleBuilder, type ConsoleLine, cssOf, lineText } from "../lib/ansi";
import { plural } from "../lib/format";
import { outputChunks } from "../lib/run-events";
import { LocatedText } from "./LocatedText";

// Lines kept in the page when not searching. The run's events contain the full output.
const MAX_RENDERED_LINES = 2000;

/** Builds the console lines incrementally while events are only appended, from scratch otherwise. */
function useConsoleLines(events: RunEvent[]): ConsoleLine[] {
  const state = useRef<{ builder: ConsoleBuilder; consumed: RunEvent[] }>({ builder: new ConsoleBuilder(), consumed: [] });
  return useMemo(() => {
    let { builder, consumed } = state.current;
    const appended = consumed.length <= events.length && consumed.every((event, index) => events[index] === event);
    if (!appended) {
      builder = new ConsoleBuilder();
      consumed = [];
    }
    for (const chunk of outputChunks(events.slice(consumed.length))) builder.write(chunk.stream, chunk.text);
    state.current = { builder, consumed: events };
    // A new array each time, so that memoized children see the change.
    return [...builder.lines];
  }, [events]);
}

function Highlighted({ text, query }: { text: string; query: string }) {
  const parts: React.ReactNode[] = [];
  const lower = text.toLowerCase();
  let position = 0;
  for (let found = lower.indexOf(query); found !== -1; found = lower.indexOf(query, found + query.length)) {
    parts.push(text.slice(position, found), <mark key={found}>{text.slice(found, found + query.length)}</mark>);
    position = found + query.length;
  }
  parts.push(text.slice(position));
  return <>{parts}</>;
}

function Line({ line, query, recipePath }: { line: ConsoleLine; query: string; recipePath: string | null }) {
  return (
    <div className={`console-line console-${line.stream}`} data-stream={line.stream}>
      {line.segments.map((segment, index) => (
        <span key={index} style={cssOf(segment.style)}>
          {query ? <Highlighted text={segment.text} query={query} /> : <LocatedText text={segment.text} recipePath={recipePath} />}
        </span>
      ))}
      {line.segments.length === 0 && "\u00a0"}
    </div>
  );
}

export function Console({ events, recipePath }: { events: RunEvent[]; recipePath: string | null }) {
  const lines = useConsoleLines(events);
  const [query, setQuery] = useState("");
  const [follow, setFollow] = useState(true);
  const container = useRef<HTMLDivElement>(null);

  const needle = query.trim().toLowerCase();
  const matching = useMemo(() => (needle ? lines.filter((line) => lineText(line).toLowerCase().includes(needle)) : null), [lines, needle]);
  const shown = matching ?? lines.slice(-MAX_RENDERED_LINES);
  const hidden = matching ? 0 : lines.length - shown.length;

  useEffect(() => {
    const element = container.current;
    if (!follow || !element) return;
    element.scrollTop = element.scrollHeight;
  }, [shown, follow]);

  // Scrolling up turns follow off and scrolling back to the end turns it on again. The
  // console's own scroll to the end never turns it off, because it ends at the bottom.
  function onScroll() {
    const element = container.current;
    if (!element) return;
    const atBottom = element.scrollHeight - element.scrollTop - element.clientHeight < 8;
    if (follow !== atBottom) setFollow(atBottom);
  }

  return (
    <div className="console-box">
      <div className="console-tools">
        <input
          type="search"
          placeholder="Search the output"
          value={query}
          data-testid="console-search"
          onChange={(event) => setQuery(event.target.value)}
        />
        {matching && (
          <span className="muted" data-testid="console-matches">
            {plural(matching.length, "matching line")}
          </span>
        )}
        <span className="spacer" />
        <label className="inline" title="Keep the newest output in view">
          <input type="checkbox" checked={follow} data-testid="console-follow" onChange={(event) => setFollow(event.target.checked)} /> follow
        </label>
      </div>
      <div className="console" data-testid="console" ref={container} onScroll={onScroll}>
        {hidden > 0 && <div className="muted">{plural(hidden, "earlier line")} not shown; search to find {hidden === 1 ? "it" : "them"}.</div>}
        {lines.length === 0 && <span className="muted">No output yet.</span>}
        {shown.map((line, index) => (
          <Line key={hidden + index} line={line} query={needle} recipePath={recipePath} />
        ))}
      </div>
    </div>
  );
}
