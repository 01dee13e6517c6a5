/**
 * A machine measures through a long outage, is restarted from its files in the middle of it, and
 * when the network comes back its usage reaches the chain through the real oracle — exactly the
 * measured units, in one submission. The outage is a port nobody listens on; "the network comes
 * back" is a TCP relay opening on that port in front of the oracle's embedded broker, so the same
 * client instance reconnects by itself.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeFunctionData, parseEventLogs, type Hex } from "viem";
import { loadOracleConfig } from "../../services/oracle/config.ts";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { DeviceClient } from "../../services/device/client.ts";
import { generateDeviceKey } from "../../services/device/keys.ts";
import { startHarness, type Harness, type TestMachine } from "../oracle/harness.ts";

function waitFor(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (predicate()) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 25);
    };
    tick();
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Opens `port` and relays every connection to `target` (the network coming back). */
async function relay(port: number, target: URL): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(Number(target.port), target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("device offline for a long stretch, restarted from its files, then online", function () {
  let h: Harness;
  let oracle: Oracle;
  let dir: string;
  const keys = [generateDeviceKey("p256"), generateDeviceKey("secp256k1")];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ppu-offline-"));
    h = await startHarness(keys);
    oracle = createOracle(
      loadOracleConfig({
        RPC_URL: h.chain.rpcUrl,
        CONTRACT_ADDRESS: h.payPerUse,
        ORACLE_PRIVATE_KEY: h.oracleKey,
        DATA_DIR: "memory",
        HEALTH_PORT: "-1",
        BATCH_INTERVAL_MS: "200",
        CHAIN_POLL_MS: "200",
        LOG_LEVEL: "warn",
      }),
    );
    await oracle.start();
  });

  after(async () => {
    await oracle?.stop();
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("charges exactly the measured units in one record transaction per agreement", async () => {
    const port = await freePort();
    const brokerUrl = `mqtt://127.0.0.1:${port}`;
    const machines: TestMachine[] = h.machines;
    const clientFor = (m: TestMachine, i: number) =>
      new DeviceClient({
        machineId: m.machineId,
        key: keys[i]!,
        domain: h.domain,
        bufferPath: join(dir, `machine-${i}.json`),
        brokerUrl,
        protocolVersion: 4,
        publishIntervalMs: 200,
        reconnectPeriodMs: 100,
        // The machines' clocks agree with the chain's (which setup transactions moved ahead).
        now: () => Math.floor(Date.now() / 1000) + h.clockOffset,
      });

    // First power cycle: thousands of increments with the broker unreachable.
    const measured = [0n, 0n];
    let devices = machines.map(clientFor);
    devices.forEach((d) => d.start());
    for (let step = 0; step < 1500; step++) {
      devices.forEach((d, i) => {
        const units = BigInt(1 + ((step * (i + 3)) % 5));
        d.record(machines[i]!.agreementId, units);
        measured[i]! += units;
      });
    }
    // Let the reconnect loop and the periodic re-signing run against the closed port for a while.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(devices.some((d) => d.connected)).to.equal(false);
    await Promise.all(devices.map((d) => d.stop()));

    // Restart from the files, still offline, and keep measuring.
    devices = machines.map(clientFor);
    devices.forEach((d, i) =>
      expect(d.meter.units(machines[i]!.agreementId)).to.equal(measured[i]),
    );
    devices.forEach((d) => d.start());
    for (let step = 0; step < 1500; step++) {
      devices.forEach((d, i) => {
        const units = BigInt(1 + ((step * (i + 7)) % 3));
        d.record(machines[i]!.agreementId, units);
        measured[i]! += units;
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(oracle.stats.received, "nothing reached the oracle while offline").to.equal(0);

    // The network comes back: the same client instances reconnect on their own.
    const network = await relay(port, new URL(oracle.brokerUrl));
    try {
      await waitFor(
        () => devices.every((d, i) => d.meter.pending(machines[i]!.agreementId) === undefined),
        "settled statuses for the newest readings",
      );
    } finally {
      await Promise.all(devices.map((d) => d.stop()));
      await network.close();
    }

    const logs = await h.client.getLogs({ address: h.payPerUse, fromBlock: 0n });
    const usage = parseEventLogs({ abi: h.abi, logs, eventName: "UsageRecorded" }) as unknown as {
      args: { agreementId: bigint; cumulativeUnits: bigint; units: bigint };
      transactionHash: Hex;
    }[];
    const skipped = parseEventLogs({ abi: h.abi, logs, eventName: "ReadingSkipped" });
    expect(skipped, "no reading skipped on-chain").to.have.length(0);
    for (const [i, m] of machines.entries()) {
      expect(measured[i]).to.be.greaterThan(4_000n);
      const agreement = await h.agreement(m.agreementId);
      expect(agreement.cumulativeUnits, `machine ${i} meter`).to.equal(measured[i]);
      // Flat tariff of the harness: 250,000 per 1,000 units.
      expect(agreement.totalCharged, `machine ${i} charge`).to.equal(
        (measured[i]! * 250_000n) / 1_000n,
      );
      const records = usage.filter((e) => e.args.agreementId === m.agreementId);
      expect(records, `usage records of machine ${i}`).to.have.length(1);
      expect(records[0]!.args.units).to.equal(measured[i]);
      const tx = await h.client.getTransaction({ hash: records[0]!.transactionHash });
      const call = decodeFunctionData({ abi: h.abi, data: tx.input });
      expect(call.functionName).to.equal("record");
    }
  });
});
