// Runs the playground's engine (the WebAssembly module `make playground` builds) on questions
// read as a JSON array from stdin; prints the answers as a JSON array.
//   node eval.mjs ENGINE.wasm < questions.json
import { readFileSync } from "node:fs";

const bytes = readFileSync(process.argv[2]);
const { instance } = await WebAssembly.instantiate(bytes, {});
const x = instance.exports;
function ask(question) {
  const input = new TextEncoder().encode(JSON.stringify(question));
  const ptr = x.tlsgate_alloc(input.length);
  new Uint8Array(x.memory.buffer, ptr, input.length).set(input);
  const packed = x.tlsgate_eval(ptr, input.length);
  x.tlsgate_free(ptr, input.length);
  const outPtr = Number(packed >> 32n), outLen = Number(packed & 0xffffffffn);
  const text = new TextDecoder().decode(new Uint8Array(x.memory.buffer, outPtr, outLen));
  x.tlsgate_free(outPtr, outLen);
  return JSON.parse(text);
}
const questions = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(questions.map(ask)));
