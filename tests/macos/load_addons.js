// Load every native addon of a darwin-arm64 runtime bundle on a real Mac, with the bundle's own bin/node.
//
//   <bundle>/bin/node tests/macos/load_addons.js <bundle>
//
// The bundle is cross-built on Linux without install scripts, and check_runtime_bundle.py only reads headers; this
// is the proof that the prebuilt addons it holds load (architecture, code signature, linked system libraries) where
// they will run. Each *.node is dlopen()ed in a child process of its own (an addon may refuse a second load in one
// process); koffi, which openclaw uses for FFI, then makes a real call into libSystem. Exits 1 on any failure.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(process.argv[2] || ".");
const modules = path.join(root, "lib", "node_modules");
const addons = [];
(function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (entry.isFile() && entry.name.endsWith(".node")) addons.push(full);
  }
})(modules);
addons.sort();

console.log(`node ${process.version} on ${process.platform}-${process.arch}: ${addons.length} addons`);
let failed = addons.length === 0 ? 1 : 0;
for (const file of addons) {
  const child = spawnSync(process.execPath, ["-e", "process.dlopen({ exports: {} }, process.argv[1])", file],
    { encoding: "utf8" });
  if (child.status === 0) {
    console.log(`ok   ${path.relative(root, file)}`);
  } else {
    failed += 1;
    const lines = (child.stderr || "").trim().split("\n");
    const reason = lines.find((line) => /Error/.test(line)) || lines[lines.length - 1];
    console.log(`FAIL ${path.relative(root, file)}: ${reason}`);
  }
}

try {
  const koffi = require(path.join(modules, "openclaw", "node_modules", "koffi"));
  const getpid = koffi.load("libSystem.B.dylib").func("int getpid()");
  if (getpid() !== process.pid) throw new Error(`getpid() through koffi gave ${getpid()}, not ${process.pid}`);
  console.log("ok   koffi: getpid() through libSystem matches process.pid");
} catch (error) {
  failed += 1;
  console.log(`FAIL koffi: ${error.message}`);
}
process.exit(failed ? 1 : 0);
