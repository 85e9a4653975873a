// Runs the playground's engine (the WebAssembly module `make playground` builds), through the
// page's own docs/playground/engine.js, on questions read as a JSON array from stdin; prints the
// answers as a JSON array.
//   node eval.mjs ENGINE.wasm < questions.json
import { readFileSync } from "node:fs";
import "../../docs/playground/engine.js";

const ask = await globalThis.tlsgateEngine(readFileSync(process.argv[2]));
const questions = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(questions.map(ask)));
