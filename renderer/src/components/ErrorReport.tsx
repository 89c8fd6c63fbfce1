// A failed call as a person reads it: the message, then each reason, validation issue or
// known key on its own line.
import { ApiError, describeError } from "../api/client";

export function ErrorReport({ error, testId }: { error: unknown; testId?: string }) {
  if (!(error instanceof ApiError)) {
    return (
      <div className="error-box" data-testid={testId}>
        {describeError(error)}
      </div>
    );
  }
  const { body } = error;
  const details = [
    ...(body.reasons ?? []),
    ...(body.issues ?? []).map((issue) => `${issue.path.join(".") || "(params)"}: ${issue.message}`),
  ];
  return (
    <div className="error-box" data-testid={testId} data-code={body.code}>
      <div>{body.message}</div>
      {details.length > 0 && (
        <ul className="problem-list">
          {details.map((detail, index) => (
            <li key={index} data-testid="error-reason">
              {detail}
            </li>
          ))}
        </ul>
      )}
      {body.known_keys?.length ? <div className="muted">Known keys: {body.known_keys.join(", ")}</div> : null}
      {body.log_path && (
        <div className="muted">
          Details are in {body.log_path}
          {body.error_id ? ` (error ${body.error_id})` : ""}.
        </div>
      )}
    </div>
  );
}
