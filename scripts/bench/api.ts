/**
 * API load: the usage-query route (an insurer's API key with a grant, a day of readings at hourly
 * resolution) and the event stream under concurrent clients, next to a bare fastify route measured in
 * the same run and the same way. The load comes from autocannon in its own process.
 *
 *   npm run bench:api                       # 10 s per route, 50 connections
 *   BENCH_SECONDS=5 BENCH_CONNECTIONS=20 npm run bench:api
 *
 * Prints requests per second and p99 latency of both routes and their ratio; then measures the usage
 * route again while BENCH_STREAMS event-stream clients receive the readings arriving twice a second,
 * with the stream's fan-out latency; writes reports/api.json as
 * {"usageRps", "bareRps", "ratio", "p99Ms", …}. Targets: ratio ≥ 0.5, p99 ≤ 25 ms.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { promisify } from "node:util";
import Fastify from "fastify";
import { createPublicClient, http, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { Auth, GRANT_TYPES, grantDomain } from "../../services/api/auth.ts";
import { buildApi } from "../../services/api/server.ts";
import { Indexer, type IndexedEvent } from "../../services/indexer/indexer.ts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { openDatabase } from "../../services/shared/db.ts";
import { signReading } from "../../services/shared/signatures.ts";
import { startHarness } from "../../test/oracle/harness.ts";

const run = promisify(execFile);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const streams = Number(process.env.BENCH_STREAMS ?? 100);

interface Cannon {
  requests: { average: number };
  latency: { p99: number; p50: number };
  non2xx: number;
  errors: number;
}

async function cannon(url: string, headers: Record<string, string>): Promise<Cannon> {
  const args = ["-c", String(connections), "-d", String(seconds), "-j"];
  for (const [key, value] of Object.entries(headers)) args.push("-H", `${key}=${value}`);
  const { stdout } = await run("node_modules/.bin/autocannon", [...args, url], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(stdout) as Cannon;
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

console.log("setting up a chain with a day of readings…");
const h = await startHarness();
const insurer = privateKeyToAccount(`0x${randomBytes(32).toString("hex")}` as Hex);
const owner = h.chain.accounts[2]!;
// A day passes on the chain; the machine reported every 15 minutes of it.
await h.chain.provider.request({ method: "evm_increaseTime", params: [86_400] });
await h.chain.provider.request({ method: "evm_mine" });
const chainNow = Number((await h.client.getBlock()).timestamp);
const base = chainNow - 86_400 + 60;
for (let i = 1; i <= 96; i++) {
  const reading = {
    agreementId: h.k1.agreementId,
    machineId: h.k1.machineId,
    cumulativeUnits: BigInt(i * 1_000),
    timestamp: BigInt(base + i * 900),
  };
  await h.write("record", [[{ reading, signature: signReading(h.domain, reading, h.k1.key!) }]]);
}

const db = await openDatabase();
const client = createPublicClient({ transport: http(h.chain.rpcUrl) }) as PublicClient;
const indexer = await Indexer.open({
  db,
  client,
  address: h.payPerUse,
  abi: payPerUseAbi(),
  pollMs: 200,
});
await indexer.syncOnce();
const adminToken = randomBytes(16).toString("hex");
const auth = await Auth.open(db, { domain: "localhost", chainId: h.chain.chainId, adminToken });
const { key } = await auth.createKey("Bench Insurance", "insurer", insurer.address);
const grant = {
  grantee: insurer.address,
  machineIds: [h.k1.machineId],
  expiresAt: BigInt(Math.floor(Date.now() / 1000) + 3_600),
  nonce: 1n,
};
const signature = await privateKeyToAccount(owner.privateKey).signTypedData({
  domain: grantDomain(h.chain.chainId),
  types: GRANT_TYPES,
  primaryType: "AccessGrant",
  message: grant,
});
await auth.addGrant(grant, signature, async () => owner.address.toLowerCase());
indexer.start();

const api = await buildApi({ db, auth, indexer, rateLimitPerMinute: 100_000_000 });
const apiUrl = await api.listen({ port: 0, host: "127.0.0.1" });
const bare = Fastify({ logger: false });
bare.get("/bare", async () => ({ ok: true, agreementId: "1", units: "1000" }));
const bareUrl = await bare.listen({ port: 0, host: "127.0.0.1" });

const usagePath = `/v1/agreements/${h.k1.agreementId}/usage?from=${base}&to=${base + 86_400 + 3_600}&resolution=3600`;
const check = await fetch(`${apiUrl}${usagePath}`, { headers: { authorization: `Bearer ${key}` } });
const body = (await check.json()) as { points: unknown[] };
if (check.status !== 200 || body.points.length < 20)
  throw new Error(`usage route answered ${check.status}`);

console.log(`bare route: ${connections} connections for ${seconds} s…`);
const bareResult = await cannon(`${bareUrl}/bare`, {});
console.log(`usage route: ${connections} connections for ${seconds} s…`);
const usageResult = await cannon(`${apiUrl}${usagePath}`, { authorization: `Bearer ${key}` });

// The event stream: clients connected while the usage route is under load, and readings arriving.
const emittedAt = new Map<string, number>();
indexer.on("event", (event: IndexedEvent) =>
  emittedAt.set(`${event.blockNumber}:${event.logIndex}`, performance.now()),
);
const fanOut: number[] = [];
let received = 0;
const controllers: AbortController[] = [];
for (let i = 0; i < streams; i++) {
  const controller = new AbortController();
  controllers.push(controller);
  const response = await fetch(`${apiUrl}/v1/events`, {
    headers: { authorization: `Bearer ${key}` },
    signal: controller.signal,
  });
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.split("\n").find((line) => line.startsWith("data: "));
          if (!data) continue;
          const event = JSON.parse(data.slice(6)) as { blockNumber: string; logIndex: number };
          const at = emittedAt.get(`${event.blockNumber}:${event.logIndex}`);
          if (at !== undefined) fanOut.push(performance.now() - at);
          received++;
        }
      }
    } catch {
      // aborted at the end
    }
  })();
}
let next = 97;
const writer = setInterval(() => {
  const reading = {
    agreementId: h.k1.agreementId,
    machineId: h.k1.machineId,
    cumulativeUnits: BigInt(next++ * 1_000),
    timestamp: BigInt(Math.floor(Date.now() / 1000) + h.clockOffset),
  };
  void h
    .write("record", [[{ reading, signature: signReading(h.domain, reading, h.k1.key!) }]])
    .catch(() => {});
}, 500);

console.log(
  `usage route again, with ${streams} event-stream clients and two readings a second arriving…`,
);
const busyResult = await cannon(`${apiUrl}${usagePath}`, { authorization: `Bearer ${key}` });
clearInterval(writer);
await new Promise((resolve) => setTimeout(resolve, 1_500));
for (const controller of controllers) controller.abort();

const report = {
  usageRps: Math.round(usageResult.requests.average),
  bareRps: Math.round(bareResult.requests.average),
  ratio: Number((usageResult.requests.average / bareResult.requests.average).toFixed(3)),
  p99Ms: usageResult.latency.p99,
  p50Ms: usageResult.latency.p50,
  bareP99Ms: bareResult.latency.p99,
  usageErrors: usageResult.non2xx + usageResult.errors + busyResult.non2xx + busyResult.errors,
  usageRpsWithStreams: Math.round(busyResult.requests.average),
  p99MsWithStreams: busyResult.latency.p99,
  streamClients: streams,
  streamEventsDelivered: received,
  streamFanOutP99Ms: Number(percentile(fanOut, 99).toFixed(1)),
  connections,
  seconds,
  machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? "unknown CPU"}`,
  date: new Date().toISOString(),
};
console.table(report);
console.log(
  `targets: usage at >= 0.5 of the bare route (${report.ratio}), p99 <= 25 ms (${report.p99Ms} ms)`,
);
mkdirSync("reports", { recursive: true });
writeFileSync("reports/api.json", `${JSON.stringify(report, null, 2)}\n`);
console.log("wrote reports/api.json");
await indexer.stop();
await api.close();
await bare.close();
await db.close();
await h.stop();
process.exit(0);
