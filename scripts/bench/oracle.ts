/**
 * Oracle throughput and latency through a real broker.
 *
 *   npm run bench:oracle                 # 60 s at full speed, then 20 s paced at 5,000 readings/s
 *   BENCH_SECONDS=10 BENCH_MACHINES=40 npm run bench:oracle
 *
 * N simulated machines (half secp256k1, half P-256) publish pre-signed cumulative readings through
 * Mosquitto at MQTT_TEST_URL or 127.0.0.1:1883 when reachable (else the embedded broker, and it says
 * so) into an in-process oracle on an in-process chain. It measures, in the same run: readings verified
 * and journaled per second; publish → durable acknowledgement (the oracle's `accepted` status, sent
 * after the journal commit) p50/p99; publish → on-chain inclusion p99; the bare verification rate of
 * this machine; the bare broker delivery rate; and prints the ratios. Writes reports/oracle.json.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import mqtt from "mqtt";
import type { Hex } from "viem";
import { loadOracleConfig } from "../../services/oracle/config.ts";
import { createOracle } from "../../services/oracle/service.ts";
import { readingDigest, type Reading } from "../../services/shared/eip712.ts";
import { readingsTopic, statusTopic, type StatusMessage } from "../../services/shared/protocol.ts";
import {
  publicKeyOf,
  signReading,
  verifyDigestSignature,
  type DeviceSigningKey,
} from "../../services/shared/signatures.ts";
import { startHarness } from "../../test/oracle/harness.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 60);
const pacedSeconds = Number(process.env.BENCH_PACED_SECONDS ?? 20);
const machineCount = Number(process.env.BENCH_MACHINES ?? 40);

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 1883) }, () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

const candidate = process.env.MQTT_TEST_URL ?? "mqtt://127.0.0.1:1883";
const brokerUrl = (await reachable(candidate)) ? candidate : undefined;
console.log(
  `broker: ${brokerUrl ? `Mosquitto at ${brokerUrl}` : "embedded (no Mosquitto reachable)"}`,
);
console.log(`setting up ${machineCount} machines on the in-process chain…`);
const keys: DeviceSigningKey[] = Array.from({ length: machineCount }, (_, i) =>
  i % 2 === 0
    ? { keyType: "secp256k1", privateKey: `0x${randomBytes(32).toString("hex")}` as Hex }
    : {
        keyType: "p256",
        privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey,
      },
);
const h = await startHarness(keys);

const oracle = createOracle(
  loadOracleConfig({
    RPC_URL: h.chain.rpcUrl,
    CONTRACT_ADDRESS: h.payPerUse,
    ORACLE_PRIVATE_KEY: h.oracleKey,
    MQTT_URL: brokerUrl,
    MQTT_SHARE_GROUP: `bench-${randomBytes(3).toString("hex")}`,
    DATA_DIR: "memory",
    HEALTH_PORT: "-1",
    BATCH_INTERVAL_MS: "1000",
    BATCH_MAX_READINGS: "200",
    LOG_LEVEL: "error",
  }),
);
await oracle.start();
const url = oracle.brokerUrl;
const protocolVersion = brokerUrl ? 5 : 4;

// Pre-signed readings, so that the publisher is not the bottleneck.
const meters = h.machines.map(() => 0n);
function nextMessages(count: number, timestamp: bigint) {
  const out: { machine: number; units: bigint; topic: string; payload: string }[] = [];
  for (let i = 0; i < count; i++) {
    const machine = i % h.machines.length;
    const m = h.machines[machine]!;
    meters[machine]! += 1n;
    const reading: Reading = {
      agreementId: m.agreementId,
      machineId: m.machineId,
      cumulativeUnits: meters[machine]!,
      timestamp,
    };
    const payload = JSON.stringify({
      v: 1,
      agreementId: m.agreementId.toString(),
      machineId: m.machineId,
      cumulativeUnits: reading.cumulativeUnits.toString(),
      timestamp: Number(timestamp),
      signature: signReading(h.domain, reading, m.key!),
    });
    out.push({
      machine,
      units: reading.cumulativeUnits,
      topic: readingsTopic(m.machineId),
      payload,
    });
  }
  return out;
}

// Bare verification rate of this machine (same code, no MQTT, no journal).
const sample = nextMessages(2_000, BigInt(Math.floor(Date.now() / 1000) + h.clockOffset));
meters.fill(0n);
const pubKeys = h.machines.map((m) => publicKeyOf(m.key!));
let verified = 0;
const verifyStart = performance.now();
while (performance.now() - verifyStart < 3_000) {
  const s = sample[verified % sample.length]!;
  const msg = JSON.parse(s.payload);
  const m = h.machines[s.machine]!;
  const digest = readingDigest(h.domain, {
    agreementId: m.agreementId,
    machineId: m.machineId,
    cumulativeUnits: BigInt(msg.cumulativeUnits),
    timestamp: BigInt(msg.timestamp),
  });
  if (!verifyDigestSignature(digest, msg.signature, pubKeys[s.machine]!).ok)
    throw new Error("bare verification failed");
  verified++;
}
const verifyOnlyPerSecond = verified / ((performance.now() - verifyStart) / 1000);

// Bare broker delivery rate: publish → receive with a trivial subscriber.
const bareSub = await mqtt.connectAsync(url, {
  protocolVersion,
  clientId: `bare-sub-${randomBytes(3).toString("hex")}`,
});
const barePub = await mqtt.connectAsync(url, {
  protocolVersion,
  clientId: `bare-pub-${randomBytes(3).toString("hex")}`,
});
const bareTopic = `bench/bare/${randomBytes(4).toString("hex")}`;
await bareSub.subscribeAsync(bareTopic, { qos: 1 });
let bareReceived = 0;
bareSub.on("message", () => bareReceived++);
const bareStart = performance.now();
const bareBody = sample[0]!.payload;
while (performance.now() - bareStart < 3_000) {
  await Promise.all(
    Array.from({ length: 200 }, () => barePub.publishAsync(bareTopic, bareBody, { qos: 1 })),
  );
}
await new Promise((resolve) => setTimeout(resolve, 300));
const brokerOnlyPerSecond = bareReceived / ((performance.now() - bareStart) / 1000);
await bareSub.endAsync();
await barePub.endAsync();

// The oracle: publish, and time the `accepted` (durable) and `settled` (on-chain) statuses.
const publisher = await mqtt.connectAsync(url, {
  protocolVersion,
  clientId: `bench-pub-${randomBytes(3).toString("hex")}`,
});
const listener = await mqtt.connectAsync(url, {
  protocolVersion,
  clientId: `bench-status-${randomBytes(3).toString("hex")}`,
});
const sentAt = new Map<string, number>();
const ackMs: number[] = [];
const chainMs: number[] = [];
const pacedAck: number[] = [];
let pacing = false;
listener.on("message", (_topic, payload) => {
  const status = JSON.parse(payload.toString()) as StatusMessage;
  const key = `${status.machineId}:${status.cumulativeUnits}`;
  const at = sentAt.get(key);
  if (at === undefined) return;
  if (status.state === "accepted") (pacing ? pacedAck : ackMs).push(performance.now() - at);
  if (status.state === "settled") chainMs.push(performance.now() - at);
});
for (const m of h.machines) await listener.subscribeAsync(statusTopic(m.machineId), { qos: 1 });

async function drive(
  durationS: number,
  ratePerSecond?: number,
): Promise<{ published: number; accepted: number; elapsed: number }> {
  const acceptedBefore = oracle.stats.accepted;
  const start = performance.now();
  let published = 0;
  while (performance.now() - start < durationS * 1000) {
    const batch = nextMessages(
      ratePerSecond ? Math.ceil(ratePerSecond / 20) : 500,
      BigInt(Math.floor(Date.now() / 1000) + h.clockOffset),
    );
    const tick = performance.now();
    await Promise.all(
      batch.map((b) => {
        sentAt.set(`${h.machines[b.machine]!.machineId}:${b.units}`, performance.now());
        return publisher.publishAsync(b.topic, b.payload, { qos: 1 });
      }),
    );
    published += batch.length;
    if (ratePerSecond) {
      const wait = 50 - (performance.now() - tick);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    // Keep the backlog bounded: the oracle's own rate is what is measured.
    while (published - (oracle.stats.received - acceptedBefore) > 5_000)
      await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const deadline = performance.now() + 10_000;
  while (oracle.stats.accepted - acceptedBefore < published && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    published,
    accepted: oracle.stats.accepted - acceptedBefore,
    elapsed: (performance.now() - start) / 1000,
  };
}

console.log(`driving the oracle at full speed for ${seconds} s…`);
const full = await drive(seconds);
const readingsPerSecond = full.accepted / full.elapsed;
console.log(`paced at 5,000 readings/s for ${pacedSeconds} s…`);
pacing = true;
const paced = await drive(pacedSeconds, 5_000);
await new Promise((resolve) => setTimeout(resolve, 3_000));

const report = {
  readingsPerSecond: Math.round(readingsPerSecond),
  verifyOnlyPerSecond: Math.round(verifyOnlyPerSecond),
  brokerOnlyPerSecond: Math.round(brokerOnlyPerSecond),
  ratioToVerify: Number((readingsPerSecond / verifyOnlyPerSecond).toFixed(3)),
  ratioToBroker: Number((readingsPerSecond / brokerOnlyPerSecond).toFixed(3)),
  p50AckMs: Number(percentile(ackMs, 50).toFixed(1)),
  p99AckMs: Number(percentile(ackMs, 99).toFixed(1)),
  p99AckMsAt5000: Number(percentile(pacedAck, 99).toFixed(1)),
  p99ChainMs: Number(percentile(chainMs, 99).toFixed(1)),
  seconds,
  machines: machineCount,
  broker: brokerUrl ? "mosquitto" : "embedded",
  published: full.published + paced.published,
  accepted: full.accepted + paced.accepted,
  pacedRatePerSecond: Math.round(paced.accepted / paced.elapsed),
};
console.table(report);
console.log(
  `targets: >= 10,000 readings/s (${report.readingsPerSecond}), >= 0.6 of bare verification (${report.ratioToVerify}), ` +
    `p99 ack <= 100 ms at 5,000/s (${report.p99AckMsAt5000})`,
);
mkdirSync("reports", { recursive: true });
writeFileSync("reports/oracle.json", `${JSON.stringify(report, null, 2)}\n`);
console.log("wrote reports/oracle.json");
await publisher.endAsync();
await listener.endAsync();
await oracle.stop();
await h.stop();
process.exit(0);
