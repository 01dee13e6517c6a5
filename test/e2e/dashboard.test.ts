/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * `npm start` as a newcomer runs it: the whole system comes up, prints the dashboard's address, and a
 * real browser (Debian's Chromium driven by playwright-core) sees usage rise live. A screenshot is
 * saved to reports/dashboard.png.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

describe("npm start and the live dashboard", function () {
  let child: ChildProcess | undefined;

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once("exit", resolve));
      child.kill("SIGINT");
      await exited;
    }
  });

  it("starts the whole system and the dashboard shows usage rising live", async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(
        `    no Chromium at ${CHROMIUM} (Debian package chromium): skipping the browser test`,
      );
      this.skip();
    }
    const port = await freePort();
    const rpcPort = await freePort();
    child = spawn(process.execPath, ["--import", "tsx", "services/start.ts"], {
      env: {
        ...process.env,
        PORT: String(port),
        RPC_PORT: String(rpcPort),
        MACHINES: "4",
        LOG_LEVEL: "warn",
        BANK_OUT_DIR: mkdtempSync(join(tmpdir(), "ppu-start-bank-")),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no dashboard line within 90 s:\n${output}`)),
        90_000,
      );
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /^Dashboard: (http\S+)$/m.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      };
      child!.stdout!.on("data", onData);
      child!.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child!.once("exit", (code) => reject(new Error(`npm start exited with ${code}:\n${output}`)));
    });
    expect(url).to.equal(`http://localhost:${port}`);

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await page.goto(url);
      const totalUnits = async () =>
        (await page.locator("td.units").allTextContents()).reduce(
          (sum, text) => sum + Number(text.replace(/\D/g, "")),
          0,
        );
      await page.waitForFunction(
        () => document.querySelectorAll("td.units").length >= 4,
        undefined,
        { timeout: 30_000 },
      );
      const first = await totalUnits();
      await page.waitForFunction(
        (before) =>
          [...document.querySelectorAll("td.units")].reduce(
            (sum, td) => sum + Number(td.textContent!.replace(/\D/g, "")),
            0,
          ) > before,
        first,
        { timeout: 30_000 },
      );
      expect(await totalUnits()).to.be.greaterThan(first);
      await page.waitForFunction(
        () => document.querySelectorAll("#events div").length > 0,
        undefined,
        { timeout: 15_000 },
      );
      mkdirSync("reports", { recursive: true });
      await page.screenshot({ path: "reports/dashboard.png" });
    } finally {
      await browser.close();
    }

    const exited = new Promise<number | null>((resolve) => child!.once("exit", resolve));
    child.kill("SIGINT");
    expect(await exited).to.equal(0);
    expect(output).to.match(/oracle stopped/);
  });
});
