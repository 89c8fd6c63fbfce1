// Module shape of Vite's `?worker` import suffix, declared here in place of `vite/client`
// so that the renderer's types stay free of anything but the DOM.
declare module "*?worker" {
  const WorkerConstructor: new () => Worker;
  export default WorkerConstructor;
}
