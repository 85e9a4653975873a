// Drives the playground in Debian's Chromium with playwright-core:
//   node browser.mjs URL SEED_DIR SCREENSHOT
// SEED_DIR holds the seed's openssl-made certificates and its policy (policy.yaml).
// Fails (exit 1) with what it saw when the page does not decide as expected.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [url, seed, screenshot] = process.argv.slice(2);
const read = (name) => readFileSync(join(seed, name), "utf8");

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1700 } });
const requests = [];
page.on("request", (r) => requests.push(r.url()));
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });

function check(ok, what, detail) {
  if (!ok) throw new Error(`${what}\n${detail ?? ""}`);
  console.log(`ok: ${what}`);
}
async function verdict() {
  await page.waitForTimeout(50);
  await page.click("#evaluate");
  return (await page.textContent("#verdict")).trim();
}
const trace = () => page.textContent("#trace");

try {
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 60000 });

  // The samples: alice on /admin is forwarded; another CA's certificate is refused.
  let v = await verdict();
  check(v.startsWith("FORWARDED"), "sample: alice's certificate and /admin are forwarded", v);
  check((await trace()).includes("conn.tls.client.verification = verified"), "the trace shows a verified certificate", await trace());
  check((await page.textContent("#upstream")).includes("x-client-cn"), "the upstream gets x-client-cn");
  await page.click('button[data-sample="valid (bob)"]');
  v = await verdict();
  check(v.startsWith("ANSWERED 403"), "sample: bob on /admin gets the custom 403", v);
  await page.click('button[data-sample="other CA"]');
  v = await verdict();
  check(v.startsWith("REFUSED"), "sample: another CA's certificate is refused at the handshake", v);
  await page.click('button[data-sample="expired"]');
  v = await verdict();
  check(v.startsWith("REFUSED") && (await page.textContent("#reason")).includes("client_certificate_expired"),
    "sample: an expired certificate is refused, and why", await page.textContent("#reason"));

  // The seed's policy as its document writes it, with the seed's openssl-made files.
  // tlsgate_test_support::seed_policy, written by tests/tests/playground.rs.
  const seedPolicy = read("policy.yaml");
  await page.fill("#policy", seedPolicy);
  await page.setInputFiles("#file-input", [join(seed, "ca.crt"), join(seed, "server.crt")]);
  await page.fill("#sni", "terminate-tls-example.ngrok.app");
  await page.fill("#request", "GET https://terminate-tls-example.ngrok.app/");
  await page.fill("#certificate", read("client.crt"));
  v = await verdict();
  check(v.startsWith("FORWARDED"), "seed: curl --cert client.crt is forwarded", v + "\n" + (await page.textContent("#policy-error")));
  const t = await trace();
  check(t.includes("conn.tls.client.subject.common_name != 'ExampleClient'") && t.includes("false"),
    "seed: the trace shows the CN rule's expression and its value", t);
  check((await page.textContent("#certificate-fields")).includes("ExampleClient"),
    "seed: the certificate's fields are shown under their CEL names");
  await page.fill("#certificate", read("server.crt"));
  v = await verdict();
  check(v.startsWith("REFUSED"), "seed: the X.509 v1 server.crt as a client certificate is refused", v);
  await page.fill("#certificate", "");
  v = await verdict();
  check(v.startsWith("REFUSED") && (await page.textContent("#reason")).includes("client_certificate_required"),
    "seed: no client certificate is refused", v);

  // A policy file dropped on the editor replaces its text.
  const dropped = await page.evaluateHandle((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], "dropped.yaml", { type: "text/yaml" }));
    return dt;
  }, seedPolicy.replace("'ExampleClient'", "'Someone'"));
  await page.dispatchEvent("#policy", "drop", { dataTransfer: dropped });
  await page.fill("#certificate", read("client.crt"));
  v = await verdict();
  check(v.startsWith("CLOSED"), "a dropped policy file is evaluated (its CN rule denies)", v);

  // A broken policy: the error names the line, and the gutter marks it.
  const misspelt = seedPolicy.replace("min_version", "min_versoin");
  await page.fill("#policy", misspelt);
  v = await verdict();
  const error = await page.textContent("#policy-error");
  check(v.includes("does not load") && error.includes("min_versoin"), "a misspelt field is an error naming it", error);
  // The line of the misspelt key, wherever the policy's layout puts it.
  const line = String(misspelt.split("\n").findIndex((l) => l.includes("min_versoin")) + 1);
  const bad = await page.textContent("#policy-lines .bad");
  check(bad === line, `the gutter marks line ${line}, the misspelt key's`, `marked: ${bad}`);

  // A private key pasted as the certificate is refused, never read.
  await page.fill("#policy", seedPolicy);
  await page.fill("#certificate", read("client.key"));
  v = await verdict();
  check((await page.textContent("#policy-error")).includes("never needs one"), "a pasted private key is refused with why");

  // Back to the allowed seed case for the screenshot.
  await page.fill("#certificate", read("client.crt"));
  await verdict();
  await page.screenshot({ path: screenshot, fullPage: true });

  const elsewhere = requests.filter((r) => !r.startsWith(url));
  check(elsewhere.length === 0, "the page made no request beyond its own files", elsewhere.join("\n"));
  check(problems.length === 0, "no page errors", problems.join("\n"));
} catch (e) {
  console.error(String(e.stack || e));
  try { await page.screenshot({ path: screenshot, fullPage: true }); } catch {}
  await browser.close();
  process.exit(1);
}
await browser.close();
