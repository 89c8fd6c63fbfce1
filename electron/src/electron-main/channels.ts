// IPC channel names of the window bridge. preload.ts repeats these two strings because a
// sandboxed preload may only require `electron`, not local modules.
export const REQUEST_CHANNEL = "galley:request";
export const EVENT_CHANNEL = "galley:event";
