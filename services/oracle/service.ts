/**
 * The oracle service: MQTT in, verification, durable journal, batched submission, status out.
 *
 * `start()` connects everything; `stop()` stops taking messages, lets the messages in hand finish,
 * submits what is journaled, then closes the broker connection, the chain watcher and the journal.
 */
import { readFileSync } from "node:fs";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createPublicClient, createWalletClient, http, type Hex, type PublicClient } from "viem";
import { createNonceManager, jsonRpc } from "viem/nonce";
import { privateKeyToAccount } from "viem/accounts";
import { payPerUseAbi } from "../shared/artifacts.ts";
import { openDatabase, type Database } from "../shared/db.ts";
import { chainFor } from "../shared/deployment.ts";
import { createLogger } from "../shared/logger.ts";
import {
  PROTOCOL_VERSION,
  READINGS_WILDCARD,
  machineIdFromTopic,
  sharedReadingsSubscription,
  statusTopic,
  type StatusMessage,
} from "../shared/protocol.ts";
import { ChainState, TRUST_ORACLE_ATTESTED, type ContractEvent } from "./chain-state.ts";
import type { OracleConfig } from "./config.ts";
import { startEmbeddedBroker, type EmbeddedBroker } from "./embedded-broker.ts";
import { Journal } from "./journal.ts";
import { OracleMetrics, startHealthServer, type HealthServer } from "./metrics.ts";
import { Submitter } from "./submitter.ts";
import { verifyReadingMessage, type LastAccepted } from "./verify.ts";

export interface OracleStats {
  received: number;
  accepted: number;
  rejected: Record<string, number>;
  settled: number;
  batches: number;
}

export interface Oracle {
  readonly brokerUrl: string;
  /** Port of /metrics, /healthz and /readyz, when served. */
  readonly healthPort: number | undefined;
  readonly stats: OracleStats;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Submits what is journaled now, instead of waiting for the next interval. */
  flush(): Promise<void>;
}

export interface OracleOptions {
  /** Where log lines go: 1 (stdout, the default) or 2 (stderr, for tools whose stdout is a result). */
  logFd?: 1 | 2;
}

export function createOracle(config: OracleConfig, options: OracleOptions = {}): Oracle {
  const log = createLogger("oracle", config.LOG_LEVEL, options.logFd ?? 1);
  const abi = payPerUseAbi();
  const address = config.CONTRACT_ADDRESS as Hex;
  // This instance's own nonce manager: it hands out nonces locally and is reset after a failed send.
  const nonces = createNonceManager({ source: jsonRpc() });
  const account = privateKeyToAccount(config.privateKey, { nonceManager: nonces });
  const stats: OracleStats = { received: 0, accepted: 0, rejected: {}, settled: 0, batches: 0 };
  const lastAccepted = new Map<bigint, LastAccepted>();
  const inFlight = new Set<Promise<void>>();
  const metrics = new OracleMetrics();
  let health: HealthServer | undefined;

  let db: Database;
  let journal: Journal;
  let client: PublicClient;
  let chain: ChainState;
  let submitter: Submitter;
  let broker: EmbeddedBroker | undefined;
  /** Connections taking readings; the first also publishes statuses. */
  let connections: MqttClient[] = [];
  let mqttClient: MqttClient;
  let brokerUrl = config.MQTT_URL ?? "";
  let chainId = 0;
  let batchTimer: NodeJS.Timeout | undefined;
  let submitting: Promise<void> | undefined;
  let stopping = false;
  let subscription: string | undefined;

  function publishStatus(status: Omit<StatusMessage, "v" | "at">, qos: 0 | 1 = 1): void {
    if (!mqttClient?.connected) return;
    const message: StatusMessage = {
      v: PROTOCOL_VERSION,
      at: Math.floor(Date.now() / 1000),
      ...status,
    };
    mqttClient.publish(statusTopic(status.machineId), JSON.stringify(message), {
      qos,
      retain: true,
    });
  }

  // `accepted` is informational (the PUBACK already told the machine its reading is durable): only the
  // newest per machine is published, once per event-loop turn, at QoS 0. Settled, rejected and the
  // agreement's states go out at QoS 1, each one.
  const acceptedByMachine = new Map<string, Omit<StatusMessage, "v" | "at">>();
  let acceptedScheduled = false;
  function publishAccepted(status: Omit<StatusMessage, "v" | "at">): void {
    acceptedByMachine.set(status.machineId, status);
    if (acceptedScheduled) return;
    acceptedScheduled = true;
    setImmediate(() => {
      acceptedScheduled = false;
      for (const pending of acceptedByMachine.values()) publishStatus(pending, 0);
      acceptedByMachine.clear();
    });
  }

  async function onChainEvents(events: ContractEvent[]): Promise<void> {
    for (const event of events) {
      const agreementId = event.args.agreementId as bigint | undefined;
      if (agreementId === undefined) continue;
      const state =
        event.eventName === "LowBalance"
          ? "low_balance"
          : event.eventName === "AgreementSuspended"
            ? "suspended"
            : event.eventName === "AgreementEnded" || event.eventName === "AgreementClosed"
              ? "ended"
              : event.eventName === "SpendingCapReached"
                ? "cap_reached"
                : undefined;
      if (state === undefined) continue;
      const agreement = await chain.agreement(agreementId).catch(() => undefined);
      if (agreement === undefined) continue;
      publishStatus({
        machineId: agreement.machineId,
        agreementId: agreementId.toString(),
        state,
        txHash: event.transactionHash ?? undefined,
      });
    }
  }

  // Readings of one machine are checked and claimed one after another, in the order they arrive,
  // even when several connections deliver them: an older reading then meets the newer one's claim and
  // is refused before its signature is checked, and a claim never goes backwards.
  const claiming = new Map<string, Promise<unknown>>();

  async function handle(topic: string, payload: Buffer): Promise<void> {
    const before = claiming.get(topic);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    claiming.set(topic, mine);
    try {
      if (before) await before;
      await checkAndJournal(topic, payload, release);
    } finally {
      release();
      if (claiming.get(topic) === mine) claiming.delete(topic);
    }
  }

  async function checkAndJournal(
    topic: string,
    payload: Buffer,
    claimed: () => void,
  ): Promise<void> {
    stats.received++;
    metrics.received.inc();
    const receivedAt = performance.now();
    const result = await verifyReadingMessage(topic, payload, {
      domain: { chainId, verifyingContract: address },
      chain,
      futureToleranceS: BigInt(config.FUTURE_TOLERANCE_S),
      nowS: () => BigInt(Math.floor(Date.now() / 1000)),
      async lastAccepted(agreementId, agreement) {
        let last = lastAccepted.get(agreementId);
        if (last === undefined) {
          last = await journal.newest(agreementId);
          if (last === undefined && agreement.cumulativeUnits > 0n) {
            last = {
              cumulativeUnits: agreement.cumulativeUnits,
              timestamp: agreement.lastReadingAt,
              signature: "",
            };
          }
          if (last !== undefined) lastAccepted.set(agreementId, last);
        }
        return last;
      },
    });
    if (!result.ok) {
      stats.rejected[result.reason] = (stats.rejected[result.reason] ?? 0) + 1;
      metrics.rejected.inc({ reason: result.reason });
      log.debug({ topic, reason: result.reason, detail: result.detail }, "reading refused");
      const machineId = result.machineId ?? machineIdFromTopic(topic);
      if (machineId) {
        publishStatus({
          machineId,
          agreementId: result.agreementId ?? "",
          state: "rejected",
          reason: result.reason,
          detail: result.detail,
          cumulativeUnits: result.cumulativeUnits,
        });
      }
      return;
    }
    const { reading } = result;
    // Claim the meter before the write so that a concurrent duplicate is refused as stale.
    const previous = lastAccepted.get(reading.agreementId);
    lastAccepted.set(reading.agreementId, {
      cumulativeUnits: reading.cumulativeUnits,
      timestamp: reading.timestamp,
      signature: payload.toString("utf8").match(/"signature"\s*:\s*"([^"]*)"/)?.[1] ?? "",
    });
    // The next reading of this machine may be checked now; the journal write goes on beside it.
    claimed();
    try {
      await journal.append({
        agreementId: reading.agreementId,
        machineId: reading.machineId,
        cumulativeUnits: reading.cumulativeUnits,
        timestamp: reading.timestamp,
        signature: result.signature,
        attested: result.machine.trustMode === TRUST_ORACLE_ATTESTED,
      });
    } catch (error) {
      // Give the claim back unless a newer reading has claimed the meter since.
      if (lastAccepted.get(reading.agreementId)?.cumulativeUnits === reading.cumulativeUnits) {
        if (previous) lastAccepted.set(reading.agreementId, previous);
        else lastAccepted.delete(reading.agreementId);
      }
      throw error;
    }
    stats.accepted++;
    metrics.accepted.inc();
    metrics.ackLatency.observe((performance.now() - receivedAt) / 1000);
    publishAccepted({
      machineId: reading.machineId,
      agreementId: reading.agreementId.toString(),
      state: "accepted",
      cumulativeUnits: reading.cumulativeUnits.toString(),
    });
  }

  async function submit(): Promise<void> {
    if (submitting) return submitting;
    submitting = (async () => {
      try {
        const outcome = await submitter.submitOnce();
        if (outcome.settled.length + outcome.skipped.length > 0) {
          stats.batches++;
          metrics.batchSize.observe(outcome.settled.length + outcome.skipped.length);
          metrics.gasUsed.inc(Number(outcome.gasUsed));
        }
        for (const s of outcome.settled) {
          stats.settled++;
          metrics.settled.inc();
          publishStatus({
            machineId: s.machineId,
            agreementId: s.agreementId.toString(),
            state: s.escrow === 0n && (s.debt ?? 0n) > 0n ? "exhausted" : "settled",
            cumulativeUnits: s.cumulativeUnits.toString(),
            txHash: s.txHash ?? undefined,
            escrow: s.escrow?.toString(),
          });
          if (s.escrow === 0n && (s.debt ?? 0n) > 0n) {
            // The reading is settled too: say so first so the machine may drop it, then that it must stop.
            publishStatus({
              machineId: s.machineId,
              agreementId: s.agreementId.toString(),
              state: "settled",
              cumulativeUnits: s.cumulativeUnits.toString(),
              txHash: s.txHash ?? undefined,
            });
          }
        }
        for (const s of outcome.skipped) {
          publishStatus({
            machineId: s.machineId,
            agreementId: s.agreementId.toString(),
            state: "rejected",
            reason: s.reason,
            cumulativeUnits: s.cumulativeUnits.toString(),
            txHash: s.txHash,
          });
        }
      } catch (error) {
        nonces.reset({ address: account.address, chainId });
        log.error(
          { err: error instanceof Error ? error.message : String(error) },
          "submission failed; retrying next interval",
        );
      } finally {
        submitting = undefined;
      }
    })();
    return submitting;
  }

  function scheduleBatch(): void {
    if (stopping) return;
    batchTimer = setTimeout(async () => {
      await submit();
      scheduleBatch();
    }, config.BATCH_INTERVAL_MS);
  }

  return {
    get brokerUrl() {
      return brokerUrl;
    },
    get healthPort() {
      return health?.port;
    },
    stats,
    async start() {
      const dataDir = config.DATA_DIR === "memory" ? undefined : config.DATA_DIR;
      db = await openDatabase({ url: config.DATABASE_URL, dataDir });
      journal = await Journal.open(db);
      const chainDef = await chainFor(config.RPC_URL);
      chainId = chainDef.id;
      client = createPublicClient({
        chain: chainDef,
        transport: http(config.RPC_URL),
      }) as PublicClient;
      const wallet = createWalletClient({
        account,
        chain: chainDef,
        transport: http(config.RPC_URL),
      });
      chain = new ChainState(client, address, abi, (events) => void onChainEvents(events));
      await chain.start(config.CHAIN_POLL_MS);
      submitter = new Submitter({
        client,
        wallet,
        account,
        address,
        abi,
        domain: { chainId, verifyingContract: address },
        privateKey: config.privateKey,
        journal,
        chain,
        maxReadings: config.BATCH_MAX_READINGS,
        confirmations: config.CONFIRMATIONS,
        log,
        stuckTxMs: config.STUCK_TX_MS,
        maxFeeGwei: config.MAX_FEE_GWEI,
        reorgWindowBlocks: config.REORG_WINDOW_BLOCKS,
        pollMs: config.CHAIN_POLL_MS,
        metrics,
        stopping: () => stopping,
      });

      const embedded = !config.MQTT_URL;
      // The embedded broker speaks MQTT 3.1.1; elsewhere MQTT 5 (shared subscriptions) unless told otherwise.
      const v5 = !embedded && config.MQTT_PROTOCOL_VERSION === 5;
      if (embedded) {
        broker = await startEmbeddedBroker();
        brokerUrl = broker.url;
      }
      const options: IClientOptions = {
        protocolVersion: v5 ? 5 : 4,
        clean: false,
        ...(v5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
        username: config.MQTT_USERNAME,
        password: config.MQTT_PASSWORD,
        ca: config.MQTT_CA_FILE ? readFileSync(config.MQTT_CA_FILE) : undefined,
        reconnectPeriod: 1000,
      };
      // MQTT.js hands a connection's messages over one at a time and sends each PUBACK only after the
      // reading is journaled, so one connection has one reading in flight. Several connections in the
      // shared subscription keep several in flight, and the journal commits them together.
      const count = v5 ? config.MQTT_CONNECTIONS : 1;
      if (!v5 && !embedded && config.MQTT_CONNECTIONS > 1) {
        log.warn("without MQTT 5 shared subscriptions the oracle takes readings on one connection");
      }
      const clientIdBase = `ppu-oracle-${account.address.slice(2, 10).toLowerCase()}`;
      subscription = v5 ? sharedReadingsSubscription(config.MQTT_SHARE_GROUP) : READINGS_WILDCARD;
      for (let i = 0; i < count; i++) {
        const connection = mqtt.connect(brokerUrl, {
          ...options,
          clientId: i === 0 ? clientIdBase : `${clientIdBase}-${i}`,
        });
        // Acknowledge (PUBACK) only after the message is handled: journaled, or refused for good. Set
        // before the connection opens: a persistent session's backlog arrives right after CONNACK.
        connection.handleMessage = (packet, done) => {
          const work = handle(packet.topic, Buffer.from(packet.payload as Buffer)).then(
            () => done(),
            (error: unknown) => {
              log.error(
                { err: error instanceof Error ? error.message : String(error) },
                "could not journal a reading; it stays unacknowledged",
              );
              // Without PUBACK the broker delivers the message again after the reconnect.
              connection.end(true, {}, () => connection.reconnect());
            },
          );
          inFlight.add(work);
          void work.finally(() => inFlight.delete(work));
        };
        await new Promise<void>((resolve, reject) => {
          connection.once("connect", () => resolve());
          connection.once("error", reject);
        });
        await connection.subscribeAsync(subscription, { qos: 1 });
        connections.push(connection);
      }
      mqttClient = connections[0]!;
      if (config.HEALTH_PORT >= 0) {
        health = await startHealthServer(
          metrics,
          async () => ({
            broker: connections.every((c) => c.connected),
            journal: await db.query("SELECT 1").then(
              () => true,
              () => false,
            ),
            chain: await client.getBlockNumber().then(
              () => true,
              () => false,
            ),
          }),
          config.HEALTH_PORT,
        );
      }
      scheduleBatch();
      log.info(
        { broker: brokerUrl, contract: address, chainId, journal: db.kind },
        "oracle started",
      );
    },
    flush: submit,
    async stop() {
      stopping = true;
      if (batchTimer) clearTimeout(batchTimer);
      if (subscription) {
        await Promise.all(
          connections.map((c) => c.unsubscribeAsync(subscription!).catch(() => {})),
        );
      }
      await Promise.allSettled([...inFlight]);
      await journal?.flush();
      await submitting;
      await submit();
      await Promise.all(connections.map((c) => c.endAsync()));
      connections = [];
      await chain?.stop();
      await db?.close();
      await broker?.stop();
      await health?.stop();
      log.info({ stats }, "oracle stopped");
    },
  };
}
