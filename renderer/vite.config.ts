import { fileURLToPath, URL } from "node:url";

import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The renderer imports the typed contract straight from the control plane's sources, so both
// sides compile against one definition.
const contract = fileURLToPath(new URL("../electron/src/common/index.ts", import.meta.url));

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the same build is served by `galley serve` over HTTP and by Electron's
  // app:// protocol.
  base: "./",
  resolve: {
    alias: { "@galley/common": contract },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    // Monaco's editor core is one large chunk by design.
    chunkSizeWarningLimit: 4096,
  },
  worker: { format: "es" },
  test: {
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
