/**
 * Prometheus metrics and health endpoints of the oracle: `/metrics`, `/healthz` (the process
 * answers) and `/readyz` (broker connected, journal reachable, chain reachable).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class OracleMetrics {
  readonly registry = new Registry();
  readonly received = new Counter({
    name: "ppu_oracle_readings_received_total",
    help: "Reading messages received",
    registers: [this.registry],
  });
  readonly accepted = new Counter({
    name: "ppu_oracle_readings_accepted_total",
    help: "Readings verified and journaled",
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: "ppu_oracle_readings_rejected_total",
    help: "Readings refused, by reason code",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly settled = new Counter({
    name: "ppu_oracle_readings_settled_total",
    help: "Readings settled on-chain",
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "ppu_oracle_batch_readings",
    help: "Readings per submitted transaction",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [this.registry],
  });
  readonly gasUsed = new Counter({
    name: "ppu_oracle_gas_used_total",
    help: "Gas used by submissions",
    registers: [this.registry],
  });
  readonly replacements = new Counter({
    name: "ppu_oracle_tx_replacements_total",
    help: "Submissions sent again with the same nonce and higher fees because they were not mined in time",
    registers: [this.registry],
  });
  readonly reorged = new Counter({
    name: "ppu_oracle_readings_reorged_total",
    help: "Settled readings pending again because their transaction left the chain",
    registers: [this.registry],
  });
  readonly ackLatency = new Histogram({
    name: "ppu_oracle_ack_seconds",
    help: "From receiving a reading to its durable acknowledgement",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  readonly chainLatency = new Histogram({
    name: "ppu_oracle_chain_seconds",
    help: "From a reading's timestamp to its inclusion on-chain",
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "ppu_oracle_" });
  }
}

export interface HealthServer {
  port: number;
  stop(): Promise<void>;
}

export async function startHealthServer(
  metrics: OracleMetrics,
  ready: () => Promise<Record<string, boolean>>,
  port: number,
  host = "127.0.0.1",
): Promise<HealthServer> {
  const server: Server = createServer(async (req, res) => {
    try {
      if (req.url === "/metrics") {
        res
          .writeHead(200, { "content-type": metrics.registry.contentType })
          .end(await metrics.registry.metrics());
      } else if (req.url === "/healthz") {
        res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
      } else if (req.url === "/readyz") {
        const checks = await ready();
        const ok = Object.values(checks).every(Boolean);
        res
          .writeHead(ok ? 200 : 503, { "content-type": "application/json" })
          .end(JSON.stringify({ ready: ok, checks }));
      } else {
        res.writeHead(404).end();
      }
    } catch {
      res.writeHead(500).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
