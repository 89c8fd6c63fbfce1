#!/usr/bin/env node
// Entry point of the `galley` command; the code lives in dist/node (build with `npm run build -w electron`).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const entry = path.join(__dirname, "..", "dist", "node", "cli", "main.js");
if (!fs.existsSync(entry)) {
  process.stderr.write(`error: the galley CLI is not built (${entry} is missing); run \`npm run build -w electron\`\n`);
  process.exit(1);
}
require(entry)
  .main(process.argv)
  .then((code) => {
    process.exitCode = code;
  });
