#!/usr/bin/env python3
"""Unexport the proxy-wasm callbacks the filter does not implement.

The proxy-wasm Rust SDK exports every callback of the ABI (`proxy_on_response_headers`,
`proxy_on_log`, `proxy_on_upstream_data`, ...) whether or not the filter overrides the trait
method behind it; the default methods do nothing. The host (proxy-wasm-cpp-host, which Envoy
and Istio use) calls into the VM for every callback the module exports and skips the ones it
does not, so each unneeded export is a VM entry per request, per chunk of data or per
connection for nothing. This rewrites the module's export section without them.

Which callbacks the filter implements is read from its source: a callback is kept when a
`fn <trait method>(` appears in filter/src, so implementing a new one keeps its export with no
change here. The SDK's machinery (context creation and deletion, VM start, configuration,
memory allocation) is always kept. The rest of the module is copied byte for byte; running it
twice changes nothing.

Usage: wasm-callbacks.py MODULE.wasm FILTER_SRC_DIR [--check | --list]
  --check: change nothing; exit 1 if MODULE still exports a callback the source lacks.
  --list: change nothing; print the `proxy_on_*` functions MODULE exports, one a line.
"""

import os
import pathlib
import re
import sys

# The SDK's exported callbacks and the trait methods that give each one its behaviour.
CALLBACKS = {
    "proxy_on_done": ["on_done"],
    "proxy_on_log": ["on_log"],
    "proxy_on_tick": ["on_tick"],
    "proxy_on_queue_ready": ["on_queue_ready"],
    "proxy_on_foreign_function": ["on_foreign_function"],
    "proxy_on_new_connection": ["on_new_connection"],
    "proxy_on_downstream_data": ["on_downstream_data"],
    "proxy_on_downstream_connection_close": ["on_downstream_close"],
    "proxy_on_upstream_data": ["on_upstream_data"],
    "proxy_on_upstream_connection_close": ["on_upstream_close"],
    "proxy_on_request_headers": ["on_http_request_headers"],
    "proxy_on_request_body": ["on_http_request_body"],
    "proxy_on_request_trailers": ["on_http_request_trailers"],
    "proxy_on_response_headers": ["on_http_response_headers"],
    "proxy_on_response_body": ["on_http_response_body"],
    "proxy_on_response_trailers": ["on_http_response_trailers"],
    "proxy_on_http_call_response": ["on_http_call_response"],
    "proxy_on_grpc_receive_initial_metadata": ["on_grpc_stream_initial_metadata"],
    "proxy_on_grpc_receive": ["on_grpc_call_response", "on_grpc_stream_message"],
    "proxy_on_grpc_receive_trailing_metadata": ["on_grpc_stream_trailing_metadata"],
    "proxy_on_grpc_close": ["on_grpc_stream_close", "on_grpc_call_response"],
}
# Every other `proxy_on_*` export must be one of these, or the SDK grew a callback this script
# does not know: refuse rather than guess.
MACHINERY = {
    "proxy_on_context_create",
    "proxy_on_delete",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_memory_allocate",
}
EXPORT_SECTION = 7


def leb128(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def encode_leb128(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sections(module):
    """(id, start of contents, end of contents, start of the section header) for each."""
    if module[:4] != b"\0asm":
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    pos = 8
    while pos < len(module):
        header = pos
        sid = module[pos]
        size, pos = leb128(module, pos + 1)
        yield sid, pos, pos + size, header
        pos += size


def exports(contents):
    """The export section's entries as (name, raw bytes of the whole entry)."""
    count, pos = leb128(contents, 0)
    out = []
    for _ in range(count):
        start = pos
        length, pos = leb128(contents, pos)
        name = contents[pos : pos + length].decode("utf-8")
        pos += length + 1  # the kind byte
        _, pos = leb128(contents, pos)  # the index
        out.append((name, contents[start:pos]))
    if pos != len(contents):
        raise ValueError("export section has trailing bytes")
    return out


def implemented(src_dir):
    source = "\n".join(p.read_text() for p in sorted(pathlib.Path(src_dir).rglob("*.rs")))
    return {m for m in re.findall(r"\bfn\s+(on_[a-z_]+)\s*[(<]", source)}


def unneeded(names, methods):
    drop = set()
    for name in names:
        if not name.startswith("proxy_on_") or name in MACHINERY:
            continue
        if name not in CALLBACKS:
            raise ValueError(
                f"the module exports {name}, a callback this script does not know: add it to "
                "CALLBACKS with the trait method behind it"
            )
        if not methods.intersection(CALLBACKS[name]):
            drop.add(name)
    return drop


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__[__doc__.index("Usage:") :].rstrip())
    path, src_dir = pathlib.Path(args[0]), args[1]
    module = path.read_bytes()
    methods = implemented(src_dir)
    for sid, start, end, header in sections(module):
        if sid != EXPORT_SECTION:
            continue
        entries = exports(module[start:end])
        if "--list" in argv:
            print("\n".join(sorted(n for n, _ in entries if n.startswith("proxy_on_"))))
            return 0
        drop = unneeded([n for n, _ in entries], methods)
        if "--check" in argv:
            if drop:
                print(f"{path}: exports callbacks the filter does not implement: {', '.join(sorted(drop))}")
                return 1
            return 0
        if not drop:
            return 0
        kept = [raw for name, raw in entries if name not in drop]
        contents = encode_leb128(len(kept)) + b"".join(kept)
        section = bytes([EXPORT_SECTION]) + encode_leb128(len(contents)) + contents
        # Atomically: test processes building the filter at once each run this on the same
        # file, and a reader must never see half of it.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(module[:header] + section + module[end:])
        os.replace(tmp, path)
        print(f"{path}: unexported {len(drop)} callbacks the filter does not implement: {', '.join(sorted(drop))}")
        return 0
    raise ValueError(f"{path}: no export section")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
