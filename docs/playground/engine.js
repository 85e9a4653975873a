// The playground engine's interface (the WebAssembly module `make playground` builds): three
// exports over linear memory, JSON in and JSON out. Shared by the page and by the tests, which
// run the same module in node.
"use strict";

(function (global) {
  global.tlsgateEngine = async function (bytes) {
    const { instance } = await WebAssembly.instantiate(bytes, {});
    const x = instance.exports;
    return function ask(question) {
      const input = new TextEncoder().encode(JSON.stringify(question));
      const ptr = x.tlsgate_alloc(input.length);
      new Uint8Array(x.memory.buffer, ptr, input.length).set(input);
      const packed = x.tlsgate_eval(ptr, input.length);
      x.tlsgate_free(ptr, input.length);
      const outPtr = Number(packed >> 32n), outLen = Number(packed & 0xffffffffn);
      const text = new TextDecoder().decode(new Uint8Array(x.memory.buffer, outPtr, outLen));
      x.tlsgate_free(outPtr, outLen);
      return JSON.parse(text);
    };
  };
})(typeof window !== "undefined" ? window : globalThis);
