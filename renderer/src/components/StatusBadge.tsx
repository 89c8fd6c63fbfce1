import type { RunStatus } from "@galley/common";

export function StatusBadge({ status, testId }: { status: RunStatus; testId?: string }) {
  return (
    <span className={`status status-${status}`} data-testid={testId} data-status={status}>
      {status}
    </span>
  );
}
