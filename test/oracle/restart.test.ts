/**
 * Restart safety: the oracle runs as its own process with a journal on disk; it is killed with
 * SIGKILL while machines publish and it submits, then started again on the same journal. In the end
 * the chain's meters equal what the machines measured — nothing lost — and each agreement was charged
 * exactly the tariff for its meter — nothing charged twice.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../services/oracle/embedded-broker.ts";
import {
  MachineSide,
  readingMessage,
  startHarness,
  type Harness,
  type TestMachine,
} from "./harness.ts";

function startOracleProcess(h: Harness, brokerUrl: string, dataDir: string): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "services/oracle/main.ts"], {
    env: {
      ...process.env,
      RPC_URL: h.chain.rpcUrl,
      CONTRACT_ADDRESS: h.payPerUse,
      ORACLE_PRIVATE_KEY: h.oracleKey,
      MQTT_URL: brokerUrl,
      MQTT_PROTOCOL_VERSION: "4",
      DATA_DIR: dataDir,
      HEALTH_PORT: "0",
      BATCH_INTERVAL_MS: "150",
      CHAIN_POLL_MS: "150",
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function started(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`oracle did not start:\n${output}`)), 60_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("oracle listening")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => reject(new Error(`oracle exited with ${code}:\n${output}`)));
  });
}

describe("oracle restart safety", function () {
  let h: Harness;
  let broker: EmbeddedBroker;
  let side: MachineSide;
  let oracle: ChildProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "ppu-oracle-journal-"));
  let publishing = false;
  let publisher: Promise<void> | undefined;

  before(async () => {
    h = await startHarness();
    broker = await startEmbeddedBroker();
    side = await MachineSide.connect(broker.url, [h.k1, h.p256, h.attested], 4);
  });

  after(async () => {
    publishing = false;
    await publisher?.catch(() => {});
    if (oracle && oracle.exitCode === null) {
      const exited = new Promise((resolve) => oracle!.once("exit", resolve));
      oracle.kill("SIGTERM");
      await exited;
    }
    await side?.close();
    await broker?.stop();
    await h?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("loses nothing and charges nothing twice across a SIGKILL", async () => {
    const machines: TestMachine[] = [h.k1, h.p256, h.attested];
    const measured = new Map(machines.map((m) => [m, 0n]));
    publishing = true;
    publisher = (async () => {
      while (publishing) {
        for (const m of machines) {
          const units = measured.get(m)! + BigInt(1 + Math.floor(Math.random() * 5));
          measured.set(m, units);
          await side.publish(m, readingMessage(h, m, units));
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    oracle = startOracleProcess(h, broker.url, dataDir);
    await started(oracle);
    // Let it settle something first, so the kill lands while it ingests and submits.
    await side.waitFor((s) => s.state === "settled", "a first settlement", 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Kill it hard while it ingests and submits.
    const killed = new Promise((resolve) => oracle!.once("exit", resolve));
    oracle.kill("SIGKILL");
    await killed;
    const chargedAtKill = await Promise.all(machines.map((m) => h.agreement(m.agreementId)));
    await new Promise((resolve) => setTimeout(resolve, 500));

    oracle = startOracleProcess(h, broker.url, dataDir);
    await started(oracle);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    publishing = false;
    await publisher;
    // A machine keeps its newest reading until it is settled, so it publishes it once more.
    for (const m of machines) await side.publish(m, readingMessage(h, m, measured.get(m)!));

    for (const m of machines) {
      const final = measured.get(m)!;
      await side.waitFor(
        (s) =>
          s.machineId === m.machineId &&
          s.state === "settled" &&
          BigInt(s.cumulativeUnits ?? "0") >= final,
        `settled ${final}`,
        30_000,
      );
      const agreement = await h.agreement(m.agreementId);
      expect(agreement.cumulativeUnits, "nothing lost").to.equal(final);
      // The harness tariff: 250,000 token units per 1,000 units, so exactly the tariff for the meter.
      expect(agreement.totalCharged, "charged once").to.equal((final * 250_000n) / 1_000n);
    }
    // The kill really happened mid-stream: something was on-chain before it, and more after.
    expect(chargedAtKill.some((a) => a.cumulativeUnits > 0n)).to.equal(true);
    for (const [i, m] of machines.entries()) {
      expect(measured.get(m)!).to.be.greaterThan(chargedAtKill[i]!.cumulativeUnits);
    }
  });
});
