/**
 * A simulated fleet for the embedded default: machines of both key types (and one without a key,
 * oracle-attested) registered on-chain with a tariff and an open agreement each, metering at their
 * own rates and publishing signed cumulative readings over MQTT, obeying the oracle's status.
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
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { loadArtifact, payPerUseAbi } from "../shared/artifacts.ts";
import { chainFor } from "../shared/deployment.ts";
import type { ReadingDomain } from "../shared/eip712.ts";
import {
  PROTOCOL_VERSION,
  STOP_STATES,
  readingsTopic,
  statusTopic,
  type StatusMessage,
} from "../shared/protocol.ts";
import { onChainDeviceKey, signReading, type DeviceSigningKey } from "../shared/signatures.ts";

export interface SimMachine {
  name: string;
  machineId: Hex;
  keyType: "secp256k1" | "p256" | "none";
  agreementId: bigint;
  /** Units per second while serving. */
  rate: number;
  measured: bigint;
  settled: bigint;
  state: string;
  key?: DeviceSigningKey;
}

export interface FleetOptions {
  rpcUrl: string;
  brokerUrl: string;
  payPerUse: Address;
  token: Address;
  /** Funded key that owns the token (mints the lessee's deposit). */
  tokenOwnerKey: Hex;
  ownerKey: Hex;
  lesseeKey: Hex;
  machines?: number;
  publishEveryMs?: number;
  onProgress?: (message: string) => void;
}

export interface Fleet {
  machines: SimMachine[];
  stop(): Promise<void>;
}

const ZERO32 = `0x${"00".repeat(32)}` as Hex;
const NAMES = ["press", "charger", "compressor", "lathe", "pump", "forklift", "crane", "mill"];

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const count = options.machines ?? 6;
  const chain = await chainFor(options.rpcUrl);
  const client = createPublicClient({ chain, transport: http(options.rpcUrl) });
  const abi = payPerUseAbi();
  const tokenAbi = loadArtifact("MockEURC").abi;
  const owner = privateKeyToAccount(options.ownerKey);
  const lessee = privateKeyToAccount(options.lesseeKey);
  const domain: ReadingDomain = { chainId: chain.id, verifyingContract: options.payPerUse };
  const progress = options.onProgress ?? (() => {});

  async function send(
    key: Hex,
    to: Address,
    contractAbi: Abi,
    functionName: string,
    args: unknown[],
  ) {
    const wallet = createWalletClient({
      account: privateKeyToAccount(key),
      chain,
      transport: http(options.rpcUrl),
    });
    const hash = await wallet.writeContract({
      address: to,
      abi: contractAbi,
      functionName,
      args,
    } as never);
    const receipt = await client.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`${functionName} reverted in ${hash}`);
    return receipt;
  }

  await send(options.tokenOwnerKey, options.token, tokenAbi, "mint", [
    lessee.address,
    10_000_000_000n,
  ]);
  await send(options.lesseeKey, options.token, tokenAbi, "approve", [
    options.payPerUse,
    2n ** 255n,
  ]);

  const machines: SimMachine[] = [];
  for (let i = 0; i < count; i++) {
    const keyType = i === count - 1 ? "none" : i % 2 === 0 ? "secp256k1" : "p256";
    const key: DeviceSigningKey | undefined =
      keyType === "secp256k1"
        ? { keyType, privateKey: `0x${randomBytes(32).toString("hex")}` as Hex }
        : keyType === "p256"
          ? {
              keyType,
              privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey,
            }
          : undefined;
    const machineId = `0x${randomBytes(32).toString("hex")}` as Hex;
    const deviceKey = onChainDeviceKey(key);
    await send(options.ownerKey, options.payPerUse, abi, "registerMachine", [
      machineId,
      owner.address,
      key ? 0 : 1,
      36_000_000n,
      deviceKey,
    ]);
    await send(options.ownerKey, options.payPerUse, abi, "publishTariff", [
      machineId,
      {
        token: options.token,
        unit: "kWh",
        price: 250_000n,
        unitScale: 1_000n,
        tiers: [{ fromUnits: 50_000n, price: 200_000n }],
        minimumCharge: 0n,
        baseFee: 0n,
        period: 0n,
      },
    ]);
    const head = await client.getBlock();
    const receipt = await send(options.lesseeKey, options.payPerUse, abi, "openAgreement", [
      {
        machineId,
        tariffVersion: 1,
        // The first machine's escrow runs dry within a minute: its debt goes to the bank bridge.
        deposit: i === 0 ? 3_000_000n : 20_000_000n + BigInt(i) * 10_000_000n,
        endTime: head.timestamp + 30n * 86_400n,
        spendingCap: 0n,
        capPeriod: 0n,
        lowBalanceThreshold: i === 0 ? 1_000_000n : 5_000_000n,
        disputeWindow: 86_400n,
        mandateRef: ZERO32,
      },
    ]);
    const [opened] = parseEventLogs({
      abi,
      logs: receipt.logs,
      eventName: "AgreementOpened",
    }) as unknown as {
      args: { agreementId: bigint };
    }[];
    machines.push({
      name: `${NAMES[i % NAMES.length]}-${i + 1}`,
      machineId,
      keyType,
      agreementId: opened!.args.agreementId,
      rate: 150 + 100 * i,
      measured: 0n,
      settled: 0n,
      state: "serving",
      key,
    });
    progress(
      `machine ${i + 1}/${count} registered (${keyType === "none" ? "oracle-attested" : keyType})`,
    );
  }

  // The chain's clock runs ahead of wall time after many quick blocks; readings use the chain's.
  const head = await client.getBlock();
  const clockOffset = Math.max(0, Number(head.timestamp) - Math.floor(Date.now() / 1000));

  const mqttClient: MqttClient = await mqtt.connectAsync(options.brokerUrl, {
    protocolVersion: 4,
    clientId: `fleet-${randomBytes(4).toString("hex")}`,
  });
  const byId = new Map(machines.map((m) => [m.machineId, m]));
  mqttClient.on("message", (_topic, payload) => {
    let status: StatusMessage;
    try {
      status = JSON.parse(payload.toString()) as StatusMessage;
    } catch {
      return;
    }
    const m = byId.get(status.machineId as Hex);
    if (!m) return;
    if (status.state === "settled" && status.cumulativeUnits) {
      const units = BigInt(status.cumulativeUnits);
      if (units > m.settled) m.settled = units;
    }
    if (STOP_STATES.has(status.state)) m.state = status.state;
    else if (status.state === "low_balance" && m.state === "serving") m.state = "low balance";
  });
  for (const m of machines) await mqttClient.subscribeAsync(statusTopic(m.machineId), { qos: 1 });

  const timer = setInterval(() => {
    for (const m of machines) {
      if (STOP_STATES.has(m.state as never)) continue;
      const seconds = (options.publishEveryMs ?? 2000) / 1000;
      m.measured += BigInt(Math.max(1, Math.round(m.rate * seconds * (0.5 + Math.random()))));
      const reading = {
        agreementId: m.agreementId,
        machineId: m.machineId,
        cumulativeUnits: m.measured,
        timestamp: BigInt(Math.floor(Date.now() / 1000) + clockOffset),
      };
      const message = {
        v: PROTOCOL_VERSION,
        agreementId: reading.agreementId.toString(),
        machineId: reading.machineId,
        cumulativeUnits: reading.cumulativeUnits.toString(),
        timestamp: Number(reading.timestamp),
        signature: m.key ? signReading(domain, reading, m.key) : "0x",
      };
      mqttClient.publish(readingsTopic(m.machineId), JSON.stringify(message), { qos: 1 });
    }
  }, options.publishEveryMs ?? 2000);

  return {
    machines,
    async stop() {
      clearInterval(timer);
      await mqttClient.endAsync();
    },
  };
}
