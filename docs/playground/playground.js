// The tlsgate playground: loads tlsgate's policy engine (WebAssembly, embedded in
// tlsgate-playground.js as base64 so the page also works opened from a file) and asks it one
// question per evaluation. Nothing is sent anywhere.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const files = new Map(); // name -> text
  let engine = null;

  // --- the engine (engine.js) ------------------------------------------------------------
  async function loadEngine() {
    const b64 = window.TLSGATE_PLAYGROUND_WASM;
    if (!b64) throw new Error("tlsgate-playground.js is missing: run `make playground`");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return window.tlsgateEngine(bytes);
  }

  // --- inputs -----------------------------------------------------------------------------
  function question() {
    const headers = $("headers").value.split("\n").map((l) => l.trim()).filter(Boolean)
      .map((l) => { const i = l.indexOf(":"); return i < 0 ? [l, ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()]; });
    return {
      policy: $("policy").value,
      policy_name: "policy.yaml",
      files: Object.fromEntries(files),
      certificate: $("certificate").value,
      sni: $("sni").value.trim(),
      tls: $("tls").value,
      client_ip: $("client-ip").value.trim(),
      request: $("request").value.trim(),
      headers,
      now: Math.floor(Date.now() / 1000),
    };
  }

  function renderFiles() {
    const list = $("files");
    list.replaceChildren();
    for (const name of [...files.keys()].sort()) {
      const li = document.createElement("li");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.onclick = () => { files.delete(name); renderFiles(); evaluate(); };
      li.append(name, remove);
      list.append(li);
    }
  }

  async function addFiles(list) {
    for (const file of list) {
      const text = await file.text();
      if (text.includes("PRIVATE KEY-----")) {
        showError(`${file.name} holds a private key: the playground never needs one and did not keep it.`);
        continue;
      }
      files.set(file.name, text);
    }
    renderFiles();
    evaluate();
  }

  function renderLines(bad) {
    const count = $("policy").value.split("\n").length;
    const gutter = $("policy-lines");
    gutter.replaceChildren();
    for (let n = 1; n <= count; n++) {
      const span = document.createElement("span");
      span.textContent = String(n);
      if (n === bad) span.className = "bad";
      gutter.append(span, "\n");
    }
    gutter.scrollTop = $("policy").scrollTop;
  }

  // --- results ----------------------------------------------------------------------------
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.append(td);
    return td;
  }

  function showError(message, line) {
    const box = $("policy-error");
    box.hidden = false;
    box.textContent = message;
    renderLines(line || 0);
  }

  function clearResults() {
    for (const id of ["certificate-fields", "trace", "upstream"]) $(id).querySelector("tbody").replaceChildren();
    $("notes").replaceChildren();
    $("upstream-line").textContent = "";
    $("reason").textContent = "";
  }

  const VERDICT = {
    forward: ["FORWARDED to the upstream", "allow"],
    admitted: ["ADMITTED (give a request to evaluate on_http_request)", "allow"],
    refused: ["REFUSED at the TLS handshake", "deny"],
    closed: ["CLOSED after the handshake", "deny"],
  };

  function show(answer) {
    clearResults();
    const verdict = $("verdict");
    if (answer.error) {
      verdict.textContent = "The policy does not load";
      verdict.className = "verdict deny";
      showError(answer.error.message, answer.error.line);
      return;
    }
    $("policy-error").hidden = true;
    renderLines(0);
    const e = answer.evaluation;
    const [label, cls] = VERDICT[e.outcome] ||
      [`ANSWERED ${e.outcome}`, Number(e.outcome) < 400 ? "allow" : "deny"];
    verdict.textContent = label;
    verdict.className = `verdict ${cls}`;
    verdict.dataset.outcome = e.outcome;
    $("reason").textContent = [e.endpoint ? `endpoint: ${e.endpoint}` : "no endpoint", e.reason].filter(Boolean).join(" — ");

    const fields = $("certificate-fields").querySelector("tbody");
    for (const f of e.certificate) {
      const row = document.createElement("tr");
      cell(row, f.name);
      cell(row, f.value);
      fields.append(row);
    }

    const trace = $("trace").querySelector("tbody");
    let rule = null;
    for (const s of e.steps) {
      const row = document.createElement("tr");
      switch (s.step) {
        case "server_name":
          cell(row, "server name"); cell(row, s.sni || "(none)"); cell(row, s.served ? "served here" : "not served");
          cell(row, s.served ? "admitted" : "refused", s.served ? "admitted" : "refused");
          break;
        case "certificate":
          cell(row, "client certificate"); cell(row, s.strategy ? `strategy ${s.strategy}` : "not asked for");
          cell(row, `conn.tls.client.verification = ${s.verification}`);
          cell(row, s.refused ? `refused (${s.refused})` : "admitted", s.refused ? "refused" : "admitted");
          break;
        case "request":
          cell(row, `request ${s.check}`); cell(row, s.outcome); cell(row, ""); cell(row, "");
          break;
        case "rule":
          row.className = "rule";
          rule = row;
          cell(row, `${s.phase}[${s.index}]`); cell(row, s.name || ""); cell(row, ""); cell(row, "");
          break;
        case "expression": {
          const ok = s.value && "Ok" in s.value;
          cell(row, ""); cell(row, s.source);
          cell(row, ok ? String(s.value.Ok) : `error: ${s.value.Err}`, ok ? String(s.value.Ok) : "error-value");
          cell(row, "");
          break;
        }
        case "fired":
        case "not_fired":
          if (rule) {
            const last = rule.lastChild;
            last.textContent = s.step === "fired" ? "fired" : "not fired";
            last.className = s.step === "fired" ? "fired" : "skipped";
          }
          continue;
        case "action":
        {
          const ends = ["deny", "close-connection", "custom-response"].includes(s.kind) || s.effect.includes("refused");
          cell(row, ""); cell(row, s.kind); cell(row, s.effect);
          cell(row, ends ? "ends the decision" : "applied", ends ? "refused" : "fired");
          break;
        }
        default:
          cell(row, s.step); cell(row, JSON.stringify(s)); cell(row, ""); cell(row, "");
      }
      trace.append(row);
    }

    const up = e.upstream;
    if (up) {
      $("upstream-line").textContent = `${up.method} ${up.url} — target ${up.target}, authority ${up.authority}` +
        (up.removed.length ? ` — removed by the policy: ${up.removed.join(", ")}` : "");
      const body = $("upstream").querySelector("tbody");
      for (const [name, value] of up.headers) {
        const row = document.createElement("tr");
        cell(row, name);
        cell(row, value);
        body.append(row);
      }
    } else {
      $("upstream-line").textContent = "nothing: the request is not forwarded";
    }
    for (const note of [...e.notes, ...answer.warnings, ...answer.notes]) {
      const li = document.createElement("li");
      li.textContent = note;
      $("notes").append(li);
    }
  }

  function evaluate() {
    renderLines(0);
    if (!engine) return;
    try {
      show(engine(question()));
    } catch (err) {
      $("verdict").textContent = `The engine failed: ${err}`;
      $("verdict").className = "verdict deny";
    }
  }

  // --- wiring -----------------------------------------------------------------------------
  function loadSamples() {
    const s = window.TLSGATE_SAMPLES;
    if (!s) return;
    $("policy").value = s.policy;
    for (const [name, text] of Object.entries(s.files)) files.set(name, text);
    $("sni").value = s.sni;
    $("request").value = s.request;
    $("certificate").value = s.certificates[s.default_certificate];
    const box = $("samples");
    for (const name of [...Object.keys(s.certificates), "none"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = name;
      b.dataset.sample = name;
      b.onclick = () => { $("certificate").value = name === "none" ? "" : s.certificates[name]; evaluate(); };
      box.append(b);
    }
    renderFiles();
  }

  $("policy").addEventListener("scroll", () => { $("policy-lines").scrollTop = $("policy").scrollTop; });
  for (const id of ["policy", "certificate", "sni", "tls", "client-ip", "request", "headers"]) {
    $(id).addEventListener("input", () => { clearTimeout(evaluate.timer); evaluate.timer = setTimeout(evaluate, 250); });
  }
  $("evaluate").onclick = evaluate;
  // A policy or manifest file dropped on the editor replaces its text.
  $("policy").addEventListener("dragover", (ev) => ev.preventDefault());
  $("policy").addEventListener("drop", async (ev) => {
    ev.preventDefault();
    const file = ev.dataTransfer.files[0];
    if (!file) return;
    const text = await file.text();
    if (text.includes("PRIVATE KEY-----")) {
      showError(`${file.name} holds a private key: the playground never needs one and did not keep it.`);
      return;
    }
    $("policy").value = text;
    evaluate();
  });
  $("file-input").onchange = (ev) => addFiles(ev.target.files);
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); addFiles(ev.dataTransfer.files); });

  loadSamples();
  loadEngine()
    .then((ask) => { engine = ask; document.body.dataset.ready = "true"; evaluate(); })
    .catch((err) => { $("verdict").textContent = String(err); $("verdict").className = "verdict deny"; });
})();
