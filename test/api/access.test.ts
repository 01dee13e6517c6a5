/**
 * Access control of the API: every route × every role (owner, another owner, lessee, insurer with
 * and without a grant, bank, operator, anonymous), against an index of a real chain. Allowed where it
 * should be, 401 or 403 otherwise, and no list or record leaks another party's data. The test fails
 * when a route is added without a line in the matrix.
 */
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { createPublicClient, http, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createSiweMessage } from "viem/siwe";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Auth, GRANT_TYPES, grantDomain } from "../../services/api/auth.ts";
import { BankBridge } from "../../services/bank/bridge.ts";
import { connectBankChain } from "../../services/bank/chain.ts";
import { apiRoutes, buildApi } from "../../services/api/server.ts";
import { Indexer } from "../../services/indexer/indexer.ts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { openDatabase, type Database } from "../../services/shared/db.ts";
import { signReading } from "../../services/shared/signatures.ts";
import { CREDITOR } from "../bank/fixtures.ts";
import { startHarness, type Harness } from "../oracle/harness.ts";

type Role =
  "anonymous" | "owner" | "otherOwner" | "lessee" | "insurer" | "insurerNoGrant" | "bank" | "admin";
const ROLES: Role[] = [
  "anonymous",
  "owner",
  "otherOwner",
  "lessee",
  "insurer",
  "insurerNoGrant",
  "bank",
  "admin",
];

describe("API access control: every route × every role", function () {
  let h: Harness;
  let db: Database;
  let indexer: Indexer;
  let app: FastifyInstance;
  const tokens: Partial<Record<Role, string>> = {};
  const ADMIN = `admin-${randomBytes(8).toString("hex")}`;
  let otherMachine: Hex;

  async function call(
    role: Role,
    method: string,
    url: string,
    payload?: unknown,
    contentType?: string,
  ) {
    const headers: Record<string, string> = {};
    if (tokens[role]) headers.authorization = `Bearer ${tokens[role]}`;
    if (contentType) headers["content-type"] = contentType;
    return app.inject({
      method: method as "GET",
      url,
      headers,
      ...(payload !== undefined ? { payload: payload as string } : {}),
    });
  }

  async function signIn(key: Hex): Promise<string> {
    const account = privateKeyToAccount(key);
    const nonce = (await app.inject({ method: "POST", url: "/v1/auth/nonce" })).json()
      .nonce as string;
    const message = createSiweMessage({
      address: account.address,
      chainId: h.chain.chainId,
      domain: "localhost",
      nonce,
      uri: "http://localhost/",
      version: "1",
      issuedAt: new Date(),
    });
    const signature = await account.signMessage({ message });
    const response = await app.inject({
      method: "POST",
      url: "/v1/auth/siwe",
      payload: { message, signature },
    });
    expect(response.statusCode, response.body).to.equal(200);
    return response.json().token as string;
  }

  async function grant(ownerKey: Hex, grantee: Hex, machineIds: Hex[]) {
    const message = {
      grantee,
      machineIds,
      expiresAt: BigInt(Math.floor(Date.now() / 1000) + 86_400),
      nonce: BigInt(`0x${randomBytes(8).toString("hex")}`),
    };
    const signature = await privateKeyToAccount(ownerKey).signTypedData({
      domain: grantDomain(h.chain.chainId),
      types: GRANT_TYPES,
      primaryType: "AccessGrant",
      message,
    });
    return {
      ...message,
      expiresAt: String(message.expiresAt),
      nonce: String(message.nonce),
      signature,
    };
  }

  before(async function () {
    h = await startHarness();
    const accounts = h.chain.accounts;
    const [, , ownerAcc, lesseeAcc, , otherOwnerAcc, insurerAcc, insurer2Acc, bankAcc] = accounts;

    // Another owner with a machine of its own.
    otherMachine = `0x${randomBytes(32).toString("hex")}` as Hex;
    await h.write(
      "registerMachine",
      [
        otherMachine,
        otherOwnerAcc!.address,
        1,
        0n,
        { keyType: 0, x: `0x${"00".repeat(32)}`, y: `0x${"00".repeat(32)}` },
      ],
      otherOwnerAcc!.privateKey,
    );
    await h.write(
      "publishTariff",
      [
        otherMachine,
        {
          token: h.token,
          unit: "h",
          price: 1n,
          unitScale: 1n,
          tiers: [],
          minimumCharge: 0n,
          baseFee: 0n,
          period: 0n,
        },
      ],
      otherOwnerAcc!.privateKey,
    );
    // Usage and a settlement on the owner's machine, so that the money routes have something to show.
    const now = BigInt(Math.floor(Date.now() / 1000) + h.clockOffset);
    const reading = {
      agreementId: h.k1.agreementId,
      machineId: h.k1.machineId,
      cumulativeUnits: 1_000n,
      timestamp: now,
    };
    await h.write("record", [[{ reading, signature: signReading(h.domain, reading, h.k1.key!) }]]);
    await h.write("settle", [[h.k1.agreementId]]);

    db = await openDatabase();
    const client = createPublicClient({ transport: http(h.chain.rpcUrl) }) as PublicClient;
    indexer = await Indexer.open({ db, client, address: h.payPerUse, abi: payPerUseAbi() });
    await indexer.syncOnce();
    const auth = await Auth.open(db, {
      domain: "localhost",
      chainId: h.chain.chainId,
      adminToken: ADMIN,
    });
    const bridge = await BankBridge.open({
      db,
      chain: await connectBankChain({
        rpcUrl: h.chain.rpcUrl,
        contract: h.payPerUse,
        bankKey: accounts[1]!.privateKey,
      }),
      creditor: CREDITOR,
      eurTokens: [h.token],
      outDir: mkdtempSync(join(tmpdir(), "ppu-api-bank-")),
    });
    app = await buildApi({ db, auth, indexer, bridge, rateLimitPerMinute: 100_000 });
    await app.ready();

    tokens.admin = ADMIN;
    tokens.owner = await signIn(ownerAcc!.privateKey);
    tokens.otherOwner = await signIn(otherOwnerAcc!.privateKey);
    tokens.lessee = await signIn(lesseeAcc!.privateKey);
    const key = async (party: string, role: "insurer" | "bank", address: Hex) => {
      const response = await call("admin", "POST", "/v1/admin/api-keys", { party, role, address });
      expect(response.statusCode, response.body).to.equal(200);
      return response.json().key as string;
    };
    tokens.insurer = await key("Allianz Maschinen", "insurer", insurerAcc!.address);
    tokens.insurerNoGrant = await key("Other Insurer", "insurer", insurer2Acc!.address);
    tokens.bank = await key("Hausbank", "bank", bankAcc!.address);
    const granted = await call(
      "owner",
      "POST",
      "/v1/grants",
      await grant(ownerAcc!.privateKey, insurerAcc!.address, [h.k1.machineId]),
    );
    expect(granted.statusCode, granted.body).to.equal(200);
  });

  after(async () => {
    await app?.close();
    await db?.close();
    await h?.stop();
  });

  /** Expected status per role for each route; "ok" means 200. */
  type Expect = Partial<Record<Role, number>> & { default: number };
  const anyone: Expect = { default: 200 };
  const signedIn: Expect = { default: 200, anonymous: 401 };

  function matrix(): {
    method: string;
    url: string;
    route: string;
    expect: Expect;
    body?: () => Promise<unknown>;
    contentType?: string;
  }[] {
    const k1 = h.k1.machineId;
    const a1 = String(h.k1.agreementId);
    const visibleToOwnerSide: Expect = {
      default: 200,
      anonymous: 401,
      otherOwner: 403,
      insurerNoGrant: 403,
      bank: 403,
    };
    return [
      { method: "GET", url: "/v1/health", route: "/v1/health", expect: anyone },
      { method: "POST", url: "/v1/auth/nonce", route: "/v1/auth/nonce", expect: anyone },
      {
        method: "POST",
        url: "/v1/auth/siwe",
        route: "/v1/auth/siwe",
        expect: { default: 400 },
        body: async () => ({ message: "hello", signature: "0x00" }),
      },
      { method: "GET", url: "/v1/machines", route: "/v1/machines", expect: signedIn },
      {
        method: "GET",
        url: `/v1/machines/${k1}`,
        route: "/v1/machines/:machineId",
        expect: visibleToOwnerSide,
      },
      {
        method: "GET",
        url: `/v1/machines/${k1}/tariffs`,
        route: "/v1/machines/:machineId/tariffs",
        expect: visibleToOwnerSide,
      },
      { method: "GET", url: "/v1/agreements", route: "/v1/agreements", expect: signedIn },
      {
        method: "GET",
        url: `/v1/agreements/${a1}`,
        route: "/v1/agreements/:agreementId",
        expect: visibleToOwnerSide,
      },
      {
        method: "GET",
        url: `/v1/agreements/${a1}/usage?resolution=60`,
        route: "/v1/agreements/:agreementId/usage",
        expect: visibleToOwnerSide,
      },
      {
        method: "GET",
        url: `/v1/agreements/${a1}/usage.csv`,
        route: "/v1/agreements/:agreementId/usage.csv",
        expect: visibleToOwnerSide,
      },
      {
        method: "GET",
        url: "/v1/earnings",
        route: "/v1/earnings",
        expect: { default: 403, anonymous: 401, owner: 200, otherOwner: 200, lessee: 200 },
      },
      {
        method: "GET",
        url: "/v1/settlements",
        route: "/v1/settlements",
        expect: { default: 403, anonymous: 401, owner: 200, otherOwner: 200, lessee: 200 },
      },
      {
        method: "GET",
        url: "/v1/direct-debits",
        route: "/v1/direct-debits",
        expect: { default: 200, anonymous: 401, insurer: 403, insurerNoGrant: 403 },
      },
      {
        method: "POST",
        url: "/v1/bank/exports",
        route: "/v1/bank/exports",
        expect: { default: 403, anonymous: 401, bank: 200 },
      },
      {
        method: "POST",
        url: "/v1/bank/statements",
        route: "/v1/bank/statements",
        // The bank reaches the import; this body is not camt.054, so it is refused as such.
        expect: { default: 403, anonymous: 401, bank: 400 },
        body: async () => "<Document/>",
        contentType: "application/xml",
      },
      {
        method: "POST",
        url: "/v1/grants",
        route: "/v1/grants",
        // Only the owner's own signed grant is stored; a grant signed by someone else is refused.
        expect: { default: 403, anonymous: 401, owner: 200 },
        body: async () =>
          grant(h.chain.accounts[2]!.privateKey, h.chain.accounts[9]!.address, [h.p256.machineId]),
      },
      {
        method: "GET",
        url: "/v1/grants",
        route: "/v1/grants",
        expect: { default: 200, anonymous: 401, admin: 403 },
      },
      {
        method: "POST",
        url: "/v1/admin/api-keys",
        route: "/v1/admin/api-keys",
        expect: { default: 403, anonymous: 401, admin: 200 },
        body: async () => ({ party: "x", role: "insurer", address: h.chain.accounts[10]!.address }),
      },
      {
        method: "GET",
        url: "/v1/events",
        route: "/v1/events",
        expect: { ...signedIn, admin: 200 },
      },
    ];
  }

  it("answers every route for every role as the matrix says", async function () {
    const rows = matrix();
    // Every /v1 route of the server has a line.
    const routes = new Set<string>();
    for (const row of rows) routes.add(`${row.method} ${row.route}`);
    const registered = apiRoutes(app);
    expect(registered.length).to.be.greaterThan(15);
    for (const route of registered) {
      expect(routes.has(route), `route ${route} has no line in the access matrix`).to.equal(true);
    }
    expect(registered.length).to.equal(rows.length);
    for (const row of rows) {
      for (const role of ROLES) {
        const expected = row.expect[role] ?? row.expect.default;
        if (row.route === "/v1/events") {
          const status = await streamStatus(role, row.url);
          expect(status, `${role} ${row.method} ${row.url}`).to.equal(expected);
          continue;
        }
        const response = await call(
          role,
          row.method,
          row.url,
          row.body ? await row.body() : undefined,
          row.contentType,
        );
        expect(
          response.statusCode,
          `${role} ${row.method} ${row.url}: ${response.body.slice(0, 200)}`,
        ).to.equal(expected);
        if (expected >= 400) {
          expect(response.json().error.code, `${role} ${row.url}`).to.match(/^[A-Z_]+$/);
        }
      }
    }
  });

  it("shows each party only its own machines and agreements", async function () {
    const ids = async (role: Role, url: string, field: string) =>
      ((await call(role, "GET", url)).json().items as Record<string, string>[]).map(
        (item) => item[field],
      );
    const ownerMachines = [h.k1, h.p256, h.attested, h.other].map((m) => m.machineId);
    expect((await ids("owner", "/v1/machines", "machineId")).sort()).to.deep.equal(
      [...ownerMachines].sort(),
    );
    expect(await ids("otherOwner", "/v1/machines", "machineId")).to.deep.equal([otherMachine]);
    expect(await ids("insurer", "/v1/machines", "machineId")).to.deep.equal([h.k1.machineId]);
    expect(await ids("insurerNoGrant", "/v1/machines", "machineId")).to.deep.equal([]);
    expect(await ids("bank", "/v1/machines", "machineId")).to.deep.equal([]);
    expect((await ids("lessee", "/v1/machines", "machineId")).sort()).to.deep.equal(
      [...ownerMachines].sort(),
    );

    expect(await ids("insurer", "/v1/agreements", "agreementId")).to.deep.equal([
      String(h.k1.agreementId),
    ]);
    expect(await ids("otherOwner", "/v1/agreements", "agreementId")).to.deep.equal([]);
    expect(await ids("insurerNoGrant", "/v1/agreements", "agreementId")).to.deep.equal([]);
    expect((await ids("owner", "/v1/agreements", "agreementId")).length).to.equal(4);

    // Money: the owner's payout shows up for the owner only.
    const earnings = (await call("owner", "GET", "/v1/earnings")).json() as { paid: string }[];
    expect(earnings).to.have.length(1);
    expect(BigInt(earnings[0]!.paid)).to.be.greaterThan(0n);
    expect((await call("otherOwner", "GET", "/v1/earnings")).json()).to.deep.equal([]);
    expect((await call("lessee", "GET", "/v1/earnings")).json()).to.deep.equal([]);

    // Grants: owner and grantee see the grant, nobody else.
    expect(((await call("insurer", "GET", "/v1/grants")).json() as unknown[]).length).to.equal(1);
    expect((await call("insurerNoGrant", "GET", "/v1/grants")).json()).to.deep.equal([]);
    expect((await call("otherOwner", "GET", "/v1/grants")).json()).to.deep.equal([]);
  });

  it("serves usage as a time series and as CSV", async function () {
    const series = (
      await call("insurer", "GET", `/v1/agreements/${h.k1.agreementId}/usage?resolution=3600`)
    ).json();
    expect(series.points).to.have.length(1);
    expect(series.points[0]).to.include({ units: "1000", cumulativeUnits: "1000", readings: 1 });
    const csv = await call("lessee", "GET", `/v1/agreements/${h.k1.agreementId}/usage.csv`);
    expect(csv.headers["content-type"]).to.match(/text\/csv/);
    const lines = csv.body.trim().split("\n");
    expect(lines[0]).to.equal(
      "time,reading_timestamp,block,cumulative_units,units,charge,escrow,debt,tx",
    );
    expect(lines).to.have.length(2);
    expect(lines[1]).to.match(/^\d{4}-\d{2}-\d{2}T[^,]+,\d+,\d+,1000,1000,250000,/);
  });

  it("rejects bad tokens, bad input and hides server errors' details", async function () {
    const bad = await app.inject({
      method: "GET",
      url: "/v1/machines",
      headers: { authorization: "Bearer nope" },
    });
    expect(bad.statusCode).to.equal(401);
    expect(bad.json().error.code).to.equal("UNAUTHORIZED");
    const invalid = await call("owner", "GET", "/v1/machines/0x1234");
    expect(invalid.statusCode).to.equal(400);
    expect(invalid.json().error.code).to.equal("VALIDATION_FAILED");
    const unknown = await call("owner", "GET", `/v1/agreements/999999`);
    expect(unknown.statusCode).to.equal(404);
    const openapi = await app.inject({ method: "GET", url: "/docs/json" });
    expect(openapi.statusCode).to.equal(200);
    expect(Object.keys(openapi.json().paths)).to.include("/v1/agreements/{agreementId}/usage");
  });

  it("limits each caller's requests per minute, separately, with a stable code", async function () {
    const auth = await Auth.open(db, {
      domain: "localhost",
      chainId: h.chain.chainId,
      adminToken: ADMIN,
    });
    const limited = await buildApi({ db, auth, indexer, rateLimitPerMinute: 3 });
    try {
      const get = (token?: string) =>
        limited.inject({
          method: "GET",
          url: "/v1/machines",
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
      for (let i = 0; i < 3; i++) expect((await get(tokens.insurer)).statusCode).to.equal(200);
      const refused = await get(tokens.insurer);
      expect(refused.statusCode).to.equal(429);
      expect(refused.json().error.code).to.equal("RATE_LIMITED");
      // Another key has its own allowance.
      expect((await get(tokens.bank)).statusCode).to.equal(200);
    } finally {
      await limited.close();
    }
  });

  async function streamStatus(role: Role, url: string): Promise<number> {
    const address = await app
      .listen({ port: 0, host: "127.0.0.1" })
      .catch(() => `http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
    const controller = new AbortController();
    const headers: Record<string, string> = tokens[role]
      ? { authorization: `Bearer ${tokens[role]}` }
      : {};
    const response = await fetch(`${address}${url}`, { headers, signal: controller.signal });
    const status = response.status;
    controller.abort();
    return status;
  }
});
