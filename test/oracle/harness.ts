/**
 * A real chain (the in-process Hardhat network served as JSON-RPC), the deployed contracts, machines of
 * both key types and both trust modes with open agreements, and an MQTT client playing the machines.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import {
  createPublicClient,
  createWalletClient,
  http,
  parseEventLogs,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { loadOracleConfig, type OracleConfig } from "../../services/oracle/config.ts";
import { loadArtifact, payPerUseAbi } from "../../services/shared/artifacts.ts";
import { openDatabase } from "../../services/shared/db.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import { startEmbeddedDeployment, type DevChain } from "../../services/shared/devchain.ts";
import type { ReadingDomain } from "../../services/shared/eip712.ts";
import {
  PROTOCOL_VERSION,
  readingsTopic,
  statusTopic,
  type StatusMessage,
} from "../../services/shared/protocol.ts";
import {
  onChainDeviceKey,
  signReading,
  type DeviceSigningKey,
} from "../../services/shared/signatures.ts";

export interface TestMachine {
  machineId: Hex;
  key?: DeviceSigningKey;
  agreementId: bigint;
}

export interface Harness {
  chain: DevChain;
  client: PublicClient;
  abi: Abi;
  payPerUse: Address;
  /** The EURC-like token (6 decimals) the agreements settle in; the deployer may mint it. */
  token: Address;
  domain: ReadingDomain;
  oracleKey: Hex;
  k1: TestMachine;
  p256: TestMachine;
  attested: TestMachine;
  /** A machine whose agreement the others may try to use. */
  other: TestMachine;
  /** Extra device-signed machines, one per key given to startHarness, without a rate limit. */
  machines: TestMachine[];
  owner: ReturnType<typeof privateKeyToAccount>;
  /** Seconds the chain's clock runs ahead of this one (each setup transaction mines a block). */
  clockOffset: number;
  write(functionName: string, args: unknown[], from?: Hex): Promise<void>;
  agreement(id: bigint): Promise<{ cumulativeUnits: bigint; totalCharged: bigint; status: number }>;
  /** The transactions whose UsageRecorded charged this agreement, oldest first. */
  charges(agreementId: bigint): Promise<Hex[]>;
  /** A JSON-RPC call to the chain (evm_mine, evm_setAutomine…). */
  rpc(method: string, params?: unknown[]): Promise<unknown>;
  stop(): Promise<void>;
}

const ZERO32 = `0x${"00".repeat(32)}` as Hex;

export async function startHarness(extraKeys: DeviceSigningKey[] = []): Promise<Harness> {
  const { chain, deployment, roles } = await startEmbeddedDeployment();
  const { deployer, owner, lessee, oracleSigner: oracle } = roles;
  const chainDef = await chainFor(chain.rpcUrl);
  const client = createPublicClient({
    chain: chainDef,
    transport: http(chain.rpcUrl),
  }) as PublicClient;
  const abi = payPerUseAbi();
  const tokenAbi = loadArtifact("MockEURC").abi;

  async function send(to: Address, abiOf: Abi, functionName: string, args: unknown[], key: Hex) {
    const wallet = createWalletClient({
      account: privateKeyToAccount(key),
      chain: chainDef,
      transport: http(chain.rpcUrl),
    });
    const hash = await wallet.writeContract({
      address: to,
      abi: abiOf,
      functionName,
      args,
    } as never);
    const receipt = await client.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`${functionName} reverted`);
    return receipt;
  }

  await send(deployment.token, tokenAbi, "mint", [lessee.address, 10n ** 15n], deployer.privateKey);
  await send(
    deployment.token,
    tokenAbi,
    "approve",
    [deployment.payPerUse, 2n ** 255n],
    lessee.privateKey,
  );

  async function machine(
    trustMode: 0 | 1,
    key?: DeviceSigningKey,
    maxUnitsPerHour = 0n,
  ): Promise<TestMachine> {
    const machineId = `0x${randomBytes(32).toString("hex")}` as Hex;
    const deviceKey = onChainDeviceKey(key);
    await send(
      deployment.payPerUse,
      abi,
      "registerMachine",
      [machineId, owner.address, trustMode, maxUnitsPerHour, deviceKey],
      owner.privateKey,
    );
    await send(
      deployment.payPerUse,
      abi,
      "publishTariff",
      [
        machineId,
        {
          token: deployment.token,
          unit: "kWh",
          price: 250_000n,
          unitScale: 1_000n,
          tiers: [],
          minimumCharge: 0n,
          baseFee: 0n,
          period: 0n,
        },
      ],
      owner.privateKey,
    );
    const block = await client.getBlock();
    const receipt = await send(
      deployment.payPerUse,
      abi,
      "openAgreement",
      [
        {
          machineId,
          tariffVersion: 1,
          deposit: 1_000_000_000n,
          endTime: block.timestamp + 30n * 86_400n,
          spendingCap: 0n,
          capPeriod: 0n,
          lowBalanceThreshold: 0n,
          disputeWindow: 86_400n,
          mandateRef: ZERO32,
        },
      ],
      lessee.privateKey,
    );
    const [opened] = parseEventLogs({
      abi,
      logs: receipt.logs,
      eventName: "AgreementOpened",
    }) as unknown as { args: { agreementId: bigint } }[];
    return { machineId, key, agreementId: opened!.args.agreementId };
  }

  const k1 = await machine(
    0,
    { keyType: "secp256k1", privateKey: `0x${randomBytes(32).toString("hex")}` as Hex },
    3_600_000n,
  );
  const p256 = await machine(0, {
    keyType: "p256",
    privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey,
  });
  const attested = await machine(1);
  const other = await machine(0, {
    keyType: "secp256k1",
    privateKey: `0x${randomBytes(32).toString("hex")}` as Hex,
  });
  const machines: TestMachine[] = [];
  for (const key of extraKeys) machines.push(await machine(0, key, 10n ** 15n));

  const head = await client.getBlock();
  const clockOffset = Math.max(0, Number(head.timestamp) - Math.floor(Date.now() / 1000));

  return {
    clockOffset,
    chain,
    client,
    abi,
    payPerUse: deployment.payPerUse,
    token: deployment.token,
    domain: { chainId: chainDef.id, verifyingContract: deployment.payPerUse },
    oracleKey: oracle.privateKey,
    k1,
    p256,
    attested,
    other,
    machines,
    owner: privateKeyToAccount(owner.privateKey),
    async write(functionName, args, from = owner.privateKey) {
      await send(deployment.payPerUse, abi, functionName, args, from);
    },
    async agreement(id) {
      const a = (await client.readContract({
        address: deployment.payPerUse,
        abi,
        functionName: "getAgreement",
        args: [id],
      })) as {
        cumulativeUnits: bigint;
        totalCharged: bigint;
        status: number;
      };
      return {
        cumulativeUnits: a.cumulativeUnits,
        totalCharged: a.totalCharged,
        status: Number(a.status),
      };
    },
    async charges(agreementId) {
      return parseEventLogs({
        abi,
        eventName: "UsageRecorded",
        logs: await client.getLogs({ address: deployment.payPerUse, fromBlock: 0n }),
      })
        .filter((log) => (log.args as { agreementId: bigint }).agreementId === agreementId)
        .map((log) => log.transactionHash);
    },
    rpc: (method, params = []) => chain.provider.request({ method, params }),
    stop: () => chain.stop(),
  };
}

/** State and transaction of each journal row of an agreement, in an oracle's stopped journal. */
export async function journalRows(
  dataDir: string,
  agreementId: bigint,
): Promise<{ state: string; tx_hash: string | null }[]> {
  const db = await openDatabase({ dataDir });
  try {
    const { rows } = await db.query<{ state: string; tx_hash: string | null }>(
      "SELECT state, tx_hash FROM oracle_readings WHERE agreement_id = $1 ORDER BY id",
      [agreementId.toString()],
    );
    return rows;
  } finally {
    await db.close();
  }
}

/**
 * The oracle's settings for a test on this harness: its chain, contract and key, the embedded broker,
 * a journal in memory, short intervals, no logs; `overrides` change or add settings.
 */
export function testOracleConfig(
  h: Harness,
  overrides: Record<string, string | undefined> = {},
): OracleConfig {
  return loadOracleConfig({
    RPC_URL: h.chain.rpcUrl,
    CONTRACT_ADDRESS: h.payPerUse,
    ORACLE_PRIVATE_KEY: h.oracleKey,
    MQTT_SHARE_GROUP: `test-${randomBytes(4).toString("hex")}`,
    DATA_DIR: "memory",
    HEALTH_PORT: "0",
    BATCH_INTERVAL_MS: "200",
    CHAIN_POLL_MS: "200",
    LOG_LEVEL: "silent",
    ...overrides,
  });
}

/** The JSON a machine publishes for a reading. */
export function readingMessage(
  h: Harness,
  m: TestMachine,
  cumulativeUnits: bigint,
  timestamp?: number,
) {
  const ts = BigInt(timestamp ?? Math.floor(Date.now() / 1000) + h.clockOffset);
  const reading = {
    agreementId: m.agreementId,
    machineId: m.machineId,
    cumulativeUnits,
    timestamp: ts,
  };
  return {
    v: PROTOCOL_VERSION,
    agreementId: m.agreementId.toString(),
    machineId: m.machineId,
    cumulativeUnits: cumulativeUnits.toString(),
    timestamp: Number(ts),
    signature: m.key ? signReading(h.domain, reading, m.key) : "0x",
  };
}

/** An MQTT client that publishes for the machines and collects every status they are sent. */
export class MachineSide {
  readonly statuses: StatusMessage[] = [];
  private constructor(readonly client: MqttClient) {
    client.on("message", (_topic, payload) =>
      this.statuses.push(JSON.parse(payload.toString()) as StatusMessage),
    );
  }

  static async connect(
    url: string,
    machines: TestMachine[],
    protocolVersion: 4 | 5,
  ): Promise<MachineSide> {
    const client = await mqtt.connectAsync(url, {
      protocolVersion,
      clientId: `machines-${randomBytes(4).toString("hex")}`,
    });
    const side = new MachineSide(client);
    for (const m of machines) await client.subscribeAsync(statusTopic(m.machineId), { qos: 1 });
    return side;
  }

  async publish(m: TestMachine, payload: unknown): Promise<void> {
    const body =
      typeof payload === "string" || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
    await this.client.publishAsync(readingsTopic(m.machineId), body as string, { qos: 1 });
  }

  async waitFor(
    predicate: (s: StatusMessage) => boolean,
    what: string,
    timeoutMs = 20_000,
  ): Promise<StatusMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.statuses.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(
          `no status ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.statuses.slice(-5))}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  close(): Promise<void> {
    return this.client.endAsync();
  }
}
