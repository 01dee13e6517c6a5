import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { readingsTopic, statusTopic, type ReadingMessage } from "../../services/shared/protocol.ts";
import { publicKeyOf, verifyReadingSignature } from "../../services/shared/signatures.ts";
import { DeviceClient } from "../../services/device/client.ts";
import { generateDeviceKey } from "../../services/device/keys.ts";

const domain = {
  chainId: 31337n,
  verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
} as const;

function waitFor(predicate: () => boolean, label = "", timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (predicate()) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error(`timed out: ${label}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function scenario(
  brokerUrl: string,
  protocolVersion: 4 | 5,
  restartBroker?: () => Promise<string>,
) {
  const dir = mkdtempSync(join(tmpdir(), "ppu-client-"));
  const machineId =
    `0x${Buffer.from(`m-${Date.now()}-${Math.random()}`).toString("hex").padEnd(64, "0").slice(0, 64)}` as const;
  const key = generateDeviceKey("p256");
  const bufferPath = join(dir, "buffer.json");
  // The broker is unreachable: a port nobody listens on.
  const unreachable = "mqtt://127.0.0.1:1";
  try {
    let device = new DeviceClient({
      machineId,
      key,
      domain,
      bufferPath,
      brokerUrl: unreachable,
      publishIntervalMs: 200,
    });
    device.start();
    for (let i = 0; i < 1500; i++) device.record(5n, 1n);
    device.flush();
    await device.stop();
    // Restart from the files in the middle of the offline stretch.
    device = new DeviceClient({
      machineId,
      key,
      domain,
      bufferPath,
      brokerUrl: unreachable,
      publishIntervalMs: 200,
    });
    expect(device.meter.units(5n)).to.equal(1500n);
    device.start();
    for (let i = 0; i < 1500; i++) device.record(5n, 2n);
    await device.stop();

    const url = restartBroker ? await restartBroker() : brokerUrl;
    const observer = await mqtt.connectAsync(url, { protocolVersion });
    const received: ReadingMessage[] = [];
    observer.on("message", (_t, p) => received.push(JSON.parse(p.toString()) as ReadingMessage));
    await observer.subscribeAsync(readingsTopic(machineId), { qos: 1 });

    device = new DeviceClient({
      machineId,
      key,
      domain,
      bufferPath,
      brokerUrl: url,
      publishIntervalMs: 200,
    });
    device.start();
    await waitFor(() => received.some((r) => r.cumulativeUnits === "4500"), "newest");
    const reading = received.find((r) => r.cumulativeUnits === "4500")!;
    const ok = verifyReadingSignature(
      domain,
      { agreementId: 5n, machineId, cumulativeUnits: 4500n, timestamp: BigInt(reading.timestamp) },
      reading.signature,
      publicKeyOf(key),
    );
    expect(ok.ok).to.equal(true);
    // Kept (republished) until settled.
    const count = received.length;
    await waitFor(() => received.length > count + 1, "republish");
    expect(device.meter.pending(5n)?.cumulativeUnits).to.equal("4500");
    await observer.publishAsync(
      statusTopic(machineId),
      JSON.stringify({
        v: 1,
        machineId,
        agreementId: "5",
        state: "settled",
        cumulativeUnits: "4500",
        at: 1,
      }),
      { qos: 1, retain: true },
    );
    await waitFor(() => device.meter.pending(5n) === undefined, "settled");
    await observer.publishAsync(
      statusTopic(machineId),
      JSON.stringify({ v: 1, machineId, agreementId: "5", state: "exhausted", at: 2 }),
      { qos: 1, retain: true },
    );
    await waitFor(() => !device.serving(5n), "stop");
    expect(() => device.record(5n, 1n)).to.throw(/exhausted/);
    await observer.publishAsync(statusTopic(machineId), "", { qos: 1, retain: true });
    await device.stop();
    await observer.endAsync();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("device client", function () {
  this.timeout(60_000);

  it("counts thousands of increments offline, restarts from files, reconnects to a real MQTT 5 broker (MQTT_TEST_URL), publishes the newest reading until settled, obeys stop states", async function () {
    const url = process.env.MQTT_TEST_URL;
    if (!url) {
      console.log("    MQTT_TEST_URL is not set: skipping the real-broker test");
      this.skip();
    }
    await scenario(url, 5);
  });
});
