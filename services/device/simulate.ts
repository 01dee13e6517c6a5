/**
 * A fleet simulator built on the device SDK: N machines of both key types, each a `DeviceClient`
 * with its own MQTT connection, metering at its own rate and going offline for periods (random
 * from a seed, or scripted). At the end every machine's measured usage is compared with what the
 * chain charged for its agreement.
 *
 * It runs against a running system (broker URL, JSON-RPC URL, PayPerUse contract, token, an owner
 * key that registers the machines and a lessee key that opens and funds the agreements) or, with
 * `embedded`, starts the whole system itself: an in-process chain, the contracts, and the oracle
 * with its embedded broker.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  createPublicClient,
  createWalletClient,
  erc20Abi,
  http,
  parseEventLogs,
  type Abi,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createNonceManager, jsonRpc } from "viem/nonce";
import { loadArtifact, payPerUseAbi } from "../shared/artifacts.ts";
import { chainFor } from "../shared/deployment.ts";
import type { ReadingDomain } from "../shared/eip712.ts";
import type { RejectReason } from "../shared/protocol.ts";
import { onChainDeviceKey, type DeviceSigningKey, type KeyType } from "../shared/signatures.ts";
import { DeviceClient } from "./client.ts";
import { generateDeviceKey } from "./keys.ts";

/** A scripted offline period: machine `machine` (0-based) is offline from `from` to `to` seconds. */
export interface OfflinePeriod {
  machine: number;
  from: number;
  to: number;
}

export interface SimulateOptions {
  /** Number of machines. */
  machines: number;
  /** How long the machines meter, in seconds. */
  seconds: number;
  /** Mean usage per machine, units per second (default 10). */
  rate?: number;
  /** Spread of the machines' rates around `rate`, 0..1 (default 0.5; 0 = every machine exactly `rate`). */
  rateSpread?: number;
  /** Key types of the fleet: both alternately (default), or one. */
  keyTypes?: "mixed" | KeyType;
  /** Share of machines that go offline once, at a random moment (default 0.2). Ignored with `offline`. */
  offlineFraction?: number;
  /** Length of each random offline period in seconds (default 10). */
  offlineSeconds?: number;
  /** Scripted offline periods; when given, no random ones are drawn. */
  offline?: OfflinePeriod[];
  /** Seed of the random rates and offline periods (default: drawn, and reported). */
  seed?: number;
  /** How often each machine re-signs and publishes its newest unsettled reading, ms (default 5000). */
  publishIntervalMs?: number;
  /** How often the machines' meters advance, ms (default 1000). */
  tickMs?: number;
  /** How long to wait after metering for every machine's usage to be settled, s (default 180). */
  settleTimeoutS?: number;
  /** Persist every meter in this directory; a machine coming back from offline then restarts from its file. */
  bufferDir?: string;
  /** Start the chain, the contracts and the oracle with its embedded broker in this process. */
  embedded?: boolean;
  /** Readings per oracle transaction in embedded mode (default 250). */
  batchMaxReadings?: number;
  rpcUrl?: string;
  brokerUrl?: string;
  brokerUsername?: string;
  brokerPassword?: string;
  /** MQTT protocol of the machines: 5 (default) or 4; always 4 on the embedded broker. */
  mqttVersion?: 4 | 5;
  /** The PayPerUse contract. */
  contract?: Address;
  /** The ERC-20 the tariffs are priced in. */
  token?: Address;
  /** Registers the machines and publishes their tariffs; it becomes their owner. */
  ownerKey?: Hex;
  /** Opens and funds the agreements. */
  lesseeKey?: Hex;
  /** May mint the token to the lessee (a local token); without it the lessee must hold enough. */
  mintKey?: Hex;
  /** Deposit per agreement in the token's smallest unit (default: three times the expected cost). */
  deposit?: bigint;
  /** Progress lines (stderr in the command line). */
  onProgress?: (line: string) => void;
  /** Called after the comparison, before an embedded system is stopped (tests look at the chain here). */
  beforeStop?: (system: SimulatedSystem) => Promise<void>;
}

export interface SimulatedSystem {
  rpcUrl: string;
  payPerUse: Address;
  token: Address;
  machines: MachineResult[];
}

export interface MachineResult {
  index: number;
  keyType: KeyType;
  machineId: Hex;
  agreementId: bigint;
  /** Units per second this machine used while serving. */
  rate: number;
  offline: { from: number; to: number }[];
  /** Restarts from the buffer file (only with `bufferDir`). */
  restarts: number;
  /** Units the machine measured (accepted by its meter). */
  measured: bigint;
  /** The highest cumulative units a `settled` status confirmed to the machine. */
  confirmed: bigint;
  /** The agreement's meter on-chain. */
  chainUnits: bigint;
  /** What the chain charged the agreement. */
  charged: bigint;
  /** The tariff's price for the measured units (the contract's `costOf`). */
  expectedCharge: bigint;
  /** "serving", or the stop state the oracle sent (exhausted, suspended, ended, cap_reached). */
  state: string;
}

export interface SimulateResult {
  seed: number;
  seconds: number;
  machines: MachineResult[];
  totals: { measured: bigint; chainUnits: bigint; charged: bigint; expectedCharge: bigint };
  /** Machines whose chain meter or charge differs from their measured usage. */
  mismatches: MachineResult[];
  ok: boolean;
  /** UsageRecorded events for the fleet's agreements, and the transactions that carried them. */
  usageRecords?: number;
  transactions?: number;
  /** Refusals the machines were told about, by reason (re-sent readings come back as `replay`). */
  refusals: Partial<Record<RejectReason, number>>;
  /** Seconds from the end of metering until every machine had a settled status (or the timeout). */
  settleSeconds: number;
  /** Machines without a settled status for their final reading when the wait ended. */
  unconfirmed: number;
  /** Seconds the chain's clock ran ahead of this one after registration. */
  clockOffset: number;
  token: { address: Address; symbol: string; decimals: number };
  payPerUse: Address;
  /** The embedded oracle's counters (embedded mode only). */
  oracle?: { received: number; accepted: number; rejected: number; batches: number };
}

/** Small, fast, seedable PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses a scripted offline period "MACHINE:FROM-TO" (seconds), e.g. "3:10-25". */
export function parseOfflinePeriod(spec: string): OfflinePeriod {
  const match = /^(\d+):(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(spec.trim());
  if (!match) throw new Error(`offline period "${spec}" is not MACHINE:FROM-TO, e.g. 3:10-25`);
  const period = { machine: Number(match[1]), from: Number(match[2]), to: Number(match[3]) };
  if (period.to <= period.from) throw new Error(`offline period "${spec}" ends before it starts`);
  return period;
}

/** The machines whose chain meter or charge differs from what they measured. */
export function findMismatches(machines: readonly MachineResult[]): MachineResult[] {
  return machines.filter((m) => m.chainUnits !== m.measured || m.charged !== m.expectedCharge);
}

const TARIFF = { unit: "kWh", price: 250_000n, unitScale: 1_000n } as const;
const ZERO32 = `0x${"00".repeat(32)}` as Hex;

interface SimMachine {
  index: number;
  keyType: KeyType;
  key: DeviceSigningKey;
  machineId: Hex;
  agreementId: bigint;
  rate: number;
  carry: number;
  offline: { from: number; to: number }[];
  measured: bigint;
  confirmed: bigint;
  state: string;
  client: DeviceClient;
  online: boolean;
  restarts: number;
  transition?: Promise<void>;
}

function requireOption<T>(value: T | undefined, name: string): T {
  if (value === undefined || value === "")
    throw new Error(`${name} is required without --embedded`);
  return value;
}

async function receiptOf(client: PublicClient, hash: Hex) {
  for (;;) {
    try {
      return await client.getTransactionReceipt({ hash });
    } catch (error) {
      if ((error as Error).name !== "TransactionReceiptNotFoundError") throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** Runs calls in order with at most `limit` in flight. */
async function inChunks<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += limit) {
    out.push(...(await Promise.all(items.slice(i, i + limit).map((item, j) => fn(item, i + j)))));
  }
  return out;
}

/**
 * Sends one kind of transaction for many machines from one account: nonces handed out locally,
 * gas and fees estimated once for the kind, each transaction sent without waiting for the previous
 * one to be mined, then all receipts collected. Thousands of registrations take seconds this way.
 */
async function sendMany(
  ctx: { client: PublicClient; chain: Chain; rpcUrl: string },
  key: Hex,
  to: Address,
  abi: Abi,
  functionName: string,
  argsList: unknown[][],
  progress: (done: number) => void,
) {
  const account = privateKeyToAccount(key, {
    nonceManager: createNonceManager({ source: jsonRpc() }),
  });
  const wallet = createWalletClient({ account, chain: ctx.chain, transport: http(ctx.rpcUrl) });
  const fees = await ctx.client.estimateFeesPerGas();
  const gasByShape = new Map<string, bigint>();
  const hashes: Hex[] = [];
  for (const [i, args] of argsList.entries()) {
    // Gas depends on the shape of the arguments (a P-256 key stores one word more): estimate once per shape.
    const shape = JSON.stringify(args, (_k, v: unknown) =>
      typeof v === "object" && v !== null
        ? v
        : typeof v === "string" && /^0x0{64}$/.test(v)
          ? "zero"
          : typeof v,
    );
    let gas = gasByShape.get(shape);
    if (gas === undefined) {
      gas =
        ((await ctx.client.estimateContractGas({
          address: to,
          abi,
          functionName,
          args,
          account,
        } as never)) *
          13n) /
        10n;
      gasByShape.set(shape, gas);
    }
    hashes.push(
      await wallet.writeContract({
        address: to,
        abi,
        functionName,
        args,
        gas,
        maxFeePerGas: fees.maxFeePerGas! * 2n,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      } as never),
    );
    if ((i + 1) % 100 === 0) progress(i + 1);
  }
  const receipts = await inChunks(hashes, 100, (hash) => receiptOf(ctx.client, hash));
  receipts.forEach((receipt, i) => {
    if (receipt.status !== "success")
      throw new Error(`${functionName} for machine ${i} reverted in ${receipt.transactionHash}`);
  });
  progress(argsList.length);
  return receipts;
}

function once(client: DeviceClient, timeoutMs: number): Promise<boolean> {
  if (client.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.off("connected", onConnected);
      resolve(false);
    }, timeoutMs);
    const onConnected = () => {
      clearTimeout(timer);
      resolve(true);
    };
    client.once("connected", onConnected);
  });
}

function drawSchedule(
  options: SimulateOptions,
  random: () => number,
): { rates: number[]; offline: { from: number; to: number }[][] } {
  const n = options.machines;
  const rate = options.rate ?? 10;
  const spread = options.rateSpread ?? 0.5;
  const rates = Array.from({ length: n }, () =>
    Math.max(0, rate * (1 + spread * (2 * random() - 1))),
  );
  const offline: { from: number; to: number }[][] = Array.from({ length: n }, () => []);
  // Offline periods end before metering does, so that every machine is back to report its total.
  const clamp = (period: { from: number; to: number }) => ({
    from: Math.max(0, period.from),
    to: Math.min(options.seconds - 1, period.to),
  });
  if (options.offline) {
    for (const period of options.offline) {
      if (period.machine >= n)
        throw new Error(`offline period for machine ${period.machine}: only ${n} machines`);
      const clamped = clamp(period);
      if (clamped.to > clamped.from) offline[period.machine]!.push(clamped);
    }
  } else {
    const fraction = options.offlineFraction ?? 0.2;
    const length = Math.min(options.offlineSeconds ?? 10, Math.max(0, options.seconds - 2));
    for (let i = 0; i < n; i++) {
      if (random() >= fraction || length <= 0) continue;
      const from = random() * Math.max(0, options.seconds - 1 - length);
      offline[i]!.push(clamp({ from, to: from + length }));
    }
  }
  return { rates, offline };
}

/** Runs the fleet, waits for settlement and compares each machine's usage with the chain. */
export async function simulate(options: SimulateOptions): Promise<SimulateResult> {
  if (!Number.isInteger(options.machines) || options.machines < 1)
    throw new Error("machines must be a positive integer");
  if (!(options.seconds > 0)) throw new Error("seconds must be positive");
  const progress = options.onProgress ?? (() => {});
  const seed = options.seed ?? randomBytes(4).readUInt32BE(0);
  const random = seededRandom(seed);
  const schedule = drawSchedule(options, random);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    stops.length = 0;
  };

  try {
    let rpcUrl: string;
    let brokerUrl: string;
    let payPerUse: Address;
    let token: Address;
    let ownerKey: Hex;
    let lesseeKey: Hex;
    let mintKey: Hex | undefined;
    let mqttVersion: 4 | 5 = options.mqttVersion ?? 5;
    let oracleStats: (() => SimulateResult["oracle"]) | undefined;

    if (options.embedded) {
      const { startEmbeddedDeployment } = await import("../shared/devchain.ts");
      const { createOracle } = await import("../oracle/service.ts");
      const { loadOracleConfig } = await import("../oracle/config.ts");
      // Blocks on the wall clock: registering a large fleet mines thousands of blocks in a minute,
      // which would otherwise put the chain's clock (and the agreements' start) far ahead of the machines'.
      const { chain, deployment, roles } = await startEmbeddedDeployment({
        wallClockBlocks: true,
        onProgress: progress,
      });
      stops.push(() => chain.stop());
      const { deployer, owner, lessee, oracleSigner } = roles;
      const oracle = createOracle(
        loadOracleConfig({
          RPC_URL: chain.rpcUrl,
          CONTRACT_ADDRESS: deployment.payPerUse,
          ORACLE_PRIVATE_KEY: oracleSigner.privateKey,
          DATA_DIR: "memory",
          HEALTH_PORT: "-1",
          BATCH_INTERVAL_MS: "1000",
          BATCH_MAX_READINGS: String(options.batchMaxReadings ?? 250),
          CHAIN_POLL_MS: "1000",
          LOG_LEVEL: process.env.LOG_LEVEL ?? "error",
        }),
        { logFd: 2 },
      );
      await oracle.start();
      stops.push(() => oracle.stop());
      progress(`oracle listening on the embedded broker ${oracle.brokerUrl}`);
      oracleStats = () => ({
        received: oracle.stats.received,
        accepted: oracle.stats.accepted,
        rejected: Object.values(oracle.stats.rejected).reduce((sum, n) => sum + n, 0),
        batches: oracle.stats.batches,
      });
      rpcUrl = chain.rpcUrl;
      brokerUrl = oracle.brokerUrl;
      payPerUse = deployment.payPerUse;
      token = deployment.token;
      ownerKey = owner.privateKey;
      lesseeKey = lessee.privateKey;
      mintKey = deployer.privateKey;
      // The embedded broker speaks MQTT 3.1.1.
      mqttVersion = 4;
    } else {
      rpcUrl = requireOption(options.rpcUrl, "--rpc");
      brokerUrl = requireOption(options.brokerUrl, "--broker");
      payPerUse = requireOption(options.contract, "--contract");
      token = requireOption(options.token, "--token");
      ownerKey = requireOption(options.ownerKey, "--owner-key");
      lesseeKey = requireOption(options.lesseeKey, "--lessee-key");
      mintKey = options.mintKey;
    }

    const chainDef = await chainFor(rpcUrl);
    const client = createPublicClient({
      chain: chainDef,
      transport: http(rpcUrl, { batch: { batchSize: 100 } }),
      pollingInterval: 250,
    }) as PublicClient;
    const ctx = { client, chain: chainDef, rpcUrl };
    const abi = payPerUseAbi();
    const tokenAbi = loadArtifact("MockEURC").abi;
    const owner = privateKeyToAccount(ownerKey);
    const lessee = privateKeyToAccount(lesseeKey);
    const domain: ReadingDomain = { chainId: chainDef.id, verifyingContract: payPerUse };
    const [symbol, decimals] = await Promise.all([
      client
        .readContract({ address: token, abi: erc20Abi, functionName: "symbol" })
        .catch(() => "tokens"),
      client
        .readContract({ address: token, abi: erc20Abi, functionName: "decimals" })
        .catch(() => 0),
    ]);

    // Funding: enough for three times the most any machine can use.
    const n = options.machines;
    const maxRate = Math.max(1, ...schedule.rates);
    const maxUnits = BigInt(Math.ceil(maxRate * (options.seconds + 5) * 1.2)) + 100n;
    const deposit =
      options.deposit ??
      (() => {
        const cost = (maxUnits * TARIFF.price) / TARIFF.unitScale;
        return cost * 3n > 1_000_000n ? cost * 3n : 1_000_000n;
      })();
    const needed = deposit * BigInt(n);
    if (mintKey) {
      await sendMany(ctx, mintKey, token, tokenAbi, "mint", [[lessee.address, needed]], () => {});
    }
    const balance = await client.readContract({
      address: token,
      abi: erc20Abi,
      functionName: "balanceOf",
      args: [lessee.address],
    });
    if (balance < needed) {
      throw new Error(
        `the lessee ${lessee.address} holds ${balance} of ${token}, the agreements need ${needed} (${n} × ${deposit}); fund it or pass --mint-key`,
      );
    }
    const allowance = await client.readContract({
      address: token,
      abi: erc20Abi,
      functionName: "allowance",
      args: [lessee.address, payPerUse],
    });
    if (allowance < needed) {
      await sendMany(
        ctx,
        lesseeKey,
        token,
        erc20Abi,
        "approve",
        [[payPerUse, 2n ** 255n]],
        () => {},
      );
    }

    // Registration: machines, tariffs, agreements, each kind sent as one pipelined run.
    const keyTypes = options.keyTypes ?? "mixed";
    const specs = Array.from({ length: n }, (_, index) => {
      const keyType: KeyType =
        keyTypes === "mixed" ? (index % 2 === 0 ? "secp256k1" : "p256") : keyTypes;
      return {
        index,
        keyType,
        key: generateDeviceKey(keyType),
        machineId: `0x${randomBytes(32).toString("hex")}` as Hex,
      };
    });
    const perHour = BigInt(Math.ceil(maxRate * 3600 * 10));
    const step = (what: string) => (done: number) => progress(`${what} ${done}/${n}`);
    const t0 = Date.now();
    await sendMany(
      ctx,
      ownerKey,
      payPerUse,
      abi,
      "registerMachine",
      specs.map((s) => [s.machineId, owner.address, 0, perHour, onChainDeviceKey(s.key)]),
      step("machines registered"),
    );
    await sendMany(
      ctx,
      ownerKey,
      payPerUse,
      abi,
      "publishTariff",
      specs.map((s) => [
        s.machineId,
        {
          token,
          unit: TARIFF.unit,
          price: TARIFF.price,
          unitScale: TARIFF.unitScale,
          tiers: [],
          minimumCharge: 0n,
          baseFee: 0n,
          period: 0n,
        },
      ]),
      step("tariffs published"),
    );
    const head = await client.getBlock();
    const openReceipts = await sendMany(
      ctx,
      lesseeKey,
      payPerUse,
      abi,
      "openAgreement",
      specs.map((s) => [
        {
          machineId: s.machineId,
          tariffVersion: 1,
          deposit,
          endTime: head.timestamp + 30n * 86_400n,
          spendingCap: 0n,
          capPeriod: 0n,
          lowBalanceThreshold: 0n,
          disputeWindow: 86_400n,
          mandateRef: ZERO32,
        },
      ]),
      step("agreements opened"),
    );
    const firstBlock = openReceipts[0]!.blockNumber;
    const agreementIds = openReceipts.map((receipt) => {
      const [opened] = parseEventLogs({
        abi,
        logs: receipt.logs,
        eventName: "AgreementOpened",
      }) as unknown as { args: { agreementId: bigint } }[];
      return opened!.args.agreementId;
    });
    progress(
      `${n} machines registered with agreements in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // The machines read their clocks; readings may not precede their agreement's start on the chain.
    const after = await client.getBlock();
    const clockOffset = Math.max(0, Number(after.timestamp) - Math.floor(Date.now() / 1000));
    if (clockOffset > 240) {
      progress(
        `warning: the chain's clock runs ${clockOffset} s ahead of this one; an oracle refuses readings more than FUTURE_TOLERANCE_S (300 s by default) ahead of its clock`,
      );
    }
    const now = () => Math.floor(Date.now() / 1000) + clockOffset;
    if (options.bufferDir) mkdirSync(options.bufferDir, { recursive: true });
    const refusals: Partial<Record<RejectReason, number>> = {};

    const machines: SimMachine[] = [];
    const newClient = (m: Omit<SimMachine, "client"> | SimMachine): DeviceClient => {
      const device = new DeviceClient({
        machineId: m.machineId,
        key: m.key,
        domain,
        bufferPath: options.bufferDir ? join(options.bufferDir, `${m.machineId}.json`) : undefined,
        now,
        brokerUrl,
        username: options.brokerUsername,
        password: options.brokerPassword,
        protocolVersion: mqttVersion,
        publishIntervalMs: options.publishIntervalMs ?? 5000,
        reconnectPeriodMs: 1000,
      });
      device.on("settled", (agreementId, units) => {
        const sim = machines[m.index];
        if (sim && agreementId === sim.agreementId && units > sim.confirmed) sim.confirmed = units;
      });
      device.on("stopped", (_agreementId, state) => {
        const sim = machines[m.index];
        if (sim) sim.state = state;
      });
      device.on("rejected", (status) => {
        if (status.reason) refusals[status.reason] = (refusals[status.reason] ?? 0) + 1;
      });
      return device;
    };
    for (const s of specs) {
      const base = {
        ...s,
        agreementId: agreementIds[s.index]!,
        rate: schedule.rates[s.index]!,
        carry: 0,
        offline: schedule.offline[s.index]!,
        measured: 0n,
        confirmed: 0n,
        state: "serving",
        online: true,
        restarts: 0,
      };
      machines.push({ ...base, client: newClient(base) });
    }
    stops.push(async () => {
      await Promise.all(machines.map((m) => m.transition));
      await inChunks(machines, 100, (m) => m.client.stop());
    });

    // Connect in groups, so that a large fleet does not storm the broker.
    for (let i = 0; i < n; i += 50) {
      const group = machines.slice(i, i + 50);
      for (const m of group) m.client.start();
      const connected = await Promise.all(group.map((m) => once(m.client, 30_000)));
      const failed = connected.indexOf(false);
      if (failed >= 0)
        throw new Error(`machine ${i + failed} could not connect to the broker ${brokerUrl}`);
      progress(`machines connected ${Math.min(i + 50, n)}/${n}`);
    }

    // Metering.
    const offlineCount = machines.filter((m) => m.offline.length > 0).length;
    progress(
      `metering for ${options.seconds} s (seed ${seed}; ${offlineCount} machines go offline)`,
    );
    const started = Date.now();
    let last = started;
    const goOffline = (m: SimMachine) => {
      m.online = false;
      m.transition = m.client.stop().finally(() => (m.transition = undefined));
    };
    const goOnline = (m: SimMachine) => {
      m.online = true;
      m.transition = (async () => {
        if (options.bufferDir) {
          // A machine back from an outage restarts from its files, as after a power cut.
          m.client = newClient(m);
          m.restarts++;
        }
        m.client.start();
      })().finally(() => (m.transition = undefined));
    };
    const tick = () => {
      const nowMs = Date.now();
      const dt = (nowMs - last) / 1000;
      last = nowMs;
      const elapsed = (nowMs - started) / 1000;
      for (const m of machines) {
        const offline = m.offline.some((p) => elapsed >= p.from && elapsed < p.to);
        if (!m.transition) {
          if (offline && m.online) goOffline(m);
          else if (!offline && !m.online) goOnline(m);
        }
        if (m.state !== "serving") continue;
        m.carry += m.rate * dt;
        const units = Math.floor(m.carry);
        if (units <= 0) continue;
        m.carry -= units;
        try {
          m.client.record(m.agreementId, BigInt(units));
          m.measured += BigInt(units);
        } catch {
          // The oracle said stop (exhausted, suspended, ended, over the cap): the machine stops serving.
        }
      }
    };
    const report = () => {
      const online = machines.filter((m) => m.online).length;
      const measured = machines.reduce((sum, m) => sum + m.measured, 0n);
      const confirmed = machines.reduce((sum, m) => sum + m.confirmed, 0n);
      return `${online} online, ${n - online} offline, ${measured} units measured, ${confirmed} confirmed settled`;
    };
    await new Promise<void>((resolve) => {
      const meter = setInterval(() => {
        tick();
        if (Date.now() - started >= options.seconds * 1000) {
          clearInterval(meter);
          clearInterval(status);
          resolve();
        }
      }, options.tickMs ?? 1000);
      const status = setInterval(
        () => progress(`t=${Math.round((Date.now() - started) / 1000)} s: ${report()}`),
        5000,
      );
    });

    // Settlement: everyone online, final readings signed and published, wait for settled statuses.
    await Promise.all(machines.map((m) => m.transition));
    for (const m of machines) if (!m.online) goOnline(m);
    await Promise.all(machines.map((m) => m.transition));
    await Promise.all(machines.map((m) => once(m.client, 30_000)));
    for (const m of machines) m.client.flush();
    progress(`metering done: ${report()}; waiting for settlement`);
    const settleStart = Date.now();
    const timeoutMs = (options.settleTimeoutS ?? 180) * 1000;
    const unconfirmed = () =>
      machines.filter((m) => m.client.meter.pending(m.agreementId) !== undefined).length;
    let lastReport = Date.now();
    while (unconfirmed() > 0 && Date.now() - settleStart < timeoutMs) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (Date.now() - lastReport >= 5000) {
        lastReport = Date.now();
        progress(`settling: ${n - unconfirmed()}/${n} machines confirmed`);
      }
    }
    const settleSeconds = (Date.now() - settleStart) / 1000;
    const stillUnconfirmed = unconfirmed();
    progress(
      stillUnconfirmed === 0
        ? `all ${n} machines confirmed settled after ${settleSeconds.toFixed(1)} s`
        : `${stillUnconfirmed} machines still unconfirmed after ${settleSeconds.toFixed(0)} s`,
    );

    // The comparison, from the chain.
    const results: MachineResult[] = await inChunks(machines, 100, async (m) => {
      const [agreement, expectedCharge] = await Promise.all([
        client.readContract({
          address: payPerUse,
          abi,
          functionName: "getAgreement",
          args: [m.agreementId],
        }) as Promise<{ cumulativeUnits: bigint; totalCharged: bigint }>,
        client.readContract({
          address: payPerUse,
          abi,
          functionName: "costOf",
          args: [m.machineId, 1, m.measured],
        }) as Promise<bigint>,
      ]);
      return {
        index: m.index,
        keyType: m.keyType,
        machineId: m.machineId,
        agreementId: m.agreementId,
        rate: m.rate,
        offline: m.offline,
        restarts: m.restarts,
        measured: m.measured,
        confirmed: m.confirmed,
        chainUnits: agreement.cumulativeUnits,
        charged: agreement.totalCharged,
        expectedCharge,
        state: m.state,
      };
    });
    let usageRecords: number | undefined;
    let transactions: number | undefined;
    try {
      const ours = new Set(agreementIds);
      const logs = parseEventLogs({
        abi,
        eventName: "UsageRecorded",
        logs: await client.getLogs({ address: payPerUse, fromBlock: firstBlock }),
      }) as unknown as { args: { agreementId: bigint }; transactionHash: Hex }[];
      const mine = logs.filter((log) => ours.has(log.args.agreementId));
      usageRecords = mine.length;
      transactions = new Set(mine.map((log) => log.transactionHash)).size;
    } catch {
      // Some nodes limit log queries; the comparison above does not need them.
    }
    const mismatches = findMismatches(results);
    const sum = (pick: (m: MachineResult) => bigint) =>
      results.reduce((total, m) => total + pick(m), 0n);
    const result: SimulateResult = {
      seed,
      seconds: options.seconds,
      machines: results,
      totals: {
        measured: sum((m) => m.measured),
        chainUnits: sum((m) => m.chainUnits),
        charged: sum((m) => m.charged),
        expectedCharge: sum((m) => m.expectedCharge),
      },
      mismatches,
      ok: mismatches.length === 0,
      usageRecords,
      transactions,
      refusals,
      settleSeconds,
      unconfirmed: stillUnconfirmed,
      clockOffset,
      token: { address: token, symbol: String(symbol), decimals: Number(decimals) },
      payPerUse,
      oracle: oracleStats?.(),
    };
    await options.beforeStop?.({ rpcUrl, payPerUse, token, machines: results });
    return result;
  } finally {
    await stopAll();
  }
}

function formatAmount(value: bigint, decimals: number): string {
  if (decimals === 0) return value.toLocaleString("en-US");
  const base = 10n ** BigInt(decimals);
  const whole = (value / base).toLocaleString("en-US");
  return `${whole}.${(value % base).toString().padStart(decimals, "0")}`;
}

/** The human summary printed at the end of `ppu device simulate`. */
export function formatSummary(result: SimulateResult): string {
  const { machines, totals, token } = result;
  const count = (type: KeyType) => machines.filter((m) => m.keyType === type).length;
  const offline = machines.filter((m) => m.offline.length > 0);
  const restarts = machines.reduce((sum, m) => sum + m.restarts, 0);
  const amount = (value: bigint) => `${formatAmount(value, token.decimals)} ${token.symbol}`;
  const refusals = Object.entries(result.refusals)
    .map(([reason, times]) => `${reason} ${times}`)
    .join(", ");
  const lines = [
    "Simulation summary",
    `  machines           ${machines.length} (${count("secp256k1")} secp256k1, ${count("p256")} P-256), metering ${result.seconds} s, seed ${result.seed}`,
    `  offline periods    ${offline.length} machines${restarts > 0 ? `, ${restarts} restarts from buffer files` : ""}`,
    `  contract           ${result.payPerUse}`,
    `  measured           ${totals.measured.toLocaleString("en-US")} units`,
    `  on-chain meters    ${totals.chainUnits.toLocaleString("en-US")} units`,
    `  charged            ${amount(totals.charged)} (tariff for the measured units: ${amount(totals.expectedCharge)})`,
    ...(result.usageRecords !== undefined
      ? [
          `  submissions        ${result.usageRecords.toLocaleString("en-US")} usage records in ${result.transactions?.toLocaleString("en-US")} transactions`,
        ]
      : []),
    `  settlement         ${result.unconfirmed === 0 ? "all machines confirmed" : `${result.unconfirmed} machines unconfirmed`} ${result.settleSeconds.toFixed(1)} s after metering ended`,
    ...(result.oracle
      ? [
          `  oracle             ${result.oracle.received.toLocaleString("en-US")} messages, ${result.oracle.accepted.toLocaleString("en-US")} accepted, ${result.oracle.rejected.toLocaleString("en-US")} refused, ${result.oracle.batches} batches`,
        ]
      : []),
    ...(refusals
      ? [
          `  refusals seen      ${refusals}${result.refusals.replay ? " (replay: a reading re-sent while its settlement was pending)" : ""}`,
        ]
      : []),
    `  mismatches         ${result.mismatches.length}`,
  ];
  for (const m of result.mismatches.slice(0, 20)) {
    lines.push(
      `    machine ${m.index} (${m.keyType}, ${m.machineId.slice(0, 10)}…, agreement ${m.agreementId}): measured ${m.measured}, chain ${m.chainUnits}; charged ${m.charged}, tariff ${m.expectedCharge}${m.state === "serving" ? "" : `; ${m.state}`}`,
    );
  }
  if (result.mismatches.length > 20) lines.push(`    … and ${result.mismatches.length - 20} more`);
  lines.push(
    result.ok
      ? "  result             OK: the chain charged exactly what every machine measured"
      : "  result             MISMATCH: the chain differs from what the machines measured",
  );
  return lines.join("\n");
}
