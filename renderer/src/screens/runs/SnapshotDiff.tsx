// The recipe as the run saw it, diffed against the file as it is now in the workspace.
import { useEffect, useMemo, useState } from "react";

import { call, describeError } from "../../api/client";
import { diffLines, type DiffLine } from "../../lib/diff";
import { plural } from "../../lib/format";

const DIFF_PREFIX: Record<DiffLine["kind"], string> = { added: "+ ", removed: "- ", same: "  " };

export function SnapshotDiff({ snapshot, recipePath }: { snapshot: string; recipePath: string }) {
  const [current, setCurrent] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    setCurrent(null);
    setProblem(null);
    call("workspace.read", { path: recipePath })
      .then((file) => setCurrent(file.content))
      .catch((error: unknown) => setProblem(describeError(error)));
  }, [recipePath]);

  const lines = useMemo(() => (current === null ? null : diffLines(snapshot, current)), [snapshot, current]);
  const changed = lines?.filter((line) => line.kind !== "same").length ?? 0;

  if (problem) {
    return (
      <div>
        <p className="muted">The current file could not be read ({problem}); this is the snapshot the run used.</p>
        <pre className="code">{snapshot}</pre>
      </div>
    );
  }
  if (!lines) return <p className="muted">Reading {recipePath}…</p>;
  return (
    <div data-testid="snapshot-diff">
      <p className="muted">
        {changed === 0 ? `Unchanged since this run: ${recipePath} is identical to its snapshot.` : `${plural(changed, "line differs", "lines differ")} between the snapshot (−) and ${recipePath} now (+).`}
      </p>
      <pre className="code diff">
        {lines.map((line, index) => (
          <div key={index} className={`diff-${line.kind}`}>
            {DIFF_PREFIX[line.kind]}
            {line.text}
          </div>
        ))}
      </pre>
    </div>
  );
}
