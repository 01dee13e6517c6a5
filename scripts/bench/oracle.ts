/**
 * Oracle throughput and latency through a real broker, with the oracle in its own process as it runs
 * in production.
 *
 *   npm run bench:oracle                 # 60 s at full speed, then 20 s paced at 5,000 readings/s
 *   BENCH_SECONDS=10 BENCH_PACED_SECONDS=5 BENCH_MACHINES=40 npm run bench:oracle
 *   BENCH_DATABASE_URL=postgres://… npm run bench:oracle   # journal on a PostgreSQL server
 *
 * N simulated machines (half secp256k1, half P-256) publish cumulative readings, signed before the
 * clock starts, through Mosquitto at MQTT_TEST_URL or 127.0.0.1:1883 (required) into the oracle
 * (`services/oracle/main.ts`, a child process) on the in-process chain, its journal on PostgreSQL
 * (BENCH_DATABASE_URL or PG_TEST_URL, a schema of its own) or else the embedded engine on disk.
 * Measured in the same run: readings verified and journaled per second; publish → durable
 * acknowledgement (the oracle's `accepted` status, published after the journal commit and naming the
 * newest journaled reading of the machine) p50/p99, at full speed and paced at 5,000/s; publish →
 * `settled` status (on-chain inclusion) p99; the bare verification rate of this machine (same code,
 * one thread, no MQTT, no journal); the bare broker delivery rate; the ratios; and the CPU time per
 * reading of each process. Other knobs: BENCH_ORACLE_CONNECTIONS, BENCH_PUBLISHERS, BENCH_BACKLOG,
 * BENCH_PROFILE=<dir> (a CPU profile of the oracle). Writes reports/oracle.json.
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pg from "pg";
import type { Hex } from "viem";
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
const connections = Number(process.env.BENCH_ORACLE_CONNECTIONS ?? 1);
/**
 * Readings published and not yet acknowledged, at most, at full speed. A broker drops what overflows a
 * subscriber's queue (Mosquitto's max_queued_messages: 1,000 by default beyond the in-flight window),
 * so the bound stays below it: the oracle's own rate is measured, not the broker's queue.
 */
const backlog = Number(process.env.BENCH_BACKLOG ?? 1_200);
/** Publisher connections; a broker lets each hold only so many unacknowledged publishes (Mosquitto: 20). */
const publisherCount = Number(process.env.BENCH_PUBLISHERS ?? 16);
/** Readings signed ahead for the full-speed run: more than the oracle can take in `seconds`. */
const presigned = Number(process.env.BENCH_PRESIGNED ?? Math.ceil(seconds * 12_000));

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

/**
 * CPU seconds used so far (user + system, from /proc) by the oracle process, this process (publishers,
 * status listener, the in-process chain), Mosquitto and PostgreSQL; undefined off Linux.
 */
function cpuByProcess(): Record<string, number> | undefined {
  if (!existsSync("/proc/self/stat")) return undefined;
  const ticks = (pid: number | string): number => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return 0;
    }
  };
  const byName: Record<string, number> = { mosquitto: 0, postgres: 0 };
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    let comm = "";
    try {
      comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    } catch {
      continue;
    }
    if (comm in byName) byName[comm]! += ticks(pid);
  }
  return {
    oracle: oracle.pid ? ticks(oracle.pid) : 0,
    "bench and chain": ticks(process.pid),
    ...byName,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

const candidate = process.env.MQTT_TEST_URL ?? "mqtt://127.0.0.1:1883";
const brokerUrl = (await reachable(candidate)) ? candidate : undefined;
if (!brokerUrl) {
  throw new Error(
    `no broker at ${candidate}: the benchmark needs Mosquitto (set MQTT_TEST_URL, or start it with mosquitto -d)`,
  );
}
console.log(`broker: Mosquitto at ${brokerUrl}`);
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

// Readings signed before any clock runs, so that the publisher is not what is measured.
const meters = h.machines.map(() => 0n);
interface Message {
  machine: number;
  units: bigint;
  topic: string;
  payload: Buffer;
}
function sign(count: number): Message[] {
  const timestamp = BigInt(Math.floor(Date.now() / 1000) + h.clockOffset);
  const out: Message[] = new Array(count);
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
    out[i] = {
      machine,
      units: reading.cumulativeUnits,
      topic: readingsTopic(m.machineId),
      payload: Buffer.from(
        JSON.stringify({
          v: 1,
          agreementId: m.agreementId.toString(),
          machineId: m.machineId,
          cumulativeUnits: reading.cumulativeUnits.toString(),
          timestamp: Number(timestamp),
          signature: signReading(h.domain, reading, m.key!),
        }),
      ),
    };
  }
  return out;
}

// Bare verification rate of this machine (same code, one thread, no MQTT, no journal).
const sample = sign(2_000);
const pubKeys = h.machines.map((m) => publicKeyOf(m.key!));
let verified = 0;
const verifyStart = performance.now();
while (performance.now() - verifyStart < 3_000) {
  const s = sample[verified % sample.length]!;
  const msg = JSON.parse(s.payload.toString());
  const m = h.machines[s.machine]!;
  const digest = readingDigest(h.domain, {
    agreementId: BigInt(msg.agreementId),
    machineId: m.machineId,
    cumulativeUnits: BigInt(msg.cumulativeUnits),
    timestamp: BigInt(msg.timestamp),
  });
  if (!verifyDigestSignature(digest, msg.signature, pubKeys[s.machine]!).ok)
    throw new Error("bare verification failed");
  verified++;
}
const verifyOnlyPerSecond = verified / ((performance.now() - verifyStart) / 1000);
console.log(`bare verification: ${Math.round(verifyOnlyPerSecond)}/s`);

const publishers: MqttClient[] = [];
for (let i = 0; i < publisherCount; i++) {
  const publisher = await mqtt.connectAsync(brokerUrl, {
    protocolVersion: 5,
    clientId: `bench-pub-${i}-${randomBytes(3).toString("hex")}`,
  });
  (publisher.stream as Partial<Socket>).setNoDelay?.(true);
  publishers.push(publisher);
}

/**
 * Publishes at QoS 1 with up to `window` in flight (the PUBACK here is the broker's). A lane first
 * waits for room (`room`), then takes the next message and publishes it at once, so that messages
 * leave in their order and a machine's readings reach the broker in the order they were signed.
 */
async function blast(
  messages: Message[],
  window: number,
  until: () => boolean,
  room?: () => Promise<void>,
  onSend?: (message: Message) => void,
): Promise<number> {
  let next = 0;
  async function lane() {
    while (next < messages.length && !until()) {
      if (room) await room();
      if (next >= messages.length || until()) break;
      const message = messages[next++]!;
      // A machine publishes over its own connection, so its readings stay in order.
      const client = publishers[message.machine % publishers.length]!;
      onSend?.(message);
      await client.publishAsync(message.topic, message.payload, { qos: 1 });
    }
  }
  await Promise.all(Array.from({ length: window }, () => lane()));
  return next;
}

// Bare broker delivery rate: the same publishers and payloads to a trivial subscriber.
const bareSub = await mqtt.connectAsync(brokerUrl, {
  protocolVersion: 5,
  clientId: `bare-sub-${randomBytes(3).toString("hex")}`,
});
const bareTopic = `bench/bare/${randomBytes(4).toString("hex")}`;
await bareSub.subscribeAsync(bareTopic, { qos: 1 });
let bareReceived = 0;
bareSub.on("message", () => bareReceived++);
const bareMessages = sample.map((s) => ({ ...s, topic: bareTopic }));
const bareStart = performance.now();
while (performance.now() - bareStart < 3_000) {
  await blast(bareMessages, 64, () => performance.now() - bareStart >= 3_000);
}
await sleep(300);
const brokerOnlyPerSecond = bareReceived / ((performance.now() - bareStart) / 1000);
await bareSub.endAsync();
console.log(`bare broker delivery: ${Math.round(brokerOnlyPerSecond)}/s`);

console.log(`signing ${presigned.toLocaleString("en")} readings ahead…`);
const full = sign(presigned);
const paced = sign(Math.ceil(pacedSeconds * 5_000 * 1.05));

// The journal: a PostgreSQL server when BENCH_DATABASE_URL (or PG_TEST_URL) names one, in a schema of
// its own dropped at the end, as an operator runs it at this rate; else the embedded engine on disk.
const pgUrl = process.env.BENCH_DATABASE_URL ?? process.env.PG_TEST_URL;
const pgSchema = `bench_${randomBytes(5).toString("hex")}`;
let journalUrl: string | undefined;
const dataDir = mkdtempSync(join(tmpdir(), "ppu-bench-oracle-"));
if (pgUrl) {
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${pgSchema}`);
  await admin.end();
  const scoped = new URL(pgUrl);
  scoped.searchParams.set("options", `-c search_path=${pgSchema}`);
  journalUrl = scoped.toString();
  console.log(`journal: PostgreSQL at ${new URL(pgUrl).host} (schema ${pgSchema})`);
} else {
  console.log(
    `journal: embedded engine in ${dataDir} (set BENCH_DATABASE_URL for a PostgreSQL server)`,
  );
}

// The oracle, in its own process.
const healthPort = await freePort();
// BENCH_PROFILE=<dir> writes a CPU profile of the oracle process there.
const profile = process.env.BENCH_PROFILE
  ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
  : [];
const oracle = spawn(process.execPath, [...profile, "--import", "tsx", "services/oracle/main.ts"], {
  env: {
    ...process.env,
    RPC_URL: h.chain.rpcUrl,
    CONTRACT_ADDRESS: h.payPerUse,
    ORACLE_PRIVATE_KEY: h.oracleKey,
    MQTT_URL: brokerUrl,
    MQTT_CONNECTIONS: String(connections),
    MQTT_SHARE_GROUP: `bench-${randomBytes(3).toString("hex")}`,
    DATA_DIR: dataDir,
    ...(journalUrl ? { DATABASE_URL: journalUrl } : {}),
    HEALTH_PORT: String(healthPort),
    BATCH_INTERVAL_MS: "1000",
    BATCH_MAX_READINGS: "200",
    LOG_LEVEL: "error",
  },
  stdio: ["ignore", "inherit", "inherit"],
});
/** The value of an unlabelled metric in a Prometheus text page; 0 when it is absent. */
function metricIn(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}
async function counter(name: string): Promise<number> {
  return metricIn(await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text(), name);
}
for (let i = 0; ; i++) {
  const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`).then(
    (r) => r.ok,
    () => false,
  );
  if (ready) break;
  if (i > 300) throw new Error("the oracle did not become ready");
  await sleep(100);
}

// Statuses: the `settled` one says the reading is on-chain.
const listener = await mqtt.connectAsync(brokerUrl, {
  protocolVersion: 5,
  clientId: `bench-status-${randomBytes(3).toString("hex")}`,
});
// A machine learns that its readings are durable from the `accepted` status, which names the newest
// journaled reading (older ones are journaled too), and that they are on-chain from `settled`.
const byMachineId = new Map(h.machines.map((m, i) => [m.machineId.toLowerCase(), i]));
const ackWaiting: [bigint, number][][] = h.machines.map(() => []);
const chainWaiting: [bigint, number][][] = h.machines.map(() => []);
let ackMs: number[] = [];
const chainMs: number[] = [];
/** Readings published and not yet acknowledged (by an `accepted` status naming them or a newer one). */
let outstanding = 0;
function drain(queue: [bigint, number][], units: bigint, into: number[]): number {
  let n = 0;
  const now = performance.now();
  while (n < queue.length && queue[n]![0] <= units) into.push(now - queue[n++]![1]);
  if (n > 0) queue.splice(0, n);
  return n;
}
listener.on("message", (_topic, payload) => {
  const status = JSON.parse(payload.toString()) as StatusMessage;
  const machine = byMachineId.get(status.machineId.toLowerCase());
  if (machine === undefined || status.cumulativeUnits === undefined) return;
  const units = BigInt(status.cumulativeUnits);
  if (status.state === "accepted") outstanding -= drain(ackWaiting[machine]!, units, ackMs);
  // A refused reading (stale, with several oracle connections) is answered too, just not accepted.
  else if (status.state === "rejected") outstanding -= drain(ackWaiting[machine]!, units, []);
  else if (status.state === "settled") drain(chainWaiting[machine]!, units, chainMs);
});
for (const m of h.machines) await listener.subscribeAsync(statusTopic(m.machineId), { qos: 1 });

console.log(
  `driving the oracle at full speed for ${seconds} s (${connections} oracle connections)…`,
);
const acceptedBefore = await counter("ppu_oracle_readings_accepted_total");
const cpuBefore = cpuByProcess();
const fullStart = performance.now();
const fullSent = await blast(
  full,
  256,
  () => performance.now() - fullStart >= seconds * 1000,
  async () => {
    while (outstanding >= backlog) await sleep(1);
  },
  (message) => {
    outstanding++;
    const now = performance.now();
    ackWaiting[message.machine]!.push([message.units, now]);
    if (message.units % 10n === 0n) chainWaiting[message.machine]!.push([message.units, now]);
  },
);
const fullElapsed = (performance.now() - fullStart) / 1000;
const cpuAfter = cpuByProcess();
const fullAccepted = (await counter("ppu_oracle_readings_accepted_total")) - acceptedBefore;
const readingsPerSecond = fullAccepted / fullElapsed;
if (fullSent >= full.length)
  console.log("  (all pre-signed readings were used: raise BENCH_PRESIGNED)");

console.log(`paced at 5,000 readings/s for ${pacedSeconds} s…`);
await sleep(2_000);
const fullAck = ackMs;
ackMs = [];
for (const queue of ackWaiting) queue.length = 0;
const pacedBefore = await counter("ppu_oracle_readings_accepted_total");
const pacedStart = performance.now();
let pacedNext = 0;
const pending: Promise<unknown>[] = [];
while (performance.now() - pacedStart < pacedSeconds * 1000 && pacedNext < paced.length) {
  // 50 readings every 10 ms.
  const due = Math.floor(((performance.now() - pacedStart) / 1000) * 5_000);
  while (pacedNext < due && pacedNext < paced.length) {
    const message = paced[pacedNext]!;
    const client = publishers[message.machine % publishers.length]!;
    pacedNext++;
    ackWaiting[message.machine]!.push([message.units, performance.now()]);
    pending.push(client.publishAsync(message.topic, message.payload, { qos: 1 }));
  }
  await sleep(10);
}
await Promise.all(pending);
for (let i = 0; i < 100 && ackWaiting.some((q) => q.length > 0); i++) await sleep(50);
const pacedAck = ackMs;
const pacedElapsed = (performance.now() - pacedStart) / 1000;
const pacedAccepted = (await counter("ppu_oracle_readings_accepted_total")) - pacedBefore;
const metricsText = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
const rejected = Object.fromEntries(
  [...metricsText.matchAll(/^ppu_oracle_readings_rejected_total\{reason="([^"]+)"\} (\d+)/gm)].map(
    (m) => [m[1]!, Number(m[2])],
  ),
);
const received = await counter("ppu_oracle_readings_received_total");
/** Mean time inside the oracle from a reading's arrival to its journal commit. */
const oracleAckMeanMs =
  (metricIn(metricsText, "ppu_oracle_ack_seconds_sum") /
    metricIn(metricsText, "ppu_oracle_ack_seconds_count")) *
  1000;
await sleep(3_000);

// CPU time per accepted reading at full speed, by process: where the machine's two cores went.
const cpuPerReadingUs: Record<string, number> = {};
let cpuTotal = 0;
if (cpuBefore && cpuAfter && fullAccepted > 0) {
  for (const [name, seconds] of Object.entries(cpuAfter)) {
    const used = seconds - (cpuBefore[name] ?? 0);
    cpuTotal += used;
    cpuPerReadingUs[name] = Math.round((used / fullAccepted) * 1e6);
  }
}

const report = {
  readingsPerSecond: Math.round(readingsPerSecond),
  verifyOnlyPerSecond: Math.round(verifyOnlyPerSecond),
  brokerOnlyPerSecond: Math.round(brokerOnlyPerSecond),
  ratioToVerify: Number((readingsPerSecond / verifyOnlyPerSecond).toFixed(3)),
  ratioToBroker: Number((readingsPerSecond / brokerOnlyPerSecond).toFixed(3)),
  p50AckMs: Number(percentile(fullAck, 50).toFixed(1)),
  p99AckMs: Number(percentile(fullAck, 99).toFixed(1)),
  p99AckMsAt5000: Number(percentile(pacedAck, 99).toFixed(1)),
  p99ChainMs: Number(percentile(chainMs, 99).toFixed(1)),
  seconds,
  pacedSeconds,
  pacedRatePerSecond: Math.round(pacedAccepted / pacedElapsed),
  oracleAckMeanMs: Number(oracleAckMeanMs.toFixed(1)),
  machines: machineCount,
  oracleConnections: connections,
  broker: "mosquitto",
  journal: journalUrl ? "postgresql" : "embedded",
  cpuPerReadingUs: JSON.stringify(cpuPerReadingUs),
  coresBusy: Number((cpuTotal / fullElapsed).toFixed(2)),
  accepted: fullAccepted + pacedAccepted,
  received,
  rejected: JSON.stringify(rejected),
  machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? "unknown CPU"}`,
  date: new Date().toISOString(),
};
console.table(report);
console.log(
  `targets: >= 10,000 readings/s (${report.readingsPerSecond}), >= 0.6 of bare verification (${report.ratioToVerify}), ` +
    `p99 ack <= 100 ms at 5,000/s (${report.p99AckMsAt5000})`,
);
mkdirSync("reports", { recursive: true });
writeFileSync("reports/oracle.json", `${JSON.stringify(report, null, 2)}\n`);
console.log("wrote reports/oracle.json");
oracle.kill("SIGTERM");
await new Promise((resolve) => oracle.once("exit", resolve));
await Promise.all([...publishers, listener].map((c) => c.endAsync()));
await h.stop();
rmSync(dataDir, { recursive: true, force: true });
if (pgUrl) {
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${pgSchema} CASCADE`);
  await admin.end();
}
process.exit(0);
