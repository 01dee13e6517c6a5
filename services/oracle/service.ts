/**
 * The oracle service: MQTT in, verification, durable journal, batched submission, status out.
 *
 * `start()` connects everything; `stop()` stops taking messages, lets the messages in hand finish,
 * submits what is journaled, then closes the broker connection, the chain watcher and the journal.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
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
import {
  ChainState,
  TRUST_ORACLE_ATTESTED,
  type AgreementInfo,
  type ContractEvent,
} from "./chain-state.ts";
import type { OracleConfig } from "./config.ts";
import { startEmbeddedBroker, type EmbeddedBroker } from "./embedded-broker.ts";
import { pipelineAcks } from "./acks.ts";
import { Journal } from "./journal.ts";
import { OracleMetrics, startHealthServer, type HealthServer } from "./metrics.ts";
import { Submitter } from "./submitter.ts";
import { createSignatureVerifier, type SignatureVerifier } from "./verifier.ts";
import {
  checkMeter,
  verifyReadingMessage,
  type LastAccepted,
  type Refused,
  type Verified,
} from "./verify.ts";

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
  /** Checks device signatures; by default VERIFY_THREADS worker threads. Closed when the oracle stops. */
  verifier?: SignatureVerifier;
}

export function createOracle(config: OracleConfig, options: OracleOptions = {}): Oracle {
  const log = createLogger("oracle", config.LOG_LEVEL, options.logFd ?? 1);
  const injectedVerifier = options.verifier;
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
  let verifier: SignatureVerifier;
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
      // One socket write for the lot, not one per machine.
      const stream = mqttClient?.connected ? mqttClient.stream : undefined;
      stream?.cork();
      for (const pending of acceptedByMachine.values()) publishStatus(pending, 0);
      acceptedByMachine.clear();
      stream?.uncork();
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

  // Readings of one machine are checked side by side (signatures on the verifier threads) but claim
  // the meter one after another, in the order they arrived, even when several connections deliver
  // them: a claim never goes backwards, and an older reading meets the newer one's claim and is
  // refused as stale.
  const claiming = new Map<string, Promise<unknown>>();

  async function handle(topic: string, payload: Buffer): Promise<void> {
    const before = claiming.get(topic);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    claiming.set(topic, mine);
    try {
      await checkAndJournal(topic, payload, before, release);
    } finally {
      release();
      if (claiming.get(topic) === mine) claiming.delete(topic);
    }
  }

  async function newestAccepted(
    agreementId: bigint,
    agreement: AgreementInfo,
  ): Promise<LastAccepted | undefined> {
    const cached = lastAccepted.get(agreementId);
    if (cached !== undefined) return cached;
    const loaded =
      (await journal.newest(agreementId)) ??
      (agreement.cumulativeUnits > 0n
        ? {
            cumulativeUnits: agreement.cumulativeUnits,
            timestamp: agreement.lastReadingAt,
            signature: "",
          }
        : undefined);
    // A reading claimed while the journal was read is newer than what the journal said.
    const claimed = lastAccepted.get(agreementId);
    if (claimed !== undefined) return claimed;
    if (loaded !== undefined) lastAccepted.set(agreementId, loaded);
    return loaded;
  }

  async function checkAndJournal(
    topic: string,
    payload: Buffer,
    before: Promise<unknown> | undefined,
    claimed: () => void,
  ): Promise<void> {
    stats.received++;
    metrics.received.inc();
    const receivedAt = performance.now();
    let result: Verified | Refused = await verifyReadingMessage(topic, payload, {
      domain: { chainId, verifyingContract: address },
      chain,
      checkSignature: (digest, signature, key) => verifier.verify(digest, signature, key),
      futureToleranceS: BigInt(config.FUTURE_TOLERANCE_S),
      nowS: () => BigInt(Math.floor(Date.now() / 1000)),
      lastAccepted: newestAccepted,
    });
    // The meter is claimed in arrival order: wait for the machine's previous reading to claim or fail.
    if (before) await before;
    if (result.ok) {
      const { reading } = result;
      result =
        checkMeter(
          reading,
          result.wireSignature,
          await newestAccepted(reading.agreementId, result.agreement),
          result.machine,
          result.agreement,
        ) ?? result;
    }
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
      signature: result.wireSignature,
    });
    // The next reading of this machine may claim now; the journal write goes on beside it.
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
      verifier =
        injectedVerifier ??
        createSignatureVerifier(config.VERIFY_THREADS, (error) =>
          log.error(
            { err: error instanceof Error ? error.message : String(error) },
            "a signature verifier thread failed; its readings stay unacknowledged and a new thread takes over",
          ),
        );
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
        // Receive Maximum: the broker sends no more unacknowledged readings than the oracle takes in hand.
        ...(v5
          ? { properties: { sessionExpiryInterval: 3600, receiveMaximum: config.MQTT_IN_FLIGHT } }
          : {}),
        username: config.MQTT_USERNAME,
        password: config.MQTT_PASSWORD,
        ca: config.MQTT_CA_FILE ? readFileSync(config.MQTT_CA_FILE) : undefined,
        reconnectPeriod: 1000,
      };
      // Each connection keeps up to MQTT_IN_FLIGHT readings in hand and acknowledges each (PUBACK)
      // only once it is journaled; the journal commits what all connections bring together. Several
      // connections in the shared subscription spread the broker's side of the work.
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
        // Small packets (PUBACKs, statuses) leave at once instead of waiting on Nagle's algorithm for
        // the peer's TCP acknowledgement, which a steady stream of readings otherwise throttles.
        connection.on("connect", () => (connection.stream as Partial<Socket>).setNoDelay?.(true));
        // Set before the connection opens: a persistent session's backlog arrives right after CONNACK.
        pipelineAcks(connection, {
          maxInFlight: config.MQTT_IN_FLIGHT,
          handle: (packet) => handle(packet.topic, Buffer.from(packet.payload as Buffer)),
          onError(error) {
            log.error(
              { err: error instanceof Error ? error.message : String(error) },
              "could not journal a reading; it stays unacknowledged",
            );
            // Without PUBACK the broker delivers the message again after the reconnect.
            connection.end(true, {}, () => connection.reconnect());
          },
          track(work) {
            inFlight.add(work);
            void work.finally(() => inFlight.delete(work));
          },
        });
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
      await verifier?.close();
      await db?.close();
      await broker?.stop();
      await health?.stop();
      log.info({ stats }, "oracle stopped");
    },
  };
}
