/**
 * The dashboard server: the live page, the agreements it shows, the contract's event stream
 * (Server-Sent Events) and the oracle's health. Built by a factory, listened to by the caller.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import type { LiveEvent, LiveView } from "./live-view.ts";

const PAGE = readFileSync(
  join(dirname(fileURLToPath(import.meta.url)), "public", "index.html"),
  "utf8",
);

export interface DashboardDeps {
  view: LiveView;
  health: () => Record<string, unknown>;
  /** Machine names for display, by machine id. */
  names?: Map<string, string>;
  /** Direct debits and their state, newest first. */
  debits?: () => Promise<Record<string, unknown>[]>;
}

export function buildDashboard(deps: DashboardDeps): FastifyInstance {
  const app = Fastify({ logger: false });
  registerDashboard(app, deps);
  return app;
}

/** Adds the page and its data routes to a server (the API's, under `npm start`). */
export function registerDashboard(app: FastifyInstance, deps: DashboardDeps): void {
  app.get("/", { schema: { hide: true } }, async (_request, reply) =>
    reply.type("text/html; charset=utf-8").send(PAGE),
  );

  app.get(
    "/api/agreements",
    {
      schema: {
        hide: true,
        response: { 200: { type: "array", items: { type: "object", additionalProperties: true } } },
      },
    },
    async () =>
      [...deps.view.agreements.values()].map((row) => ({
        ...row,
        name: deps.names?.get(row.machineId) ?? row.machineId.slice(0, 10),
      })),
  );

  app.get("/api/health", { schema: { hide: true } }, async () => deps.health());

  app.get("/api/debits", { schema: { hide: true } }, async () =>
    deps.debits ? deps.debits() : [],
  );

  app.get("/api/events", { schema: { hide: true } }, (request, reply) => {
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    const send = (event: LiveEvent) =>
      reply.raw.write(`event: usage\ndata: ${JSON.stringify(event)}\n\n`);
    for (const event of deps.view.recent.slice(-50)) send(event);
    deps.view.on("event", send);
    const keepAlive = setInterval(() => reply.raw.write(": keep-alive\n\n"), 15_000);
    request.raw.on("close", () => {
      clearInterval(keepAlive);
      deps.view.off("event", send);
    });
  });
}
