// Verifies webhook deliveries recorded by the service's test suite
// (TestWebhookSamples) with the Standard Webhooks reference library for
// JavaScript: each must verify with every secret it names, and with
// neither another secret nor a body changed by one byte.
import { readFileSync } from "node:fs";
import standardwebhooks from "standardwebhooks";

const { Webhook } = standardwebhooks;
const lines = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean);
if (lines.length === 0) {
  console.error("no recorded deliveries to check");
  process.exit(1);
}
let failures = 0;
let verified = 0;
const fail = (msg) => {
  failures++;
  console.error("FAIL " + msg);
};
for (const line of lines) {
  const s = JSON.parse(line);
  for (const secret of s.verify_with) {
    try {
      new Webhook(secret).verify(s.body, s.headers);
      verified++;
    } catch (e) {
      fail(`${s.name}: does not verify with a secret that signed it: ${e.message}`);
    }
  }
  for (const secret of s.refuse_with) {
    try {
      new Webhook(secret).verify(s.body, s.headers);
      fail(`${s.name}: verifies with a secret that did not sign it`);
    } catch {}
  }
  try {
    new Webhook(s.verify_with[0]).verify(s.body.replace(/}$/, " }"), s.headers);
    fail(`${s.name}: verifies with a changed body`);
  } catch {}
}
console.log(`${lines.length} deliveries, ${verified} signatures verified by standardwebhooks; ${failures} failures`);
process.exit(failures ? 1 : 0);
