/**
 * The HTTP API (fastify) for owners, lessees, insurers, banks and operators: machines, tariffs,
 * agreements, usage series and CSV, earnings, settlements, direct debits, the bank bridge's export and
 * import, a Server-Sent-Events stream, access grants and API keys. Every route has a JSON schema; the
 * OpenAPI document is generated from them (`/openapi.json`, interactive at `/docs`).
 *
 * Errors have stable codes (`{ "error": { "code", "message" } }`); server errors hide their details.
 * Rate limits apply per API key, per session, and per address for anonymous callers.
 */
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { getAddress, isAddress, type Address, type Hex } from "viem";
import type { BankBridge } from "../bank/bridge.ts";
import type { Database } from "../shared/db.ts";
import {
  ForbiddenError,
  HTTP_STATUS_BY_CODE,
  NotFoundError,
  PpuError,
  UnauthorizedError,
  ValidationError,
} from "../shared/errors.ts";
import type { Indexer, IndexedEvent } from "../indexer/indexer.ts";
import type { Auth, Principal } from "./auth.ts";

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal;
  }
}

export interface ApiDeps {
  db: Database;
  auth: Auth;
  indexer?: Indexer;
  /** The bank bridge, for the SEPA routes (bank keys only). */
  bridge?: BankBridge;
  /** Requests per minute per caller. */
  rateLimitPerMinute?: number;
  /** Extra routes on the same server (the dashboard). */
  extend?: (app: FastifyInstance) => void;
}

const uint = { type: "string", pattern: "^[0-9]+$" } as const;
const bytes32 = { type: "string", pattern: "^0x[0-9a-fA-F]{64}$" } as const;
const address = { type: "string", pattern: "^0x[0-9a-fA-F]{40}$" } as const;
const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
  },
} as const;
const errors = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  429: errorSchema,
} as const;
const page = {
  type: "object",
  properties: {
    limit: { type: "integer", minimum: 1, maximum: 500, default: 100 },
    cursor: { type: "string", pattern: "^[0-9]+$" },
  },
} as const;

const machineSchema = {
  type: "object",
  properties: {
    machineId: bytes32,
    owner: address,
    payout: address,
    trustMode: { type: "string", enum: ["device-signed", "oracle-attested"] },
    keyType: { type: "string", enum: ["none", "secp256k1", "p256"] },
    keyVersion: { type: "integer" },
    keyRevoked: { type: "boolean" },
    maxUnitsPerHour: uint,
    registeredBlock: uint,
  },
} as const;
const agreementSchema = {
  type: "object",
  properties: {
    agreementId: uint,
    machineId: bytes32,
    lessee: address,
    token: address,
    tariffVersion: { type: "integer" },
    deposit: uint,
    endTime: uint,
    status: { type: "string" },
    cumulativeUnits: uint,
    totalCharged: uint,
    escrow: uint,
    debt: uint,
    mandateRef: { type: ["string", "null"] },
    openedBlock: uint,
    updatedBlock: uint,
  },
} as const;
const debitSchema = {
  type: "object",
  properties: {
    debitId: uint,
    agreementId: uint,
    token: address,
    amount: uint,
    dueDate: uint,
    status: { type: "string" },
    returnReason: { type: ["string", "null"] },
  },
} as const;
const list = (items: object) =>
  ({
    type: "object",
    properties: { items: { type: "array", items }, nextCursor: { type: ["string", "null"] } },
  }) as const;

const KEY_TYPES = ["none", "secp256k1", "p256"];

function camel(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row))
    out[key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = value;
  return out;
}

function machineOut(row: Record<string, unknown>) {
  const m = camel(row);
  return {
    ...m,
    owner: getAddress(String(m.owner)),
    payout: getAddress(String(m.payout)),
    trustMode: Number(m.trustMode) === 1 ? "oracle-attested" : "device-signed",
    keyType: KEY_TYPES[Number(m.keyType)] ?? "none",
  };
}

function agreementOut(row: Record<string, unknown>): Record<string, unknown> {
  const a = camel(row);
  return { ...a, lessee: getAddress(String(a.lessee)), token: getAddress(String(a.token)) };
}

/** Columns of the agreements a principal may see, as SQL over `a` (agreement) and `m` (machine). */
function agreementScope(p: Principal, params: unknown[]): string {
  switch (p.kind) {
    case "admin":
      return "true";
    case "wallet":
      params.push(p.address.toLowerCase());
      return `(a.lessee = $${params.length} OR m.owner = $${params.length})`;
    case "key":
      params.push(p.address.toLowerCase());
      return `EXISTS (SELECT 1 FROM api_grant_machines g WHERE g.machine_id = m.machine_id AND g.grantee = $${params.length}
              AND g.owner = m.owner AND g.expires_at > extract(epoch from now()))`;
    default:
      throw new UnauthorizedError();
  }
}

function machineScope(p: Principal, params: unknown[]): string {
  switch (p.kind) {
    case "admin":
      return "true";
    case "wallet":
      params.push(p.address.toLowerCase());
      return `(m.owner = $${params.length} OR EXISTS (SELECT 1 FROM idx_agreements a WHERE a.machine_id = m.machine_id AND a.lessee = $${params.length}))`;
    case "key":
      params.push(p.address.toLowerCase());
      return `EXISTS (SELECT 1 FROM api_grant_machines g WHERE g.machine_id = m.machine_id AND g.grantee = $${params.length}
              AND g.owner = m.owner AND g.expires_at > extract(epoch from now()))`;
    default:
      throw new UnauthorizedError();
  }
}

const MACHINE_COLUMNS = `m.machine_id, m.owner, m.payout, m.trust_mode, m.key_type, m.key_version,
  m.key_revoked, m.max_units_per_hour::text AS max_units_per_hour, m.registered_block::text AS registered_block`;

/** The row a principal asked for by id: 404 when there is none, 403 when it is not theirs to see. */
function visibleRow(
  rows: Record<string, unknown>[],
  what: string,
  id: string,
): Record<string, unknown> {
  const row = rows[0] as (Record<string, unknown> & { visible: boolean }) | undefined;
  if (!row) throw new NotFoundError(`no ${what} ${id}`);
  if (!row.visible) throw new ForbiddenError(`${what} ${id} is not yours and not granted to you`);
  const { visible: _, ...rest } = row;
  return rest;
}

function requireSignedIn(p: Principal): void {
  if (p.kind === "anonymous")
    throw new UnauthorizedError("sign in (POST /v1/auth/siwe) or send an API key");
}

/** Small cache of query results, dropped whenever the index or the grants change. */
class Cache {
  private entries = new Map<string, unknown>();
  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    if (this.entries.has(key)) return Promise.resolve(this.entries.get(key) as T);
    return load().then((value) => {
      if (this.entries.size > 10_000) this.entries.clear();
      this.entries.set(key, value);
      return value;
    });
  }
  clear(): void {
    this.entries.clear();
  }
}

const ROUTES = new WeakMap<FastifyInstance, string[]>();

/** "METHOD /path" of every API route (HEAD and the documentation excluded). */
export function apiRoutes(app: FastifyInstance): string[] {
  return [...(ROUTES.get(app) ?? [])];
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
  const routes: string[] = [];
  ROUTES.set(app, routes);
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method !== "HEAD" && route.url.startsWith("/v1/")) routes.push(`${method} ${route.url}`);
    }
  });
  const { db, auth } = deps;
  const cache = new Cache();
  const principals = new Map<string, { principal: Principal; at: number }>();
  deps.indexer?.on("event", () => cache.clear());
  deps.indexer?.on("reorg", () => cache.clear());

  app.addContentTypeParser(
    ["application/xml", "text/xml"],
    { parseAs: "string" },
    (_request, body, done) => done(null, body),
  );

  await app.register(swagger, {
    openapi: {
      info: {
        title: "PayPerUse API",
        version: "1.0.0",
        description:
          "Machines, tariffs, agreements, usage, earnings, settlements and SEPA direct debits of the pay-per-use platform. Sign in with Ethereum (EIP-4361) as an owner or lessee, or send an API key as an insurer or a bank: `Authorization: Bearer <token>`.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  app.decorateRequest("principal", null as never);
  app.addHook("onRequest", async (request) => {
    const header = request.headers.authorization;
    const cached = header ? principals.get(header) : undefined;
    if (cached && Date.now() - cached.at < 30_000) {
      request.principal = cached.principal;
      return;
    }
    request.principal = await auth.principal(header, request.ip);
    if (header) {
      if (principals.size > 10_000) principals.clear();
      principals.set(header, { principal: request.principal, at: Date.now() });
    }
  });
  await app.register(rateLimit, {
    hook: "preHandler",
    max: deps.rateLimitPerMinute ?? 1_200,
    timeWindow: 60_000,
    keyGenerator: (request) => request.principal?.id ?? request.ip,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      error: {
        code: "RATE_LIMITED",
        message: `more than ${context.max} requests per minute; retry in ${context.after}`,
      },
    }),
  });

  app.setErrorHandler(
    (
      error: Error & { statusCode?: number; validation?: unknown; code?: string },
      request,
      reply,
    ) => {
      if (error instanceof PpuError) {
        const status = HTTP_STATUS_BY_CODE[error.code] ?? 500;
        if (status >= 500) {
          request.log.error(error);
          return reply
            .status(status)
            .send({ error: { code: error.code, message: "internal error" } });
        }
        return reply.status(status).send({ error: { code: error.code, message: error.message } });
      }
      if (error.validation) {
        return reply
          .status(400)
          .send({ error: { code: "VALIDATION_FAILED", message: error.message } });
      }
      if (error.statusCode === 429) {
        return reply.status(429).send(error);
      }
      if (error.statusCode && error.statusCode < 500) {
        return reply
          .status(error.statusCode)
          .send({ error: { code: error.code ?? "BAD_REQUEST", message: error.message } });
      }
      request.log.error(error);
      return reply.status(500).send({ error: { code: "INTERNAL", message: "internal error" } });
    },
  );

  // -------------------------------------------------------------------------------------------- open

  app.get(
    "/v1/health",
    {
      schema: {
        tags: ["system"],
        security: [],
        response: {
          200: {
            type: "object",
            properties: { ok: { type: "boolean" }, indexedBlock: { type: "string" } },
          },
        },
      },
    },
    async () => ({ ok: true, indexedBlock: String(deps.indexer?.head ?? -1n) }),
  );

  app.post(
    "/v1/auth/nonce",
    {
      schema: {
        tags: ["auth"],
        security: [],
        response: { 200: { type: "object", properties: { nonce: { type: "string" } } } },
      },
    },
    async () => ({ nonce: await auth.nonce() }),
  );

  app.post(
    "/v1/auth/siwe",
    {
      schema: {
        tags: ["auth"],
        security: [],
        body: {
          type: "object",
          required: ["message", "signature"],
          properties: {
            message: { type: "string", maxLength: 4096 },
            signature: { type: "string", pattern: "^0x[0-9a-fA-F]+$" },
          },
        },
        response: {
          200: {
            type: "object",
            properties: { token: { type: "string" }, address, expiresAt: { type: "string" } },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const body = request.body as { message: string; signature: Hex };
      return auth.signIn(body.message, body.signature);
    },
  );

  // ------------------------------------------------------------------------------------- machines

  app.get(
    "/v1/machines",
    {
      schema: {
        tags: ["machines"],
        querystring: page,
        response: { 200: list(machineSchema), ...errors },
      },
    },
    async (request) => {
      requireSignedIn(request.principal);
      const { limit, cursor } = request.query as { limit: number; cursor?: string };
      const params: unknown[] = [];
      const scope = machineScope(request.principal, params);
      params.push(cursor ? Number(cursor) : 0, limit + 1);
      const { rows } = await db.query(
        `SELECT ${MACHINE_COLUMNS}
         FROM idx_machines m WHERE ${scope} ORDER BY m.registered_block, m.machine_id
         OFFSET $${params.length - 1} LIMIT $${params.length}`,
        params,
      );
      const start = cursor ? Number(cursor) : 0;
      return {
        items: rows.slice(0, limit).map(machineOut),
        nextCursor: rows.length > limit ? String(start + limit) : null,
      };
    },
  );

  async function visibleMachine(p: Principal, machineId: string): Promise<Record<string, unknown>> {
    requireSignedIn(p);
    const params: unknown[] = [machineId.toLowerCase()];
    const scope = machineScope(p, params);
    const { rows } = await db.query(
      `SELECT ${MACHINE_COLUMNS},
              (${scope}) AS visible
       FROM idx_machines m WHERE m.machine_id = $1`,
      params,
    );
    return visibleRow(rows, "machine", machineId);
  }

  app.get(
    "/v1/machines/:machineId",
    {
      schema: {
        tags: ["machines"],
        params: { type: "object", properties: { machineId: bytes32 } },
        response: { 200: machineSchema, ...errors },
      },
    },
    async (request) =>
      machineOut(
        await visibleMachine(
          request.principal,
          (request.params as { machineId: string }).machineId,
        ),
      ),
  );

  app.get(
    "/v1/machines/:machineId/tariffs",
    {
      schema: {
        tags: ["machines"],
        params: { type: "object", properties: { machineId: bytes32 } },
        response: {
          200: {
            type: "array",
            items: {
              type: "object",
              properties: {
                version: { type: "integer" },
                token: address,
                unit: { type: "string" },
                price: uint,
                unitScale: uint,
                minimumCharge: uint,
                baseFee: uint,
                period: uint,
                tiers: { type: "array", items: { type: "object", additionalProperties: true } },
              },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const { machineId } = request.params as { machineId: string };
      await visibleMachine(request.principal, machineId);
      const { rows } = await db.query(
        `SELECT version, token, unit, price::text AS price, unit_scale::text AS unit_scale, minimum_charge::text AS minimum_charge,
                base_fee::text AS base_fee, period::text AS period, tiers
         FROM idx_tariffs WHERE machine_id = $1 ORDER BY version`,
        [machineId.toLowerCase()],
      );
      return rows.map((row) => {
        const t = camel(row);
        return {
          ...t,
          token: getAddress(String(t.token)),
          tiers: typeof t.tiers === "string" ? JSON.parse(t.tiers) : t.tiers,
        };
      });
    },
  );

  // ----------------------------------------------------------------------------------- agreements

  const AGREEMENT_COLUMNS = `a.agreement_id::text AS agreement_id, a.machine_id, a.lessee, a.token, a.tariff_version,
    a.deposit::text AS deposit, a.end_time::text AS end_time, a.status, a.cumulative_units::text AS cumulative_units,
    a.total_charged::text AS total_charged, a.escrow::text AS escrow, a.debt::text AS debt, a.mandate_ref,
    a.opened_block::text AS opened_block, a.updated_block::text AS updated_block`;

  app.get(
    "/v1/agreements",
    {
      schema: {
        tags: ["agreements"],
        querystring: {
          ...page,
          properties: { ...page.properties, machineId: bytes32, status: { type: "string" } },
        },
        response: { 200: list(agreementSchema), ...errors },
      },
    },
    async (request) => {
      requireSignedIn(request.principal);
      const q = request.query as {
        limit: number;
        cursor?: string;
        machineId?: string;
        status?: string;
      };
      const params: unknown[] = [];
      const scope = agreementScope(request.principal, params);
      const filters: string[] = [scope];
      params.push(q.cursor ?? "0");
      filters.push(`a.agreement_id > $${params.length}`);
      if (q.machineId) {
        params.push(q.machineId.toLowerCase());
        filters.push(`a.machine_id = $${params.length}`);
      }
      if (q.status) {
        params.push(q.status);
        filters.push(`a.status = $${params.length}`);
      }
      params.push(q.limit + 1);
      const { rows } = await db.query(
        `SELECT ${AGREEMENT_COLUMNS} FROM idx_agreements a JOIN idx_machines m ON m.machine_id = a.machine_id
         WHERE ${filters.join(" AND ")} ORDER BY a.agreement_id LIMIT $${params.length}`,
        params,
      );
      const items = rows.slice(0, q.limit).map(agreementOut);
      return {
        items,
        nextCursor: rows.length > q.limit ? String(items[items.length - 1]!.agreementId) : null,
      };
    },
  );

  async function visibleAgreement(
    p: Principal,
    agreementId: string,
  ): Promise<Record<string, unknown>> {
    requireSignedIn(p);
    return cache.get(`agreement:${p.id}:${agreementId}`, async () => {
      const params: unknown[] = [agreementId];
      const scope = agreementScope(p, params);
      const { rows } = await db.query(
        `SELECT ${AGREEMENT_COLUMNS}, (${scope}) AS visible
         FROM idx_agreements a JOIN idx_machines m ON m.machine_id = a.machine_id WHERE a.agreement_id = $1`,
        params,
      );
      return visibleRow(rows, "agreement", agreementId);
    });
  }

  const agreementParams = { type: "object", properties: { agreementId: uint } } as const;

  app.get(
    "/v1/agreements/:agreementId",
    {
      schema: {
        tags: ["agreements"],
        params: agreementParams,
        response: { 200: agreementSchema, ...errors },
      },
    },
    async (request) =>
      agreementOut(
        await visibleAgreement(
          request.principal,
          (request.params as { agreementId: string }).agreementId,
        ),
      ),
  );

  const usageQuery = {
    type: "object",
    properties: {
      from: { type: "integer", minimum: 0, description: "unix seconds, inclusive (reading time)" },
      to: { type: "integer", minimum: 0, description: "unix seconds, exclusive" },
      resolution: {
        type: "integer",
        minimum: 1,
        maximum: 31_536_000,
        default: 3600,
        description: "bucket width in seconds",
      },
    },
  } as const;

  app.get(
    "/v1/agreements/:agreementId/usage",
    {
      schema: {
        tags: ["usage"],
        params: agreementParams,
        querystring: usageQuery,
        response: {
          200: {
            type: "object",
            properties: {
              agreementId: uint,
              resolution: { type: "integer" },
              points: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    start: { type: "integer" },
                    units: uint,
                    charge: uint,
                    cumulativeUnits: uint,
                    readings: { type: "integer" },
                  },
                },
              },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const { agreementId } = request.params as { agreementId: string };
      const q = request.query as { from?: number; to?: number; resolution: number };
      await visibleAgreement(request.principal, agreementId);
      if (q.from !== undefined && q.to !== undefined && q.to <= q.from)
        throw new ValidationError("'to' must be after 'from'");
      return cache.get(`usage:${agreementId}:${q.from}:${q.to}:${q.resolution}`, async () => {
        const { rows } = await db.query<{
          start: string;
          units: string;
          charge: string;
          cumulative: string;
          readings: string;
        }>(
          `SELECT (reading_ts / $2) * $2 AS start, sum(units)::text AS units, sum(charge)::text AS charge,
                  max(cumulative_units)::text AS cumulative, count(*)::text AS readings
           FROM idx_usage WHERE agreement_id = $1 AND reading_ts >= $3 AND reading_ts < $4
           GROUP BY 1 ORDER BY 1`,
          [agreementId, q.resolution, q.from ?? 0, q.to ?? Number.MAX_SAFE_INTEGER],
        );
        return {
          agreementId,
          resolution: q.resolution,
          points: rows.map((r) => ({
            start: Number(r.start),
            units: r.units,
            charge: r.charge,
            cumulativeUnits: r.cumulative,
            readings: Number(r.readings),
          })),
        };
      });
    },
  );

  app.get(
    "/v1/agreements/:agreementId/usage.csv",
    {
      schema: {
        tags: ["usage"],
        params: agreementParams,
        querystring: {
          type: "object",
          properties: { from: usageQuery.properties.from, to: usageQuery.properties.to },
        },
        produces: ["text/csv"],
        response: { 200: { type: "string" }, ...errors },
      },
    },
    async (request, reply) => {
      const { agreementId } = request.params as { agreementId: string };
      const q = request.query as { from?: number; to?: number };
      await visibleAgreement(request.principal, agreementId);
      const { rows } = await db.query<Record<string, string>>(
        `SELECT reading_ts::text AS reading_ts, block_number::text AS block_number, cumulative_units::text AS cumulative_units,
                units::text AS units, charge::text AS charge, escrow::text AS escrow, debt::text AS debt, tx_hash
         FROM idx_usage u WHERE u.agreement_id = $1 AND u.reading_ts >= $2 AND u.reading_ts < $3 ORDER BY u.block_number, u.log_index`,
        [agreementId, q.from ?? 0, q.to ?? Number.MAX_SAFE_INTEGER],
      );
      const lines = ["time,reading_timestamp,block,cumulative_units,units,charge,escrow,debt,tx"];
      for (const r of rows) {
        lines.push(
          [
            new Date(Number(r.reading_ts) * 1000).toISOString(),
            r.reading_ts,
            r.block_number,
            r.cumulative_units,
            r.units,
            r.charge,
            r.escrow,
            r.debt,
            r.tx_hash,
          ].join(","),
        );
      }
      return reply
        .type("text/csv; charset=utf-8")
        .header("content-disposition", `attachment; filename="agreement-${agreementId}-usage.csv"`)
        .send(`${lines.join("\n")}\n`);
    },
  );

  // ------------------------------------------------------------------------------------- money

  function walletOnly(p: Principal): Address {
    requireSignedIn(p);
    if (p.kind !== "wallet")
      throw new ForbiddenError("earnings and settlements are shown to the payee's wallet");
    return p.address;
  }

  app.get(
    "/v1/earnings",
    {
      schema: {
        tags: ["money"],
        response: {
          200: {
            type: "array",
            items: {
              type: "object",
              properties: {
                token: address,
                paid: uint,
                failed: uint,
                payouts: { type: "integer" },
              },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const payee = walletOnly(request.principal);
      const { rows } = await db.query<{
        token: string;
        paid: string;
        failed: string;
        payouts: string;
      }>(
        `SELECT token, COALESCE(sum(amount) FILTER (WHERE NOT failed), 0)::text AS paid,
                COALESCE(sum(amount) FILTER (WHERE failed), 0)::text AS failed, count(*)::text AS payouts
         FROM idx_payouts WHERE payee = $1 GROUP BY token ORDER BY token`,
        [payee.toLowerCase()],
      );
      return rows.map((r) => ({
        token: getAddress(r.token),
        paid: r.paid,
        failed: r.failed,
        payouts: Number(r.payouts),
      }));
    },
  );

  app.get(
    "/v1/settlements",
    {
      schema: {
        tags: ["money"],
        querystring: page,
        response: {
          200: list({
            type: "object",
            properties: {
              block: uint,
              token: address,
              amount: uint,
              failed: { type: "boolean" },
              tx: { type: "string" },
            },
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const payee = walletOnly(request.principal);
      const q = request.query as { limit: number; cursor?: string };
      const { rows } = await db.query<{
        block: string;
        token: string;
        amount: string;
        failed: boolean;
        tx_hash: string;
      }>(
        `SELECT block_number::text AS block, token, amount::text AS amount, failed, tx_hash FROM idx_payouts
         WHERE payee = $1 AND block_number > $2 ORDER BY block_number, log_index LIMIT $3`,
        [payee.toLowerCase(), q.cursor ?? "-1", q.limit + 1],
      );
      const items = rows.slice(0, q.limit).map((r) => ({
        block: r.block,
        token: getAddress(r.token),
        amount: r.amount,
        failed: r.failed,
        tx: r.tx_hash,
      }));
      return { items, nextCursor: rows.length > q.limit ? items[items.length - 1]!.block : null };
    },
  );

  app.get(
    "/v1/direct-debits",
    {
      schema: {
        tags: ["sepa"],
        querystring: page,
        response: { 200: list(debitSchema), ...errors },
      },
    },
    async (request) => {
      const p = request.principal;
      requireSignedIn(p);
      if (p.kind === "key" && p.role !== "bank")
        throw new ForbiddenError("direct debits are shown to the lessee, the owner and the bank");
      const q = request.query as { limit: number; cursor?: string };
      const params: unknown[] = [q.cursor ?? "0"];
      const scope = p.kind === "key" ? "true" : agreementScope(p, params);
      params.push(q.limit + 1);
      const { rows } = await db.query<Record<string, string>>(
        `SELECT d.debit_id::text AS debit_id, d.agreement_id::text AS agreement_id, d.token, d.amount::text AS amount,
                d.due_date::text AS due_date, d.status, d.return_reason
         FROM idx_debits d JOIN idx_agreements a ON a.agreement_id = d.agreement_id JOIN idx_machines m ON m.machine_id = a.machine_id
         WHERE d.debit_id > $1 AND ${scope} ORDER BY d.debit_id LIMIT $${params.length}`,
        params,
      );
      const items: Record<string, unknown>[] = rows
        .slice(0, q.limit)
        .map((r) => ({ ...camel(r), token: getAddress(r.token!) }));
      return {
        items,
        nextCursor: rows.length > q.limit ? String(items[items.length - 1]!.debitId) : null,
      };
    },
  );

  // -------------------------------------------------------------------------------------- SEPA

  function bankOnly(p: Principal): BankBridge {
    requireSignedIn(p);
    if (p.kind !== "key" || p.role !== "bank")
      throw new ForbiddenError("the SEPA operations are for the bank's API key");
    if (!deps.bridge) throw new NotFoundError("the bank bridge is not configured on this server");
    return deps.bridge;
  }

  app.post(
    "/v1/bank/exports",
    {
      schema: {
        tags: ["sepa"],
        description:
          "Follows the chain and writes a pain.008.001.08 file for every open direct-debit request that can be collected.",
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (request) => {
      const bridge = bankOnly(request.principal);
      const sync = await bridge.sync();
      const report = await bridge.exportBatch();
      return { sync, export: report };
    },
  );

  app.post(
    "/v1/bank/statements",
    {
      schema: {
        tags: ["sepa"],
        description:
          "Imports a camt.054 (.001.08 or .001.02) notification sent as application/xml.",
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (request) => {
      const bridge = bankOnly(request.principal);
      if (typeof request.body !== "string" || request.body.length === 0) {
        throw new ValidationError(
          "send the camt.054 file as the body, with content-type application/xml",
        );
      }
      await bridge.sync();
      return bridge.importStatement(request.body, `upload by ${request.principal.id}`);
    },
  );

  // ---------------------------------------------------------------------------- grants and keys

  app.post(
    "/v1/grants",
    {
      schema: {
        tags: ["access"],
        description:
          "Stores an owner's EIP-712 AccessGrant (domain 'PayPerUse access', version 1) giving an insurer or bank read access to machines.",
        body: {
          type: "object",
          required: ["grantee", "machineIds", "expiresAt", "nonce", "signature"],
          properties: {
            grantee: address,
            machineIds: { type: "array", minItems: 1, maxItems: 1000, items: bytes32 },
            expiresAt: uint,
            nonce: uint,
            signature: { type: "string", pattern: "^0x[0-9a-fA-F]+$" },
          },
        },
        response: {
          200: { type: "object", properties: { id: { type: "integer" }, owner: address } },
          ...errors,
        },
      },
    },
    async (request) => {
      const p = request.principal;
      requireSignedIn(p);
      if (p.kind !== "wallet")
        throw new ForbiddenError("grants are submitted by the owner's wallet session");
      const body = request.body as {
        grantee: string;
        machineIds: Hex[];
        expiresAt: string;
        nonce: string;
        signature: Hex;
      };
      const result = await auth.addGrant(
        {
          grantee: getAddress(body.grantee),
          machineIds: body.machineIds,
          expiresAt: BigInt(body.expiresAt),
          nonce: BigInt(body.nonce),
        },
        body.signature,
        async (machineId) => {
          const { rows } = await db.query<{ owner: string }>(
            "SELECT owner FROM idx_machines WHERE machine_id = $1",
            [machineId],
          );
          return rows[0]?.owner;
        },
        p.address,
      );
      cache.clear();
      return result;
    },
  );

  app.get(
    "/v1/grants",
    {
      schema: {
        tags: ["access"],
        response: {
          200: {
            type: "array",
            items: {
              type: "object",
              properties: {
                id: { type: "integer" },
                owner: address,
                grantee: address,
                machineIds: { type: "array", items: bytes32 },
                expiresAt: uint,
              },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const p = request.principal;
      requireSignedIn(p);
      if (p.kind !== "wallet" && p.kind !== "key")
        throw new ForbiddenError("grants are listed for their owner or grantee");
      const me = p.address.toLowerCase();
      const { rows } = await db.query<{
        id: number;
        owner: string;
        grantee: string;
        machine_ids: string[] | string;
        expires_at: string;
      }>(
        "SELECT id, owner, grantee, machine_ids, expires_at::text AS expires_at FROM api_grants WHERE owner = $1 OR grantee = $1 ORDER BY id",
        [me],
      );
      return rows.map((r) => ({
        id: r.id,
        owner: getAddress(r.owner),
        grantee: getAddress(r.grantee),
        machineIds: typeof r.machine_ids === "string" ? JSON.parse(r.machine_ids) : r.machine_ids,
        expiresAt: r.expires_at,
      }));
    },
  );

  app.post(
    "/v1/admin/api-keys",
    {
      schema: {
        tags: ["access"],
        description: "Operator only: issues an API key for an insurer or a bank (shown once).",
        body: {
          type: "object",
          required: ["party", "role", "address"],
          properties: {
            party: { type: "string", minLength: 1, maxLength: 200 },
            role: { type: "string", enum: ["insurer", "bank"] },
            address,
          },
        },
        response: {
          200: {
            type: "object",
            properties: { key: { type: "string" }, keyId: { type: "string" } },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const p = request.principal;
      requireSignedIn(p);
      if (p.kind !== "admin") throw new ForbiddenError("API keys are issued by the operator");
      const body = request.body as { party: string; role: "insurer" | "bank"; address: string };
      if (!isAddress(body.address)) throw new ValidationError("not an address");
      return auth.createKey(body.party, body.role, getAddress(body.address));
    },
  );

  // -------------------------------------------------------------------------------------- stream

  app.get(
    "/v1/events",
    {
      schema: {
        tags: ["usage"],
        description:
          "Server-Sent Events: usage, settlement and direct-debit events of the agreements and machines visible to the caller.",
        response: { ...errors },
      },
    },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const p = request.principal;
      requireSignedIn(p);
      const indexer = deps.indexer;
      if (!indexer) throw new NotFoundError("the event stream needs the indexer");
      let agreements = new Set<string>();
      let machines = new Set<string>();
      const refresh = async () => {
        const ap: unknown[] = [];
        const as = agreementScope(p, ap);
        const mp: unknown[] = [];
        const ms = machineScope(p, mp);
        const [a, m] = await Promise.all([
          db.query<{ id: string }>(
            `SELECT a.agreement_id::text AS id FROM idx_agreements a JOIN idx_machines m ON m.machine_id = a.machine_id WHERE ${as}`,
            ap,
          ),
          db.query<{ id: string }>(`SELECT m.machine_id AS id FROM idx_machines m WHERE ${ms}`, mp),
        ]);
        agreements = new Set(a.rows.map((r) => r.id));
        machines = new Set(m.rows.map((r) => r.id));
      };
      await refresh();
      reply.hijack();
      reply.raw.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      reply.raw.write(": connected\n\n");
      let stale = false;
      const send = (event: IndexedEvent) => {
        if (
          event.name === "AgreementOpened" ||
          event.name === "MachineRegistered" ||
          event.name === "MachineTransferred"
        )
          stale = true;
        const visible =
          (event.agreementId !== undefined && agreements.has(event.agreementId)) ||
          (event.agreementId === undefined &&
            event.machineId !== undefined &&
            machines.has(event.machineId));
        if (!visible) return;
        reply.raw.write(
          `event: ${event.name}\ndata: ${JSON.stringify({ ...event, blockNumber: String(event.blockNumber) })}\n\n`,
        );
      };
      const timer = setInterval(() => {
        if (stale) {
          stale = false;
          void refresh().catch(() => {});
        }
        reply.raw.write(": keep-alive\n\n");
      }, 2_000);
      indexer.on("event", send);
      request.raw.on("close", () => {
        clearInterval(timer);
        indexer.off("event", send);
      });
    },
  );

  deps.extend?.(app);
  return app;
}
