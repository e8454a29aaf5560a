// Run the Node tests (node --test, on the compiled test/dist) against one broker they share,
// started here from the Python package; tests that restart or configure a broker start their
// own. Arguments narrow the run to those test files (test/dist/NAME.test.js or NAME).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(dirname(fileURLToPath(import.meta.url)));
const DIST = join(HERE, "test", "dist");
const { Broker } = await import(join(DIST, "broker.js"));

const wanted = process.argv.slice(2);
const files = readdirSync(DIST)
  .filter((name) => name.endsWith(".test.js"))
  .filter((name) => !wanted.length || wanted.some((w) => name === w || name === `${w}.test.js` || join(DIST, name).endsWith(w)))
  .map((name) => join(DIST, name));

const broker = await Broker.start();
let code;
try {
  code = await new Promise((done) => {
    const child = spawn(process.execPath, ["--test", "--test-concurrency=2", ...files], {
      stdio: "inherit",
      env: { ...process.env, JOBBROKER_TEST_ADDRESS: broker.address },
    });
    child.on("exit", (status, signal) => done(status ?? (signal ? 1 : 0)));
  });
} finally {
  await broker.stop();
}
if (code !== 0) console.error(broker.logs().split("\n").filter((l) => / (ERROR|CRITICAL) /.test(l)).slice(-20).join("\n"));
process.exit(code);
