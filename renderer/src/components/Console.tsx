// A run's stdout and stderr as they stream in, stderr marked, with file:line links.
import type { RunEvent } from "@galley/common";
import { useEffect, useMemo, useRef } from "react";

import { outputChunks } from "../lib/run-events";
import { LocatedText } from "./LocatedText";

export function Console({ events, recipePath }: { events: RunEvent[]; recipePath: string | null }) {
  const chunks = useMemo(() => outputChunks(events), [events]);
  const bottom = useRef<HTMLDivElement>(null);
  const container = useRef<HTMLPreElement>(null);

  // Follow new output unless the reader scrolled up.
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const nearBottom = element.scrollHeight - element.scrollTop - element.clientHeight < 80;
    if (nearBottom) bottom.current?.scrollIntoView({ block: "end" });
  }, [chunks]);

  return (
    <pre className="console" data-testid="console" ref={container}>
      {chunks.length === 0 && <span className="muted">No output yet.</span>}
      {chunks.map((chunk) => (
        <span key={chunk.seq} className={`console-${chunk.stream}`} data-stream={chunk.stream}>
          <LocatedText text={chunk.text} recipePath={recipePath} />
        </span>
      ))}
      <div ref={bottom} />
    </pre>
  );
}
