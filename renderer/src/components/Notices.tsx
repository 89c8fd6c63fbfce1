import { useUi } from "../stores/ui";

export function Notices() {
  const notices = useUi((state) => state.notices);
  const dismiss = useUi((state) => state.dismiss);
  if (notices.length === 0) return null;
  return (
    <div className="notices" data-testid="notices">
      {notices.map((notice) => (
        <div key={notice.id} className={`notice notice-${notice.kind}`} role="alert">
          <pre>{notice.text}</pre>
          <button className="link" onClick={() => dismiss(notice.id)} aria-label="Dismiss">
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
